//! The `command` driver: a shell command run in the workspace as the agent, for deterministic
//! changes (`sed`, `cargo update -p x`, a migration script).

use async_trait::async_trait;
use nightshift_core::{AgentEvent, AgentKind, Usage};
use nightshift_sandbox::{ProcessSpec, Sandbox};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{AgentDriver, AgentEnd, AgentError, AgentOutcome, AgentRequest, Result};

pub struct CommandDriver {
    sandbox: Sandbox,
}

impl CommandDriver {
    pub fn new(sandbox: Sandbox) -> Self {
        CommandDriver { sandbox }
    }
}

#[async_trait]
impl AgentDriver for CommandDriver {
    fn kind(&self) -> AgentKind {
        AgentKind::Command
    }

    async fn run(
        &self,
        request: AgentRequest,
        events: mpsc::Sender<AgentEvent>,
        stop: CancellationToken,
    ) -> Result<AgentOutcome> {
        let Some(command) = request
            .spec
            .command
            .as_deref()
            .filter(|c| !c.trim().is_empty())
        else {
            return Err(AgentError::NotConfigured {
                kind: AgentKind::Command,
                reason: "no command given: set --agent-command".into(),
            });
        };
        let mut spec = ProcessSpec::shell(command, &request.workspace)
            .env("HOME", request.home.display().to_string())
            .env("NIGHTSHIFT_INSTRUCTIONS", request.prompt.clone());
        for (k, v) in &request.env {
            spec = spec.env(k.clone(), v.clone());
        }
        let mut process = self.sandbox.spawn(&spec)?;
        let _ = events
            .send(AgentEvent::Started {
                session_id: None,
                model: None,
            })
            .await;
        let mut last_line = None;
        let stopped = loop {
            tokio::select! {
                line = process.next_line() => match line {
                    Some(line) => {
                        last_line = Some(line.text.clone());
                        let _ = events.send(AgentEvent::Output { stream: line.stream, line: line.text }).await;
                    }
                    None => break false,
                },
                _ = stop.cancelled() => break true,
            }
        };
        if stopped {
            process.terminate().await?;
            return Ok(AgentOutcome::stopped(None, Usage::default()));
        }
        let exit = process.wait().await?;
        let success = exit.success();
        let error = (!success).then(|| match &last_line {
            Some(line) => format!("agent command failed with {exit}: {line}"),
            None => format!("agent command failed with {exit}"),
        });
        let summary = success.then(|| format!("Ran `{command}`"));
        let _ = events
            .send(AgentEvent::Final {
                summary: summary.clone(),
                is_error: !success,
            })
            .await;
        Ok(AgentOutcome {
            end: AgentEnd::Finished { success, exit },
            session_id: None,
            summary,
            usage: Usage::default(),
            error,
        })
    }
}
