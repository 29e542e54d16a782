//! `BudgetStore`: reservations spaced as the GCRA in `terapi_domain::budget`
//! spaces them (PostgreSQL times them by the database's clock, so every
//! machine agrees), tenants apart, and a daily budget that runs out.

use std::time::Duration;

use terapi_e2e::terapi_host::limits::Reservation;
use terapi_e2e::terapi_host::providers::RateLimitSpec;
use terapi_e2e::terapi_store::Store;

use super::now_ms;

pub(super) async fn check(store: &dyn Store) {
    let limit = RateLimitSpec { per_second: Some(3), per_day: Some(5) };
    let mut waits = Vec::new();
    for used in 1..=5u32 {
        match store.reserve("tenant-a", &limit, now_ms()).await.unwrap() {
            Reservation::Granted { wait, used_today } => {
                assert_eq!(used_today, used);
                waits.push(wait.as_millis() as i64);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(waits[0] <= 5, "the first request goes at once: {waits:?}");
    // 1/3 s and 5% apart, less the moments that passed between the calls.
    assert!(waits.windows(2).all(|w| (250..=350).contains(&(w[1] - w[0]))), "{waits:?}");
    assert_eq!(store.reserve("tenant-a", &limit, now_ms()).await.unwrap(), Reservation::DailySpent { limit: 5 });
    assert_eq!(
        store.reserve("tenant-b", &limit, now_ms()).await.unwrap(),
        Reservation::Granted { wait: Duration::ZERO, used_today: 1 },
        "tenants are apart"
    );
    let unlimited = RateLimitSpec { per_second: None, per_day: None };
    for _ in 0..10 {
        let granted = store.reserve("tenant-c", &unlimited, now_ms()).await.unwrap();
        assert!(matches!(granted, Reservation::Granted { wait, .. } if wait.is_zero()), "{granted:?}");
    }
}
