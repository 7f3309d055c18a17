mod agents;
mod harness;
mod pipeline;
mod stops;
