mod agents;
mod confinement;
mod harness;
mod pipeline;
mod publish;
mod stops;
mod takeover;
mod toolchains;
