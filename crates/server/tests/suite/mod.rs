mod access;
mod app;
mod limits;
mod retention;
mod vault;
