//! How many audit records anonymous noise (forged proxy headers) may write. Each API node counts
//! on its own; how fast one user may create tasks is the intake's to count.

use std::num::NonZeroU32;

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

type KeyedLimiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// The noise limiters of one server process.
pub struct Throttle {
    noise_per_source: KeyedLimiter,
    /// Across all sources: addresses are cheap to come by (a whole IPv6 prefix).
    noise_total: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").finish_non_exhaustive()
    }
}

/// Keyed limiters forget a key once its bucket is full again; swept when they grow this big.
const SWEEP_AT: usize = 10_000;

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

impl Throttle {
    pub fn new() -> Throttle {
        let per_minute = |n: u32| {
            Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
        };
        Throttle {
            noise_per_source: RateLimiter::keyed(per_minute(5)),
            noise_total: RateLimiter::direct(per_minute(60)),
        }
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
