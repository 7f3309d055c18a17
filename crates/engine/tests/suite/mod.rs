mod harness;
mod pipeline;
mod stops;
