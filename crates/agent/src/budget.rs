//! Live budget enforcement: usage events are watched as they pass, and the agent is stopped
//! within one event of crossing a limit.

use nightshift_core::{AgentEvent, Budget, Usage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{AgentDriver, AgentEnd, AgentOutcome, AgentRequest, Result};

/// Limits with the server defaults already applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetLimits {
    pub max_cost_usd: f64,
    pub max_turns: u64,
    pub max_tokens: Option<u64>,
}

impl BudgetLimits {
    pub const DEFAULT_COST_USD: f64 = 5.0;
    pub const DEFAULT_TURNS: u64 = 200;

    pub fn resolve(task: &Budget, defaults: &Budget) -> Self {
        BudgetLimits {
            max_cost_usd: task
                .max_cost_usd
                .or(defaults.max_cost_usd)
                .unwrap_or(Self::DEFAULT_COST_USD),
            max_turns: task
                .max_turns
                .or(defaults.max_turns)
                .unwrap_or(Self::DEFAULT_TURNS),
            max_tokens: task.max_tokens.or(defaults.max_tokens),
        }
    }

    /// The limit `usage` (on top of `spent` by earlier sessions of the run) crosses, if any.
    pub fn exceeded(&self, spent: &Usage, usage: &Usage) -> Option<String> {
        let mut total = *spent;
        total.add(usage);
        if total.cost_usd > self.max_cost_usd {
            return Some(format!(
                "cost ${:.4} is over the budget of ${:.2}",
                total.cost_usd, self.max_cost_usd
            ));
        }
        if total.turns > self.max_turns {
            return Some(format!(
                "{} turns is over the limit of {}",
                total.turns, self.max_turns
            ));
        }
        match self.max_tokens {
            Some(max) if total.total_tokens() > max => Some(format!(
                "{} tokens is over the limit of {max}",
                total.total_tokens()
            )),
            _ => None,
        }
    }
}

/// Runs `driver`, forwarding its events to `events`, and stops it as soon as a usage event
/// crosses `limits` (counting `spent` from earlier sessions of the same run).
pub async fn run_with_budget(
    driver: &dyn AgentDriver,
    request: AgentRequest,
    limits: BudgetLimits,
    spent: Usage,
    events: mpsc::Sender<AgentEvent>,
    stop: CancellationToken,
) -> Result<AgentOutcome> {
    let agent_stop = stop.child_token();
    let (tx, mut rx) = mpsc::channel(256);
    let watcher_stop = agent_stop.clone();
    let watcher = async move {
        let mut crossed = None;
        let mut last_usage = Usage::default();
        while let Some(event) = rx.recv().await {
            if let AgentEvent::Usage { usage } = &event {
                last_usage = *usage;
                if crossed.is_none()
                    && let Some(reason) = limits.exceeded(&spent, usage)
                {
                    crossed = Some(reason);
                    watcher_stop.cancel();
                }
            }
            let _ = events.send(event).await;
        }
        (crossed, last_usage)
    };
    let (outcome, (crossed, last_usage)) =
        tokio::join!(driver.run(request, tx, agent_stop), watcher);
    let mut outcome = outcome?;
    if outcome.usage == Usage::default() {
        outcome.usage = last_usage;
    }
    if let Some(reason) = crossed {
        outcome.end = AgentEnd::BudgetExceeded(reason);
    }
    Ok(outcome)
}
