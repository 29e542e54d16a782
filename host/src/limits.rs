//! Waiting for a request slot of the tenant's budget (the arithmetic and the
//! store interface are `terapi_domain::budget`). Every request a tenant's
//! connections make, from a sync, an action or the proxy, retries included,
//! draws from the same budget.

use std::sync::Arc;
use std::time::Duration;

pub use terapi_domain::budget::{BudgetState, BudgetStore, DAY_MS, MemoryBudgets, Reservation, interval_ms, reserve};
pub use terapi_domain::clock::unix_ms;
use terapi_domain::providers::RateLimitSpec;

use crate::egress::EgressError;

/// One session's view of its tenant's budget.
pub struct Budget {
    tenant: String,
    limit: Option<RateLimitSpec>,
    store: Arc<dyn BudgetStore>,
}

impl Budget {
    pub fn new(tenant: &str, limit: Option<RateLimitSpec>, store: Arc<dyn BudgetStore>) -> Budget {
        let limit = limit.filter(|l| l.per_second.is_some_and(|n| n > 0) || l.per_day.is_some());
        Budget { tenant: tenant.to_string(), limit, store }
    }

    /// The tenant whose limits this budget keeps; `None` when it keeps
    /// none (no limits in providers.yaml, or limits turned off).
    pub fn tenant(&self) -> Option<&str> {
        self.limit.as_ref().map(|_| self.tenant.as_str())
    }

    /// No limits at all (benchmarks against a local fake).
    pub fn unlimited() -> Budget {
        Budget::new("unlimited", None, Arc::new(MemoryBudgets::default()))
    }

    /// Waits for this request's slot; fails at once when the daily budget is
    /// spent, saying when it comes back.
    pub async fn acquire(&self) -> Result<(), EgressError> {
        let Some(limit) = &self.limit else { return Ok(()) };
        let mut late_slots = 0;
        let mut store_down: Option<(std::time::Instant, Duration)> = None;
        loop {
            let now = unix_ms();
            match self.store.reserve(&self.tenant, limit, now).await {
                // The shared store is away (a database restarting or
                // failing over): wait for it rather than send unbudgeted
                // or fail the run, up to a few minutes.
                Err(e) if store_down.is_none_or(|(since, _)| since.elapsed() < STORE_OUTAGE_WAIT) => {
                    let (since, wait) = store_down.unwrap_or((std::time::Instant::now(), Duration::from_millis(100)));
                    if wait == Duration::from_millis(100) {
                        tracing::warn!("the request budget for {} cannot be read ({e}); waiting", self.tenant);
                    }
                    tokio::time::sleep(wait).await;
                    store_down = Some((since, (wait * 2).min(Duration::from_secs(5))));
                    continue;
                }
                Ok(Reservation::Granted { wait, used_today }) => {
                    if let Some(per_day) = limit.per_day {
                        terapi_metrics::set(
                            "terapi_provider_budget_remaining",
                            "Requests left today in the provider's daily budget, by tenant (as this process last saw it).",
                            &[("tenant", &self.tenant)],
                            f64::from(per_day.saturating_sub(used_today)),
                        );
                    }
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    // A process that was paused or starved of CPU (SIGSTOP,
                    // a frozen container, an overloaded machine) wakes long
                    // after its slot: sending then would bunch its requests
                    // with those of slots reserved since. It takes a fresh
                    // slot instead (a few times at most; each counts
                    // against the day).
                    let slot = now + wait.as_millis() as u64;
                    if unix_ms().saturating_sub(slot) > LATE_SLOT_TOLERANCE_MS && late_slots < MAX_LATE_SLOTS {
                        late_slots += 1;
                        continue;
                    }
                    return Ok(());
                }
                other => return self.refused(other, now),
            }
        }
    }

    fn refused(&self, reservation: Result<Reservation, impl std::fmt::Display>, now: u64) -> Result<(), EgressError> {
        match reservation {
            Ok(Reservation::Granted { .. }) => Ok(()),
            Ok(Reservation::DailySpent { limit }) => {
                let left = (DAY_MS - now % DAY_MS) / 1000;
                Err(EgressError::RateLimited(format!(
                    "the daily budget of {limit} requests for {} is spent; it resets at 00:00 UTC, in {}h {:02}m",
                    self.tenant,
                    left / 3600,
                    left % 3600 / 60
                )))
            }
            Err(e) => Err(EgressError::RateLimited(format!(
                "the request budget for {} could not be checked ({e}); try again",
                self.tenant
            ))),
        }
    }
}

/// How long a request waits for an unavailable budget store.
const STORE_OUTAGE_WAIT: Duration = Duration::from_secs(300);

/// How late a request may leave after its reserved slot.
const LATE_SLOT_TOLERANCE_MS: u64 = 200;
const MAX_LATE_SLOTS: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_daily_budget_runs_out_with_a_clear_error() {
        let limit = RateLimitSpec { per_second: None, per_day: Some(2) };
        let budget = Budget::new("tenant https://acme.example", Some(limit), Arc::new(MemoryBudgets::default()));
        budget.acquire().await.unwrap();
        budget.acquire().await.unwrap();
        let error = budget.acquire().await.unwrap_err().to_string();
        assert!(error.contains("daily budget of 2 requests for tenant https://acme.example is spent"), "{error}");
        assert!(error.contains("resets at 00:00 UTC, in "), "{error}");
    }
}
