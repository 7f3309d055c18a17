mod bad_input;
mod confinement;
mod lifecycle;
pub mod server;
mod template;
