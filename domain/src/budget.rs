//! Request budgets per provider tenant, from providers.yaml's
//! `proxy.rate_limit` (Gong: 3 a second and 10,000 a day per company): the
//! arithmetic and the store interface. The host's `limits::Budget` waits on
//! them before each request; the stores keep the state.
//!
//! The budget is a GCRA ("virtual scheduling"): each tenant keeps a
//! theoretical arrival time (TAT), and a request reserves the slot at
//! `max(TAT, now)` and moves the TAT one interval on. Reserving is a single
//! read-modify-write, so it can live in a shared store (one SQL statement)
//! and hold across processes: see [`BudgetStore`]. [`MemoryBudgets`] is the
//! same algorithm for one process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

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

/// What a store's one reservation statement returned, as a [`Reservation`]:
/// the tenant's new theoretical arrival time, the clock the statement ran
/// by, and today's count (`None`: nothing was reserved, the day is spent).
pub fn reservation_from(row: Option<(i64, i64, i64)>, limit: &RateLimitSpec) -> Reservation {
    match row {
        Some((tat, now, used)) => Reservation::Granted {
            wait: Duration::from_millis((tat - interval_ms(limit) as i64 - now).max(0) as u64),
            used_today: used.clamp(0, i64::from(u32::MAX)) as u32,
        },
        None => Reservation::DailySpent { limit: limit.per_day.unwrap_or(0) },
    }
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
}
