mod agents;
mod confinement;
mod harness;
mod jobs;
mod pipeline;
mod publish;
mod stops;
mod takeover;
