mod agents;
mod harness;
mod pipeline;
mod publish;
mod stops;
mod takeover;
