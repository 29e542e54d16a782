//! The store on PostgreSQL, for more than one machine: several `terapi`
//! processes (serve, workers) on different hosts share one database.
//!
//! - The same encrypted secrets as the SQLite store (the master key never
//!   enters the database; every host needs the same key).
//! - Versioned migrations, run under an advisory lock so hosts starting
//!   together migrate once.
//! - Due syncs are claimed with `FOR UPDATE SKIP LOCKED`: workers never
//!   claim the same sync, and a dead worker's lease lapses and its sync is
//!   claimed again, resuming from the last committed page.
//! - Request budgets per provider tenant in one `UPDATE`, timed by the
//!   database's clock, so hosts with skewed clocks still share one rate.

mod driver;
mod schema;
pub mod tls;

use std::pin::Pin;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use terapi_domain::budget::{BudgetStore, Reservation, interval_ms, reservation_from};
use terapi_domain::providers::RateLimitSpec;
use terapi_store::{MasterKey, StoreError};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

pub struct PostgresStore {
    pool: Pool,
    key: MasterKey,
    /// The URL without its password, for errors.
    shown: String,
}

/// The database's clock in unix milliseconds: every host reads the same one.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

impl PostgresStore {
    /// Connects (a pool of `max_connections`), migrates, and checks `key`
    /// against the store before anything is written. `url` may carry
    /// libpq's `sslmode` and `sslrootcert` (see [`tls`]).
    pub async fn open(url: &str, key: MasterKey, max_connections: usize) -> Result<PostgresStore, StoreError> {
        let shown = without_password(url);
        let bad = |message: String| StoreError::Database { path: shown.clone().into(), message };
        let (rest, tls) = tls::split_tls_params(url).map_err(bad)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| bad(format!("not a PostgreSQL URL ({e}); expected postgres://user:password@host/db")))?;
        config.ssl_mode(tls.negotiation());
        let recycling = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match tls.client_config().map_err(bad)? {
            Some(client) => {
                Manager::from_config(config, tokio_postgres_rustls::MakeRustlsConnect::new(client), recycling)
            }
            None => Manager::from_config(config, NoTls, recycling),
        };
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .build()
            .map_err(|e| bad(format!("creating the connection pool: {e}")))?;
        // The first connection says plainly why it failed: the server's
        // own message, and what to check.
        let mut client = pool.get().await.map_err(|e| bad(first_connection_error(&e)))?;
        let store = PostgresStore { pool: pool.clone(), key, shown };
        let tx = client.transaction().await.map_err(|e| store.err(e))?;
        // One migrator at a time across every host; released at commit.
        tx.execute("SELECT pg_advisory_xact_lock(7372658)", &[]).await.map_err(|e| store.err(e))?;
        schema::migrate(&tx, &store.shown).await?;
        let check: Option<Vec<u8>> = tx
            .query_opt("SELECT value FROM meta WHERE key = 'key_check'", &[])
            .await
            .map_err(|e| store.err(e))?
            .map(|row| row.get(0));
        match check {
            Some(sealed) => store.key.matches(&sealed)?,
            None => {
                tx.execute("INSERT INTO meta (key, value) VALUES ('key_check', $1)", &[&store.key.key_check()])
                    .await
                    .map_err(|e| store.err(e))?;
            }
        }
        tx.commit().await.map_err(|e| store.err(e))?;
        drop(client);
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        // Dead connections (a restarted server) are dropped by recycling
        // and new ones made, so this recovers by itself once the server
        // is back; until then it is `Unavailable`.
        self.pool.get().await.map_err(|e| {
            let message = format!("no database connection: {}", pool_error_text(&e));
            let path = self.shown.clone().into();
            match &e {
                deadpool_postgres::PoolError::Backend(inner) if !is_transient(inner) => {
                    StoreError::Database { path, message }
                }
                _ => StoreError::Unavailable { path, message },
            }
        })
    }

    fn err(&self, e: tokio_postgres::Error) -> StoreError {
        let path = self.shown.clone().into();
        let message = error_text(&e);
        if is_transient(&e) {
            StoreError::Unavailable { path, message }
        } else {
            StoreError::Database { path, message }
        }
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(|e| self.err(e))?;
        client.query(&statement, params).await.map_err(|e| self.err(e))
    }

    async fn reserve_slot(&self, tenant: &str, limit: &RateLimitSpec) -> Result<Reservation, StoreError> {
        let interval = interval_ms(limit) as i64;
        let per_day = limit.per_day.map(i64::from);
        let rows = self
            .query(
                &format!(
                    "WITH now AS (SELECT {NOW_MS} AS ms)
                     INSERT INTO rate_budget AS b (tenant, tat_ms, day, used)
                     SELECT $1, now.ms + $2, now.ms / 86400000, 1 FROM now
                     ON CONFLICT (tenant) DO UPDATE SET
                         tat_ms = GREATEST(b.tat_ms, (SELECT ms FROM now)) + $2,
                         used = CASE WHEN b.day = (SELECT ms FROM now) / 86400000 THEN b.used + 1 ELSE 1 END,
                         day = (SELECT ms FROM now) / 86400000
                     WHERE $3::bigint IS NULL OR b.day <> (SELECT ms FROM now) / 86400000 OR b.used < $3
                     RETURNING b.tat_ms, (SELECT ms FROM now), b.used"
                ),
                &[&tenant, &interval, &per_day],
            )
            .await?;
        Ok(reservation_from(rows.first().map(|row| (row.get(0), row.get(1), row.get(2))), limit))
    }
}

impl BudgetStore for PostgresStore {
    fn reserve<'a>(
        &'a self,
        tenant: &'a str,
        limit: &'a RateLimitSpec,
        _now_ms: u64,
    ) -> Pin<Box<dyn Future<Output = Result<Reservation, String>> + Send + 'a>> {
        Box::pin(async move { self.reserve_slot(tenant, limit).await.map_err(|e| e.to_string()) })
    }
}

/// Whether the same call may work shortly: the connection dropped, the
/// server is starting, stopping or out of connections, or a transaction
/// lost a serialization race.
fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                ]
                .contains(code)
        }
        // No answer from a server: an I/O error (refused, reset, timed out).
        None => std::error::Error::source(e).is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some()),
    }
}

/// The error with its causes: tokio-postgres's own text is often only
/// "db error" or "error connecting to server", with the reason inside.
fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.code().code(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn pool_error_text(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(inner) => error_text(inner),
        other => other.to_string(),
    }
}

/// Why the first connection failed, with what to check.
fn first_connection_error(e: &deadpool_postgres::PoolError) -> String {
    let text = pool_error_text(e);
    let hint = match e {
        deadpool_postgres::PoolError::Backend(inner) => match inner.code() {
            Some(c) if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                "check the user and password in the URL, and pg_hba.conf for this host"
            }
            Some(c) if *c == SqlState::INVALID_CATALOG_NAME => "check the database name; create it first",
            Some(c) if *c == SqlState::TOO_MANY_CONNECTIONS => "the server is out of connections; try again later",
            Some(_) => "check the URL and the server's log",
            None if text.contains("server does not support TLS") => {
                "the server has TLS off; enable ssl on the server or use sslmode=prefer/disable"
            }
            None if text.contains("certificate") || text.contains("tls") || text.contains("TLS") => {
                "check sslmode and that sslrootcert is the CA that signed the server's certificate (and, for \
                 verify-full, that the certificate names the host in the URL)"
            }
            None => "check that PostgreSQL runs at the host and port in the URL and accepts connections from here",
        },
        _ => "check that PostgreSQL runs at the host and port in the URL",
    };
    format!("cannot connect: {text}; {hint}")
}

/// `postgres://user:secret@host/db` → `postgres://user@host/db`.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
