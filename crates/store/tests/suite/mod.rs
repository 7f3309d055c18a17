mod conformance;
mod events;
mod followed;
mod intake;
mod policies;
mod postgres;
mod sessions;
mod templates;
