mod conformance;
mod events;
mod policies;
mod postgres;
mod sessions;
mod templates;
