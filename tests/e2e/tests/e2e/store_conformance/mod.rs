//! The store contract, role by role: every check runs on SQLite and on
//! PostgreSQL (a fresh database each), so a behaviour one store has and the
//! other lacks fails here. Each role trait of `terapi_store` has its module.

use std::collections::BTreeMap;
use std::sync::Arc;

use terapi_e2e::terapi_host::{Connection, Credentials, Secret};
use terapi_e2e::terapi_store::Store;
use terapi_e2e::*;

mod api_keys;
mod async_actions;
mod budgets;
mod connect_sessions;
mod connections;
mod coordination;
mod events;
mod governance;
mod records;
mod schedule;
mod schema;
mod sync_runs;

fn sqlite_store(name: &str) -> Arc<dyn Store> {
    platform_in(&fresh_dir(&format!("conformance-{name}"))).store().clone()
}

async fn postgres_store(name: &str) -> Arc<dyn Store> {
    fresh_postgres_platform(&format!("conformance_{name}")).await.store().clone()
}

/// A saved connection to `gong`, as the platform would save one after
/// verifying it (the store does not verify).
pub(super) async fn saved(store: &dyn Store, id: &str) -> Connection {
    let connection = Connection {
        id: id.to_string(),
        provider: "gong".into(),
        credentials: Credentials::Basic {
            username: format!("key-{id}"),
            password: Secret::new(format!("secret-{id}")),
        },
        config: BTreeMap::from([("api_base_url_for_customer".to_string(), "https://us-1.api.gong.io".to_string())]),
    };
    store.create_connection(&connection, None).await.unwrap();
    connection
}

pub(super) fn now_ms() -> u64 {
    terapi_e2e::terapi_host::limits::unix_ms()
}

macro_rules! on_both_stores {
    ($($role:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $role() {
                let store = super::sqlite_store(stringify!($role));
                terapi_e2e::block_on(super::$role::check(store.as_ref()));
            })*
        }
        mod postgres {
            $(#[test]
            fn $role() {
                terapi_e2e::block_on(async {
                    let store = super::postgres_store(stringify!($role)).await;
                    super::$role::check(store.as_ref()).await;
                });
            })*
        }
    };
}

on_both_stores!(
    api_keys,
    async_actions,
    budgets,
    connect_sessions,
    connections,
    coordination,
    events,
    governance,
    records,
    schedule,
    sync_runs,
);
