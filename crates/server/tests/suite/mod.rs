mod access;
mod app;
mod embedded;
mod limits;
mod retention;
mod templates;
mod ui;
mod vault;
