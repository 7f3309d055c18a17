mod bad_input;
mod confinement;
mod data_dir;
mod lifecycle;
mod scale;
pub mod server;
mod template;
mod terminal;
mod worker;
