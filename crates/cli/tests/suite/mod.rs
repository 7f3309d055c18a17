mod bad_input;
mod lifecycle;
pub mod server;
mod template;
