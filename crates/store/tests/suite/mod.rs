mod conformance;
mod policies;
mod postgres;
