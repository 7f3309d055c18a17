mod conformance;
mod events;
mod intake;
mod policies;
mod postgres;
mod sessions;
mod templates;
