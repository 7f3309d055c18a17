mod acp;
mod claude;
mod codex;
mod command;
mod common;
mod frame;
mod stream;
