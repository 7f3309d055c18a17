mod conformance;
mod policies;
