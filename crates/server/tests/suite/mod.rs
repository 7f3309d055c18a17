mod access;
mod app;
mod embedded;
mod limits;
mod templates;
mod ui;
mod vault;
