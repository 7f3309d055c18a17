mod bad_input;
mod confinement;
mod lifecycle;
mod scale;
pub mod server;
mod template;
mod worker;
