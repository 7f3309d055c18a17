//! Rate limits this process keeps: how fast one user may create tasks, and how many audit
//! records anonymous noise (forged proxy headers) may write. Each API node counts on its own.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::ApiError;
use crate::contract::ErrorCode;

type KeyedLimiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

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
    pub fn new(per_minute: u32, burst: u32) -> Result<TaskRateLimit, String> {
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

/// The limiters of one server process.
pub struct Throttle {
    limit: TaskRateLimit,
    tasks: KeyedLimiter,
    noise_per_source: KeyedLimiter,
    /// Across all sources: addresses are cheap to come by (a whole IPv6 prefix).
    noise_total: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("limit", &self.limit)
            .finish()
    }
}

/// Keyed limiters forget a key once its bucket is full again; swept when they grow this big.
const SWEEP_AT: usize = 10_000;

impl Throttle {
    pub fn new(limit: TaskRateLimit) -> Throttle {
        let per_minute = |n: u32| {
            Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
        };
        Throttle {
            limit,
            tasks: RateLimiter::keyed(limit.quota()),
            noise_per_source: RateLimiter::keyed(per_minute(5)),
            noise_total: RateLimiter::direct(per_minute(60)),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one task created by `user`; refused with 429 and `Retry-After` once the user is
    /// over the limit.
    pub fn task_created(&self, user: &str) -> Result<(), ApiError> {
        if self.tasks.len() > SWEEP_AT {
            self.tasks.retain_recent();
        }
        self.tasks
            .check_key(&user.to_string())
            .map_err(|not_until| {
                too_many_tasks(self.limit, not_until.wait_time_from(self.clock.now()))
            })
    }

    /// Whether an audit record of anonymous noise from `source` may be written now.
    pub fn record_noise(&self, source: &str) -> bool {
        if self.noise_per_source.len() > SWEEP_AT {
            self.noise_per_source.retain_recent();
        }
        self.noise_per_source.check_key(&source.to_string()).is_ok()
            && self.noise_total.check().is_ok()
    }
}

/// A user over the task creation limit: 429, with when they may go on.
fn too_many_tasks(limit: TaskRateLimit, wait: Duration) -> ApiError {
    // Whole seconds, rounded up, as `Retry-After` says it.
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooManyTasks,
        format!(
            "you are creating tasks faster than this server allows ({} at once, then {} a \
             minute per user): try again in {secs} s",
            limit.burst, limit.per_minute
        ),
    )
    .retry_after(secs)
}
