mod config;
mod detect;
mod projects;
mod runner;
