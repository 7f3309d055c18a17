mod bad_input;
mod lifecycle;
mod scale;
pub mod server;
