mod config;
mod detect;
mod guard;
mod projects;
mod runner;
