mod conformance;
mod policies;
mod postgres;
mod sessions;
mod templates;
