mod conformance;
mod events;
mod policies;
mod postgres;
mod templates;
