//! How fast one user may create tasks. Each process that takes tasks in counts on its own.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::{EngineError, Result};

/// How fast one user may create tasks: `burst` at once, then `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for TaskRateLimit {
    fn default() -> Self {
        TaskRateLimit {
            per_minute: 30,
            burst: 10,
        }
    }
}

impl TaskRateLimit {
    /// Refuses a limit of zero: it would refuse every task, which is not what anyone means.
    pub fn new(per_minute: u32, burst: u32) -> std::result::Result<TaskRateLimit, String> {
        if per_minute == 0 || burst == 0 {
            return Err(format!(
                "rate_limits: tasks_per_minute ({per_minute}) and task_burst ({burst}) must be 1 or more"
            ));
        }
        Ok(TaskRateLimit { per_minute, burst })
    }

    fn quota(&self) -> Quota {
        let one = NonZeroU32::MIN;
        Quota::per_minute(NonZeroU32::new(self.per_minute).unwrap_or(one))
            .allow_burst(NonZeroU32::new(self.burst).unwrap_or(one))
    }
}

/// Keyed limiters forget a key once its bucket is full again; swept when they grow this big.
const SWEEP_AT: usize = 10_000;

/// The per-user counter of one intake.
pub(super) struct TaskLimiter {
    limit: TaskRateLimit,
    tasks: RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>,
    clock: DefaultClock,
}

impl TaskLimiter {
    pub(super) fn new(limit: TaskRateLimit) -> TaskLimiter {
        TaskLimiter {
            limit,
            tasks: RateLimiter::keyed(limit.quota()),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one task created by `user`; refused, saying when to come back, once the user is
    /// over the limit.
    pub(super) fn task_created(&self, user: &str) -> Result<()> {
        if self.tasks.len() > SWEEP_AT {
            self.tasks.retain_recent();
        }
        self.tasks
            .check_key(&user.to_string())
            .map_err(|not_until| {
                let wait: Duration = not_until.wait_time_from(self.clock.now());
                EngineError::TooManyTasks {
                    burst: self.limit.burst,
                    per_minute: self.limit.per_minute,
                    // Whole seconds, rounded up, as `Retry-After` says it.
                    retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                }
            })
    }
}
