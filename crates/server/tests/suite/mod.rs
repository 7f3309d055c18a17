mod access;
mod app;
mod limits;
mod vault;
