mod conformance;
mod templates;
