mod templates;
mod ui;
