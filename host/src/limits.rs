//! Request budgets per connection, from providers.yaml's `proxy.rate_limit`
//! (Gong: 3 a second and 10,000 a day per company). Every request a
//! connection makes, from a sync, an action or the proxy, retries included,
//! draws from the same budget.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::egress::EgressError;
use crate::providers::RateLimitSpec;

const DAY: u64 = 86_400;

/// One connection's budget.
pub struct Budget {
    label: String,
    per_second: Option<DefaultDirectRateLimiter>,
    daily: Option<Mutex<DailyWindow>>,
}

struct DailyWindow {
    limit: u32,
    /// Unix day (UTC) the count belongs to.
    day: u64,
    used: u32,
}

impl Budget {
    pub fn new(label: &str, spec: Option<RateLimitSpec>) -> Budget {
        let spec = spec.unwrap_or(RateLimitSpec { per_second: None, per_day: None });
        Budget {
            label: label.to_string(),
            per_second: spec.per_second.and_then(NonZeroU32::new).map(|n| {
                // Evenly spaced, no burst, with a 2% margin: "3 a second" then
                // holds in every one-second window, not just on average.
                let period = Duration::from_secs(1).mul_f64(1.02 / f64::from(n.get()));
                RateLimiter::direct(Quota::with_period(period).unwrap_or_else(|| Quota::per_second(n)))
            }),
            daily: spec.per_day.map(|limit| Mutex::new(DailyWindow { limit, day: 0, used: 0 })),
        }
    }

    /// Waits for a slot in the per-second rate; fails at once when the daily
    /// budget is spent, saying when it comes back.
    pub async fn acquire(&self) -> Result<(), EgressError> {
        if let Some(daily) = &self.daily {
            let now = unix_now();
            let mut window = daily.lock().unwrap_or_else(|p| p.into_inner());
            if window.day != now / DAY {
                window.day = now / DAY;
                window.used = 0;
            }
            if window.used >= window.limit {
                let left = DAY - now % DAY;
                return Err(EgressError::RateLimited(format!(
                    "the daily budget of {} requests for connection `{}` is spent; it resets at 00:00 UTC, in {}h {:02}m",
                    window.limit,
                    self.label,
                    left / 3600,
                    left % 3600 / 60
                )));
            }
            window.used += 1;
        }
        if let Some(limiter) = &self.per_second {
            limiter.until_ready().await;
        }
        Ok(())
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Budgets by connection, shared by every session of the runtime.
#[derive(Default)]
pub struct Budgets {
    by_connection: Mutex<HashMap<String, Arc<Budget>>>,
}

impl Budgets {
    pub fn for_connection(&self, key: &str, spec: Option<RateLimitSpec>) -> Arc<Budget> {
        self.by_connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Budget::new(key, spec)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_daily_budget_runs_out_with_a_clear_error() {
        let budget = Budget::new("acme", Some(RateLimitSpec { per_second: None, per_day: Some(2) }));
        budget.acquire().await.unwrap();
        budget.acquire().await.unwrap();
        let error = budget.acquire().await.unwrap_err().to_string();
        assert!(error.contains("daily budget of 2 requests for connection `acme` is spent"), "{error}");
        assert!(error.contains("resets at 00:00 UTC, in "), "{error}");
    }

    #[test]
    fn budgets_are_shared_per_connection() {
        let budgets = Budgets::default();
        let a = budgets.for_connection("gong/a", None);
        assert!(Arc::ptr_eq(&a, &budgets.for_connection("gong/a", None)));
        assert!(!Arc::ptr_eq(&a, &budgets.for_connection("gong/b", None)));
    }
}
