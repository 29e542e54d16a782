//! Request budgets per provider tenant, from providers.yaml's
//! `proxy.rate_limit` (Gong: 3 a second and 10,000 a day per company). Every
//! request a tenant's connections make, from a sync, an action or the proxy,
//! retries included, draws from the same budget.
//!
//! The budget is a GCRA ("virtual scheduling"): each tenant keeps a
//! theoretical arrival time (TAT), and a request reserves the slot at
//! `max(TAT, now)` and moves the TAT one interval on. Reserving is a single
//! read-modify-write, so it can live in a shared store (one SQL statement)
//! and hold across processes: see [`BudgetStore`]. [`MemoryBudgets`] is the
//! same algorithm for one process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::egress::EgressError;
use crate::providers::RateLimitSpec;

pub const DAY_MS: u64 = 86_400_000;

/// Requests are spaced a little wider than `1/per_second`: a request that
/// reaches the provider late (scheduling, a busy machine) then still leaves
/// every one-second window within the limit. 5% = 50 ms of slack at 3/s.
const SPACING_MARGIN: f64 = 1.05;

/// The per-tenant state a store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetState {
    /// Theoretical arrival time of the next request, unix milliseconds.
    pub tat_ms: u64,
    /// The UTC day (`unix_ms / DAY_MS`) `used` counts for.
    pub day: u64,
    pub used: u32,
}

/// What a reservation got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The slot is reserved; send after waiting this long. `used_today`
    /// counts this request.
    Granted { wait: Duration, used_today: u32 },
    /// Today's budget is spent; nothing was reserved.
    DailySpent { limit: u32 },
}

/// The spacing between two requests of one tenant, in milliseconds (0: no
/// per-second limit).
pub fn interval_ms(limit: &RateLimitSpec) -> u64 {
    match limit.per_second {
        Some(n) if n > 0 => (1000.0 * SPACING_MARGIN / f64::from(n)).ceil() as u64,
        _ => 0,
    }
}

/// One reservation, as a pure function of the stored state. A store that
/// cannot run Rust in its transaction (SQL) implements the same arithmetic;
/// `terapi-store`'s tests hold the two to the same answers.
pub fn reserve(state: Option<BudgetState>, limit: &RateLimitSpec, now_ms: u64) -> (BudgetState, Reservation) {
    let day = now_ms / DAY_MS;
    let state = state.unwrap_or(BudgetState { tat_ms: now_ms, day, used: 0 });
    let used_today = if state.day == day { state.used } else { 0 };
    if let Some(limit) = limit.per_day
        && used_today >= limit
    {
        return (state, Reservation::DailySpent { limit });
    }
    let start = state.tat_ms.max(now_ms);
    let next = BudgetState { tat_ms: start + interval_ms(limit), day, used: used_today + 1 };
    (next, Reservation::Granted { wait: Duration::from_millis(start - now_ms), used_today: next.used })
}

/// Where budgets are kept. One atomic reservation per request; an
/// implementation shared by several processes (a database) makes them keep
/// the provider's limits together.
pub trait BudgetStore: Send + Sync {
    fn reserve<'a>(
        &'a self,
        tenant: &'a str,
        limit: &'a RateLimitSpec,
        now_ms: u64,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Reservation, String>> + Send + 'a>>;
}

/// Budgets kept in this process only.
#[derive(Default)]
pub struct MemoryBudgets {
    tenants: Mutex<HashMap<String, BudgetState>>,
}

impl BudgetStore for MemoryBudgets {
    fn reserve<'a>(
        &'a self,
        tenant: &'a str,
        limit: &'a RateLimitSpec,
        now_ms: u64,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Reservation, String>> + Send + 'a>> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let (state, reservation) = reserve(tenants.get(tenant).copied(), limit, now_ms);
        tenants.insert(tenant.to_string(), state);
        Box::pin(std::future::ready(Ok(reservation)))
    }
}

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
                        crate::metrics::set(
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

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: RateLimitSpec = RateLimitSpec { per_second: Some(3), per_day: Some(5) };

    #[test]
    fn reservations_are_spaced_and_the_day_runs_out() {
        let mut state = None;
        let mut waits = Vec::new();
        for _ in 0..5 {
            let (next, r) = reserve(state, &THREE, 1_000_000);
            state = Some(next);
            let Reservation::Granted { wait, .. } = r else { panic!("{r:?}") };
            waits.push(wait.as_millis());
        }
        assert_eq!(waits, [0, 350, 700, 1050, 1400]);
        assert_eq!(reserve(state, &THREE, 1_000_000).1, Reservation::DailySpent { limit: 5 });
        // The next UTC day starts afresh.
        let (_, r) = reserve(state, &THREE, 1_000_000 + DAY_MS);
        assert_eq!(r, Reservation::Granted { wait: Duration::ZERO, used_today: 1 });
    }

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
