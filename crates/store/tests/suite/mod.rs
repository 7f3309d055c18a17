mod conformance;
mod policies;
mod postgres;
mod templates;
