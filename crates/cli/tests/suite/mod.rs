mod bad_input;
mod checks;
mod confinement;
mod data_dir;
mod lifecycle;
mod scale;
pub mod server;
mod template;
mod terminal;
