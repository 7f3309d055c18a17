mod access;
mod app;
mod embedded;
mod limits;
mod retention;
mod vault;
