mod agents;
mod confinement;
mod harness;
mod limits;
mod pipeline;
mod publish;
mod stops;
mod takeover;
