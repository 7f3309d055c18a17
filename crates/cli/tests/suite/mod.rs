mod bad_input;
mod confinement;
mod lifecycle;
mod limits;
mod scale;
pub mod server;
mod template;
