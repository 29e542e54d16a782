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

mod schema;
pub mod tls;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use terapi_domain::budget::{BudgetStore, Reservation, interval_ms};
use terapi_domain::providers::RateLimitSpec;
use terapi_domain::{Connection, Credentials, SyncPage, SyncRecord};
use terapi_store::{
    ApiKeyInfo, AsyncAction, AuditEntry, ConnectSession, ConnectionSummary, DeliveryNext, DeliveryRecord, EventRecord,
    GovernanceDoc, MasterKey, NewEvent, RETRY_FAILED_AFTER_MS, RecordChanges, RecordPage, RecordQuery, RunOutcome,
    Store, StoreError, StoredRecord, SyncLease, SyncQueue, SyncRunRecord, SyncState, TenantLoad, UnseenRecords,
    auth_mode_name, unix_now, username,
};
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

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(|e| self.err(e))?;
        client.execute(&statement, params).await.map_err(|e| self.err(e))
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(|e| self.err(e))?;
        client.query(&statement, params).await.map_err(|e| self.err(e))
    }

    async fn summaries(&self, id: Option<&str>) -> Result<Vec<ConnectionSummary>, StoreError> {
        let rows = self
            .query(
                "SELECT id, provider, auth_mode, username, config, created_at, updated_at, verified_at,
                        end_user, tags, metadata
                 FROM connections WHERE $1::text IS NULL OR id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ConnectionSummary {
                id: r.get(0),
                provider: r.get(1),
                auth_mode: r.get(2),
                username: r.get(3),
                config: serde_json::from_str(r.get::<_, &str>(4)).unwrap_or_default(),
                created_at: r.get::<_, i64>(5) as u64,
                updated_at: r.get::<_, i64>(6) as u64,
                verified_at: r.get::<_, Option<i64>>(7).map(|t| t as u64),
                end_user: r.get::<_, Option<&str>>(8).and_then(|t| serde_json::from_str(t).ok()),
                tags: r.get::<_, Option<&str>>(9).and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default(),
                metadata: r.get::<_, Option<&str>>(10).and_then(|t| serde_json::from_str(t).ok()),
            })
            .collect())
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
        Ok(match rows.first() {
            Some(row) => {
                let (tat, now, used): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
                Reservation::Granted {
                    wait: Duration::from_millis((tat - interval - now).max(0) as u64),
                    used_today: used.clamp(0, i64::from(u32::MAX)) as u32,
                }
            }
            None => Reservation::DailySpent { limit: limit.per_day.unwrap_or(0) },
        })
    }

    fn lease_lost(lease: &SyncLease) -> StoreError {
        StoreError::LeaseLost { connection: lease.connection_id.clone(), sync: lease.sync.clone() }
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

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn derived_secret(&self, purpose: &str) -> [u8; 32] {
        self.key.derive(purpose)
    }

    async fn create_connection(&self, connection: &Connection, event: Option<&NewEvent>) -> Result<(), StoreError> {
        let now = unix_now() as i64;
        let sealed = self.key.seal_credentials(&connection.id, &connection.credentials);
        let config = serde_json::to_string(&connection.config).unwrap_or_else(|_| "{}".into());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let inserted = tx
            .execute(
                "INSERT INTO connections (id, provider, auth_mode, username, sealed_credentials, config, created_at, updated_at, verified_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7) ON CONFLICT (id) DO NOTHING",
                &[
                    &connection.id,
                    &connection.provider,
                    &auth_mode_name(&connection.credentials),
                    &username(&connection.credentials),
                    &sealed,
                    &config,
                    &now,
                ],
            )
            .await
            .map_err(|e| self.err(e))?;
        if inserted == 0 {
            return Err(StoreError::ConnectionExists(connection.id.clone()));
        }
        if let Some(event) = event {
            insert_event(&tx, event, None, None).await.map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn rotate_credentials(
        &self,
        id: &str,
        credentials: &Credentials,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        let sealed = self.key.seal_credentials(id, credentials);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let changed = tx
            .execute(
                "UPDATE connections SET sealed_credentials = $2, auth_mode = $3, username = $4, updated_at = $5, verified_at = $5
                 WHERE id = $1",
                &[&id, &sealed, &auth_mode_name(credentials), &username(credentials), &(unix_now() as i64)],
            )
            .await
            .map_err(|e| self.err(e))?;
        if changed == 0 {
            return Err(StoreError::NoConnection(id.to_string()));
        }
        if let Some(event) = event {
            insert_event(&tx, event, None, None).await.map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn save_tokens(
        &self,
        id: &str,
        credentials: &Credentials,
        config: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection(id).await?;
        connection.config.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
        let merged = serde_json::to_string(&connection.config).unwrap_or_else(|_| "{}".into());
        let sealed = self.key.seal_credentials(id, credentials);
        let changed = self
            .execute(
                "UPDATE connections SET sealed_credentials = $2, auth_mode = $3, username = $4, config = $5,
                 updated_at = $6, verified_at = $6 WHERE id = $1",
                &[&id, &sealed, &auth_mode_name(credentials), &username(credentials), &merged, &(unix_now() as i64)],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NoConnection(id.to_string()));
        }
        Ok(())
    }

    async fn delete_connection(&self, id: &str) -> Result<(), StoreError> {
        // Sync state, runs and records go with it (ON DELETE CASCADE).
        if self.execute("DELETE FROM connections WHERE id = $1", &[&id]).await? == 0 {
            return Err(StoreError::NoConnection(id.to_string()));
        }
        Ok(())
    }

    async fn connection(&self, id: &str) -> Result<Connection, StoreError> {
        let rows =
            self.query("SELECT provider, sealed_credentials, config FROM connections WHERE id = $1", &[&id]).await?;
        let row = rows.first().ok_or_else(|| StoreError::NoConnection(id.to_string()))?;
        let sealed: Vec<u8> = row.get(1);
        let credentials = self.key.open_credentials(id, &sealed)?;
        let config = serde_json::from_str(row.get::<_, &str>(2))
            .map_err(|e| StoreError::Corrupt { id: id.to_string(), message: e.to_string() })?;
        Ok(Connection { id: id.to_string(), provider: row.get(0), credentials, config })
    }

    async fn connections(&self) -> Result<Vec<ConnectionSummary>, StoreError> {
        self.summaries(None).await
    }

    async fn connection_summary(&self, id: &str) -> Result<ConnectionSummary, StoreError> {
        self.summaries(Some(id)).await?.pop().ok_or_else(|| StoreError::NoConnection(id.to_string()))
    }

    async fn mark_verified(&self, id: &str) -> Result<(), StoreError> {
        self.execute("UPDATE connections SET verified_at = $2 WHERE id = $1", &[&id, &(unix_now() as i64)]).await?;
        Ok(())
    }

    async fn set_end_user(&self, id: &str, end_user: Option<&str>, tags: &str) -> Result<(), StoreError> {
        let changed = self
            .execute(
                "UPDATE connections SET end_user = $2, tags = $3, updated_at = $4 WHERE id = $1",
                &[&id, &end_user, &tags, &(unix_now() as i64)],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NoConnection(id.to_string()));
        }
        Ok(())
    }

    async fn set_metadata(&self, id: &str, metadata: Option<&str>) -> Result<(), StoreError> {
        let changed = self
            .execute(
                "UPDATE connections SET metadata = $2, updated_at = $3 WHERE id = $1",
                &[&id, &metadata, &(unix_now() as i64)],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NoConnection(id.to_string()));
        }
        Ok(())
    }

    async fn begin_sync(&self, lease: &SyncLease, model: &str, full: bool) -> Result<Option<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        // The row, locked, so two runs deciding at once see each other.
        tx.execute(
            "INSERT INTO sync_state (connection_id, sync, model, status) VALUES ($1, $2, $3, 'queued')
             ON CONFLICT (connection_id, sync) DO NOTHING",
            &[&lease.connection_id, &lease.sync, &model],
        )
        .await
        .map_err(|e| self.err(e))?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT lease_owner, lease_expires_at, {NOW_MS} FROM sync_state
                     WHERE connection_id = $1 AND sync = $2 FOR UPDATE"
                ),
                &[&lease.connection_id, &lease.sync],
            )
            .await
            .map_err(|e| self.err(e))?;
        let (owner, until, now): (Option<String>, Option<i64>, i64) = (row.get(0), row.get(1), row.get(2));
        if lease.claimed && owner.as_deref() != Some(lease.owner.as_str()) {
            return Err(Self::lease_lost(lease));
        }
        if let (Some(owner), Some(until)) = (owner, until)
            && owner != lease.owner
            && until > now
        {
            return Err(StoreError::SyncRunning {
                connection: lease.connection_id.clone(),
                sync: lease.sync.clone(),
                owner,
                until: terapi_store::time::rfc3339((until / 1000) as u64),
            });
        }
        let checkpoint: Option<String> = tx
            .query_one(
                "UPDATE sync_state SET status = 'running', model = $3, last_started_at = $4::bigint / 1000,
                     last_error = NULL, lease_owner = $5, lease_expires_at = $4::bigint + $6::bigint,
                     checkpoint = CASE WHEN $7 THEN NULL ELSE checkpoint END,
                     run_started_at_ms = CASE WHEN NOT $7 AND run_started_at_ms IS NOT NULL
                                                   AND status IN ('yielded', 'running', 'interrupted')
                                              THEN run_started_at_ms ELSE $4::bigint END,
                     run_resumed = CASE WHEN NOT $7 AND run_started_at_ms IS NOT NULL
                                             AND status IN ('yielded', 'running', 'interrupted')
                                        THEN run_resumed ELSE NOT $7 AND checkpoint IS NOT NULL END
                 WHERE connection_id = $1 AND sync = $2 RETURNING checkpoint",
                &[&lease.connection_id, &lease.sync, &model, &now, &lease.owner, &ms(lease.ttl), &full],
            )
            .await
            .map_err(|e| self.err(e))?
            .get(0);
        tx.execute(
            "INSERT INTO sync_runs (connection_id, sync, owner, started_at_ms, last_beat_ms, status)
             VALUES ($1, $2, $3, $4, $4, 'running')",
            &[&lease.connection_id, &lease.sync, &lease.owner, &now],
        )
        .await
        .map_err(|e| self.err(e))?;
        // A pass from the beginning starts now; a resumed one keeps its start.
        tx.execute(
            "UPDATE sync_state SET pass_started_at_ms = $3
             WHERE connection_id = $1 AND sync = $2 AND (checkpoint IS NULL OR pass_started_at_ms IS NULL)",
            &[&lease.connection_id, &lease.sync, &now],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(checkpoint)
    }

    async fn commit_page(&self, lease: &SyncLease, model: &str, page: &SyncPage) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let held = tx
            .execute(
                &format!(
                    "UPDATE sync_state SET checkpoint = $4, pages = pages + 1, lease_expires_at = {NOW_MS} + $5
                     WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3"
                ),
                &[&lease.connection_id, &lease.sync, &lease.owner, &page.next_checkpoint, &ms(lease.ttl)],
            )
            .await
            .map_err(|e| self.err(e))?;
        if held == 0 {
            return Err(Self::lease_lost(lease));
        }
        upsert_records(&tx, &lease.connection_id, model, &page.records).await.map_err(|e| self.err(e))?;
        tx.execute(
            &format!(
                "UPDATE sync_runs SET pages = pages + 1, records = records + $4, last_beat_ms = {NOW_MS}
                 WHERE connection_id = $1 AND sync = $2 AND owner = $3 AND finished_at_ms IS NULL"
            ),
            &[&lease.connection_id, &lease.sync, &lease.owner, &(page.records.len() as i64)],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn finish_sync(
        &self,
        lease: &SyncLease,
        outcome: RunOutcome<'_>,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        let (status, error) = (outcome.status(), outcome.message());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let run = tx
            .query_opt(
                &format!(
                    "SELECT model, COALESCE(run_started_at_ms, {NOW_MS}), run_resumed FROM sync_state
                     WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3 FOR UPDATE"
                ),
                &[&lease.connection_id, &lease.sync, &lease.owner],
            )
            .await
            .map_err(|e| self.err(e))?;
        let held = run.is_some();
        if let (Some(event), Some(run)) = (event, run) {
            let (model, started, resumed): (String, i64, bool) = (run.get(0), run.get(1), run.get(2));
            let changes = match outcome {
                RunOutcome::Done | RunOutcome::Warned(_) => {
                    Some(changes_since(&tx, &lease.connection_id, &model, started).await.map_err(|e| self.err(e))?)
                }
                _ => None,
            };
            insert_event(&tx, event, Some((started, resumed)), changes).await.map_err(|e| self.err(e))?;
        }
        tx.execute(
            &format!(
                "UPDATE sync_state SET status = $4, last_error = $5, last_finished_at = {NOW_MS} / 1000,
                     lease_owner = NULL, lease_expires_at = NULL,
                     due_at = CASE WHEN paused AND $4 <> 'yielded' THEN NULL
                                   WHEN $4 = 'done' THEN {NOW_MS} + frequency_secs * 1000
                                   WHEN $4 = 'yielded' THEN {NOW_MS}
                                   WHEN due_at IS NULL AND frequency_secs IS NULL THEN NULL
                                   WHEN $4 = 'interrupted' THEN {NOW_MS}
                                   ELSE {NOW_MS} + LEAST($6, COALESCE(frequency_secs * 1000, $6)) END
                 WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3"
            ),
            &[&lease.connection_id, &lease.sync, &lease.owner, &status, &error, &(RETRY_FAILED_AFTER_MS as i64)],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.execute(
            &format!(
                "UPDATE sync_runs SET status = CASE WHEN $5 THEN $4 ELSE 'lost' END,
                     finished_at_ms = CASE WHEN $5 THEN {NOW_MS} ELSE last_beat_ms END,
                     last_beat_ms = CASE WHEN $5 THEN {NOW_MS} ELSE last_beat_ms END
                 WHERE connection_id = $1 AND sync = $2 AND owner = $3 AND finished_at_ms IS NULL"
            ),
            &[&lease.connection_id, &lease.sync, &lease.owner, &status, &held],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn expire_lease(&self, connection_id: &str, sync: &str, dead_owner: &str) -> Result<bool, StoreError> {
        let changed = self
            .execute(
                "UPDATE sync_state SET lease_expires_at = 0 WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3",
                &[&connection_id, &sync, &dead_owner],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn mark_unseen_deleted(&self, lease: &SyncLease, model: &str) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        lock_changes(&tx, &lease.connection_id, model).await.map_err(|e| self.err(e))?;
        let marked = tx
            .execute(
                &format!(
                    "UPDATE records SET deleted_at = $5, updated_at = $5, change_seq = nextval('record_changes'),
                         changed_at_ms = {NOW_MS}, last_action = 'DELETED'
                     WHERE connection_id = $1 AND model = $4 AND deleted_at IS NULL
                       AND COALESCE(seen_at_ms, 0) < (SELECT pass_started_at_ms FROM sync_state
                                                      WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3)"
                ),
                &[&lease.connection_id, &lease.sync, &lease.owner, &model, &(unix_now() as i64)],
            )
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(marked)
    }

    async fn unseen_records(&self, lease: &SyncLease, model: &str) -> Result<UnseenRecords, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT SUM(CASE WHEN COALESCE(seen_at_ms, 0) < (SELECT pass_started_at_ms FROM sync_state
                                      WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3) THEN 1 ELSE 0 END),
                        COUNT(*)
                 FROM records WHERE connection_id = $1 AND model = $4 AND deleted_at IS NULL",
                &[&lease.connection_id, &lease.sync, &lease.owner, &model],
            )
            .await
            .map_err(|e| self.err(e))?;
        let unseen: Option<i64> = row.get(0);
        let live: i64 = row.get(1);
        Ok(UnseenRecords { unseen: unseen.unwrap_or(0) as u64, live: live as u64 })
    }

    async fn claim_once(&self, scope: &str, id: &str, keep_until_ms: u64) -> Result<bool, StoreError> {
        let now_ms = terapi_domain::clock::unix_ms() as i64;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        tx.execute(terapi_store::SQL_PRUNE_SEEN_ONCE, &[&scope, &now_ms]).await.map_err(|e| self.err(e))?;
        let new = tx
            .execute(terapi_store::SQL_CLAIM_ONCE, &[&scope, &id, &(keep_until_ms as i64)])
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(new == 1)
    }

    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now_ms = terapi_domain::clock::unix_ms() as i64;
        let client = self.client().await?;
        let taken = client
            .execute(terapi_store::SQL_TRY_LOCK, &[&name, &owner, &(now_ms + ttl.as_millis() as i64), &now_ms])
            .await
            .map_err(|e| self.err(e))?;
        Ok(taken == 1)
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.execute(terapi_store::SQL_UNLOCK, &[&name, &owner]).await.map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn live_locks(&self, prefix: &str) -> Result<u64, StoreError> {
        let now_ms = terapi_domain::clock::unix_ms() as i64;
        let pattern = terapi_store::like_prefix(prefix);
        let client = self.client().await?;
        let row = client
            .query_one(terapi_store::SQL_COUNT_LIVE_LOCKS, &[&pattern, &now_ms])
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn live_leases(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let now_ms = terapi_domain::clock::unix_ms() as i64;
        let client = self.client().await?;
        let rows = client.query(terapi_store::SQL_LIVE_LEASES, &[&now_ms]).await.map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    async fn renew_lease(&self, lease: &SyncLease) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let held = tx
            .execute(
                &format!(
                    "UPDATE sync_state SET lease_expires_at = {NOW_MS} + $4
                     WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3"
                ),
                &[&lease.connection_id, &lease.sync, &lease.owner, &ms(lease.ttl)],
            )
            .await
            .map_err(|e| self.err(e))?;
        if held == 0 {
            return Err(Self::lease_lost(lease));
        }
        tx.execute(
            &format!(
                "UPDATE sync_runs SET last_beat_ms = {NOW_MS}
                 WHERE connection_id = $1 AND sync = $2 AND owner = $3 AND finished_at_ms IS NULL"
            ),
            &[&lease.connection_id, &lease.sync, &lease.owner],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn sync_states(&self, connection_id: &str) -> Result<Vec<SyncState>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT s.sync, s.model, s.checkpoint,
                            CASE WHEN s.status = 'running' AND (s.lease_expires_at IS NULL OR s.lease_expires_at <= {NOW_MS})
                                 THEN 'interrupted' ELSE s.status END,
                            s.pages, s.last_started_at, s.last_finished_at, s.last_error,
                            (SELECT COUNT(*) FROM records r WHERE r.connection_id = s.connection_id AND r.model = s.model
                                                              AND r.deleted_at IS NULL),
                            s.frequency_secs, s.paused, s.due_at
                     FROM sync_state s WHERE s.connection_id = $1 ORDER BY s.sync"
                ),
                &[&connection_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SyncState {
                connection_id: connection_id.to_string(),
                sync: r.get(0),
                model: r.get(1),
                checkpoint: r.get(2),
                status: r.get(3),
                pages: r.get::<_, i64>(4) as u64,
                last_started_at: r.get::<_, Option<i64>>(5).map(|t| t as u64),
                last_finished_at: r.get::<_, Option<i64>>(6).map(|t| t as u64),
                last_error: r.get(7),
                records: r.get::<_, i64>(8) as u64,
                frequency_secs: r.get::<_, Option<i64>>(9).map(|t| t as u64),
                paused: r.get(10),
                due_at_ms: r.get::<_, Option<i64>>(11).map(|t| t as u64),
            })
            .collect())
    }

    async fn sync_runs(&self, connection_id: &str) -> Result<Vec<SyncRunRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT connection_id, sync, owner, started_at_ms, last_beat_ms, finished_at_ms, status, pages, records
                 FROM sync_runs WHERE connection_id = $1 ORDER BY id",
                &[&connection_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SyncRunRecord {
                connection_id: r.get(0),
                sync: r.get(1),
                owner: r.get(2),
                started_at_ms: r.get::<_, i64>(3) as u64,
                last_beat_ms: r.get::<_, i64>(4) as u64,
                finished_at_ms: r.get::<_, Option<i64>>(5).map(|t| t as u64),
                status: r.get(6),
                pages: r.get::<_, i64>(7) as u64,
                records: r.get::<_, i64>(8) as u64,
            })
            .collect())
    }

    async fn schedule_sync(
        &self,
        connection_id: &str,
        sync: &str,
        model: &str,
        due_at_ms: u64,
        reset: bool,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO sync_state (connection_id, sync, model, status, due_at) VALUES ($1, $2, $3, 'queued', $4)
             ON CONFLICT (connection_id, sync) DO UPDATE SET model = $3, due_at = $4,
                 checkpoint = CASE WHEN $5 THEN NULL ELSE sync_state.checkpoint END",
            &[&connection_id, &sync, &model, &(due_at_ms as i64), &reset],
        )
        .await?;
        Ok(())
    }

    async fn set_schedule(
        &self,
        connection_id: &str,
        sync: &str,
        model: &str,
        frequency_secs: u64,
        paused: bool,
        due_at_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO sync_state (connection_id, sync, model, status, due_at, frequency_secs, paused)
             VALUES ($1, $2, $3, 'queued', $4, $5, $6)
             ON CONFLICT (connection_id, sync) DO UPDATE SET model = $3, due_at = $4, frequency_secs = $5, paused = $6",
            &[&connection_id, &sync, &model, &due_at_ms.map(|t| t as i64), &(frequency_secs as i64), &paused],
        )
        .await?;
        Ok(())
    }

    async fn record_changes(
        &self,
        connection_id: &str,
        model: &str,
        since_ms: u64,
    ) -> Result<RecordChanges, StoreError> {
        let client = self.client().await?;
        changes_since(&client, connection_id, model, since_ms as i64).await.map_err(|e| self.err(e))
    }

    async fn due_now(&self) -> Result<u64, StoreError> {
        let rows = self.query(&format!("SELECT COUNT(*) FROM sync_state WHERE due_at <= {NOW_MS}"), &[]).await?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0))
    }

    async fn claim_due_sync(
        &self,
        owner: &str,
        ttl: Duration,
        skip_tenants: &[String],
    ) -> Result<Option<(String, String)>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "WITH now AS (SELECT {NOW_MS} AS ms),
                     due AS (SELECT connection_id, sync FROM sync_state, now
                             WHERE due_at <= now.ms AND (lease_owner IS NULL OR lease_expires_at <= now.ms)
                               AND (tenant IS NULL OR NOT (tenant = ANY($3)))
                             ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED)
                     UPDATE sync_state s SET lease_owner = $1, lease_expires_at = (SELECT ms FROM now) + $2
                     FROM due WHERE s.connection_id = due.connection_id AND s.sync = due.sync
                     RETURNING s.connection_id, s.sync"
                ),
                &[&owner, &ms(ttl), &skip_tenants],
            )
            .await?;
        Ok(rows.first().map(|r| (r.get(0), r.get(1))))
    }

    async fn set_sync_tenant(&self, connection_id: &str, tenant: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE sync_state SET tenant = $2 WHERE connection_id = $1 AND tenant IS DISTINCT FROM $2",
            &[&connection_id, &tenant],
        )
        .await?;
        Ok(())
    }

    async fn tenant_load(&self, backlog_ms: u64) -> Result<TenantLoad, StoreError> {
        let running = self
            .query(
                &format!(
                    "SELECT tenant, COUNT(*) FROM sync_state
                     WHERE lease_owner IS NOT NULL AND lease_expires_at > {NOW_MS} AND tenant IS NOT NULL
                     GROUP BY tenant"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u32))
            .collect();
        let busy = self
            .query(&format!("SELECT tenant FROM rate_budget WHERE tat_ms > {NOW_MS} + $1"), &[&(backlog_ms as i64)])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let now_ms = terapi_domain::clock::unix_ms() as i64;
        let waiting = self
            .query(terapi_store::SQL_WAITING_BY_TENANT, &[&now_ms])
            .await?
            .iter()
            .map(|r| (r.get::<_, Option<String>>(0), r.get::<_, i64>(1) as u32))
            .collect();
        Ok(TenantLoad { running, busy, waiting })
    }

    async fn waiting_syncs(&self) -> Result<u64, StoreError> {
        let rows = self
            .query(
                &format!(
                    "WITH now AS (SELECT {NOW_MS} AS ms)
                     SELECT COUNT(*) FROM sync_state, now
                     WHERE due_at <= now.ms AND (lease_owner IS NULL OR lease_expires_at <= now.ms)"
                ),
                &[],
            )
            .await?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0))
    }

    async fn sync_queue(&self) -> Result<SyncQueue, StoreError> {
        let rows = self
            .query(
                &format!(
                    "WITH now AS (SELECT {NOW_MS} AS ms)
                     SELECT
                         COUNT(*) FILTER (WHERE due_at <= now.ms AND (lease_owner IS NULL OR lease_expires_at <= now.ms)),
                         COUNT(*) FILTER (WHERE lease_owner IS NOT NULL AND lease_expires_at > now.ms),
                         COALESCE(now.ms - MIN(due_at) FILTER (
                             WHERE due_at <= now.ms AND (lease_owner IS NULL OR lease_expires_at <= now.ms)), 0)
                     FROM sync_state, now GROUP BY now.ms"
                ),
                &[],
            )
            .await?;
        Ok(rows
            .first()
            .map(|r| SyncQueue {
                waiting: r.get::<_, i64>(0) as u64,
                running: r.get::<_, i64>(1) as u64,
                lag_ms: r.get::<_, i64>(2).max(0) as u64,
            })
            .unwrap_or_default())
    }

    async fn record_event(&self, event: &NewEvent) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        insert_event(&tx, event, None, None).await.map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn claim_events(&self, owner: &str, ttl: Duration, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "WITH now AS (SELECT {NOW_MS} AS ms),
                     due AS (SELECT seq AS due_seq FROM events, now
                             WHERE status = 'pending' AND next_attempt_at_ms <= now.ms
                               AND (claimed_by IS NULL OR claim_expires_at_ms <= now.ms)
                             ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)
                     UPDATE events e SET claimed_by = $1, claim_expires_at_ms = (SELECT ms FROM now) + $2,
                         attempts = attempts + 1
                     FROM due WHERE e.seq = due.due_seq
                     RETURNING {EVENT_COLUMNS}"
                ),
                &[&owner, &ms(ttl), &i64::from(limit)],
            )
            .await?;
        let mut events: Vec<(i64, EventRecord)> = rows.iter().map(|r| (r.get(15), event_from_row(r))).collect();
        events.sort_by_key(|(seq, _)| *seq);
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }

    async fn record_delivery(&self, delivery: &DeliveryRecord, next: DeliveryNext) -> Result<(), StoreError> {
        let (status, retry_in) = match next {
            DeliveryNext::Delivered => ("delivered", 0),
            DeliveryNext::Skipped => ("skipped", 0),
            DeliveryNext::RetryIn(wait) => ("pending", ms(wait)),
            DeliveryNext::GiveUp => ("failed", 0),
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        if next != DeliveryNext::Skipped {
            tx.execute(
                "INSERT INTO event_deliveries (event_id, attempt, at_ms, owner, url, status_code, error, duration_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &delivery.event_id,
                    &i64::from(delivery.attempt),
                    &(delivery.at_ms as i64),
                    &delivery.owner,
                    &delivery.url,
                    &delivery.status_code.map(i32::from),
                    &delivery.error,
                    &(delivery.duration_ms as i64),
                ],
            )
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.execute(
            &format!(
                "UPDATE events SET status = $3, next_attempt_at_ms = {NOW_MS} + $4, claimed_by = NULL,
                     claim_expires_at_ms = NULL,
                     delivered_at_ms = CASE WHEN $3 = 'delivered' THEN {NOW_MS} ELSE delivered_at_ms END,
                     last_error = $5
                 WHERE id = $1 AND claimed_by = $2"
            ),
            &[&delivery.event_id, &delivery.owner, &status, &retry_in, &delivery.error],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn release_events(&self, owner: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE events SET claimed_by = NULL, claim_expires_at_ms = NULL WHERE claimed_by = $1",
            &[&owner],
        )
        .await?;
        Ok(())
    }

    async fn events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        let rows = self
            .query(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT $1"), &[&i64::from(limit)])
            .await?;
        Ok(rows.iter().map(event_from_row).collect())
    }

    async fn deliveries(&self, event_id: Option<&str>, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT event_id, attempt, at_ms, owner, url, status_code, error, duration_ms FROM event_deliveries
                 WHERE $1::text IS NULL OR event_id = $1 ORDER BY seq DESC LIMIT $2",
                &[&event_id, &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| DeliveryRecord {
                event_id: r.get(0),
                attempt: r.get::<_, i64>(1) as u32,
                at_ms: r.get::<_, i64>(2) as u64,
                owner: r.get(3),
                url: r.get(4),
                status_code: r.get::<_, Option<i32>>(5).map(|c| c as u16),
                error: r.get(6),
                duration_ms: r.get::<_, i64>(7) as u64,
            })
            .collect())
    }

    async fn prune_events(&self, before_ms: u64) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let before = before_ms as i64;
        tx.execute(
            "DELETE FROM event_deliveries WHERE event_id IN (SELECT id FROM events WHERE created_at_ms < $1)",
            &[&before],
        )
        .await
        .map_err(|e| self.err(e))?;
        let pruned =
            tx.execute("DELETE FROM events WHERE created_at_ms < $1", &[&before]).await.map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(pruned)
    }

    async fn upsert_records(&self, connection_id: &str, model: &str, records: &[SyncRecord]) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        upsert_records(&tx, connection_id, model, records).await.map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn records(&self, query: &RecordQuery) -> Result<RecordPage, StoreError> {
        let after: i64 = match &query.cursor {
            Some(cursor) => cursor.parse().map_err(|_| {
                StoreError::BadQuery("the cursor is not one this store handed out; start again without it".into())
            })?,
            None => 0,
        };
        let actions: Vec<&str> = query.actions.iter().map(|a| a.as_str()).collect();
        let limit = i64::from(query.limit.clamp(1, 10_000));
        let rows = self
            .query(
                "SELECT change_seq, id, json, first_seen_at, updated_at, deleted_at, changed_at_ms, last_action, pruned_at
                 FROM records
                 WHERE connection_id = $1 AND model = $2 AND change_seq > $3
                 AND ($4::bigint IS NULL OR changed_at_ms >= $4)
                 AND ($6 OR deleted_at IS NULL)
                 AND (cardinality($7::text[]) = 0 OR last_action = ANY($7))
                 AND (cardinality($8::text[]) = 0 OR id = ANY($8))
                 ORDER BY change_seq LIMIT $5",
                &[
                    &query.connection_id,
                    &query.model,
                    &after,
                    &query.modified_after_ms.map(|t| t as i64),
                    &(limit + 1),
                    &query.include_deleted,
                    &actions,
                    &query.ids,
                ],
            )
            .await?;
        let more = rows.len() as i64 > limit;
        let rows = &rows[..rows.len().min(limit as usize)];
        let next_cursor = more.then(|| rows.last().map(|r| r.get::<_, i64>(0).to_string())).flatten();
        let records = rows
            .iter()
            .map(|r| StoredRecord {
                id: r.get(1),
                json: r.get(2),
                first_seen_at: r.get::<_, i64>(3) as u64,
                updated_at: r.get::<_, i64>(4) as u64,
                deleted_at: r.get::<_, Option<i64>>(5).map(|t| t as u64),
                changed_at_ms: r.get::<_, i64>(6) as u64,
                last_action: terapi_store::LastAction::parse(r.get::<_, &str>(7))
                    .unwrap_or(terapi_store::LastAction::Added),
                pruned_at: r.get::<_, Option<i64>>(8).map(|t| t as u64),
                cursor: r.get::<_, i64>(0).to_string(),
            })
            .collect();
        Ok(RecordPage { records, next_cursor })
    }

    async fn prune_records(
        &self,
        connection_id: &str,
        model: &str,
        until_cursor: &str,
        limit: u32,
    ) -> Result<(u64, bool), StoreError> {
        let until: i64 = until_cursor.parse().map_err(|_| {
            StoreError::BadQuery("`until_cursor` is not a cursor this store handed out (a record's cursor)".into())
        })?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        lock_changes(&tx, connection_id, model).await.map_err(|e| self.err(e))?;
        let pruned = tx
            .execute(
                "UPDATE records SET json = '{}', pruned_at = $4
                 WHERE (connection_id, model, id) IN
                       (SELECT connection_id, model, id FROM records
                        WHERE connection_id = $1 AND model = $2 AND change_seq <= $3 AND pruned_at IS NULL
                        ORDER BY change_seq LIMIT $5)",
                &[&connection_id, &model, &until, &(unix_now() as i64), &i64::from(limit.clamp(1, 10_000))],
            )
            .await
            .map_err(|e| self.err(e))?;
        let more: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM records
                                WHERE connection_id = $1 AND model = $2 AND change_seq <= $3 AND pruned_at IS NULL)",
                &[&connection_id, &model, &until],
            )
            .await
            .map_err(|e| self.err(e))?
            .get(0);
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok((pruned, more))
    }

    async fn tool_decisions(&self, provider: &str) -> Result<BTreeMap<String, bool>, StoreError> {
        let rows = self.query("SELECT tool, status FROM tool_policy WHERE provider = $1", &[&provider]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get::<_, &str>(1) == "approved")).collect())
    }

    async fn set_tool_decision(&self, provider: &str, tool: &str, approved: bool) -> Result<(), StoreError> {
        let status = if approved { "approved" } else { "denied" };
        self.execute(
            "INSERT INTO tool_policy (provider, tool, status, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (provider, tool) DO UPDATE SET status = $3, updated_at = $4",
            &[&provider, &tool, &status, &(unix_now() as i64)],
        )
        .await?;
        Ok(())
    }

    async fn governance_docs(&self, kind: &str) -> Result<Vec<GovernanceDoc>, StoreError> {
        let rows =
            self.query("SELECT key, version, body FROM governance WHERE kind = $1 ORDER BY key", &[&kind]).await?;
        Ok(rows.iter().map(|r| GovernanceDoc { key: r.get(0), version: r.get(1), body: r.get(2) }).collect())
    }

    async fn governance_doc(&self, kind: &str, key: &str) -> Result<Option<GovernanceDoc>, StoreError> {
        let rows = self
            .query("SELECT key, version, body FROM governance WHERE kind = $1 AND key = $2", &[&kind, &key])
            .await?;
        Ok(rows.first().map(|r| GovernanceDoc { key: r.get(0), version: r.get(1), body: r.get(2) }))
    }

    async fn put_governance_doc(
        &self,
        kind: &str,
        key: &str,
        expected_version: i64,
        body: &str,
    ) -> Result<bool, StoreError> {
        let now = unix_now() as i64;
        let written = if expected_version == 0 {
            self.execute(
                "INSERT INTO governance (kind, key, version, body, updated_at) VALUES ($1, $2, 1, $3, $4)
                 ON CONFLICT (kind, key) DO NOTHING",
                &[&kind, &key, &body, &now],
            )
            .await?
        } else {
            self.execute(
                "UPDATE governance SET version = version + 1, body = $3, updated_at = $4
                 WHERE kind = $1 AND key = $2 AND version = $5",
                &[&kind, &key, &body, &now, &expected_version],
            )
            .await?
        };
        Ok(written == 1)
    }

    async fn governance_version(&self) -> Result<i64, StoreError> {
        let rows = self.query("SELECT coalesce(sum(version), 0)::BIGINT FROM governance", &[]).await?;
        Ok(rows.first().map(|r| r.get(0)).unwrap_or(0))
    }

    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO audit (at, caller, connection_id, tool, input_sha256, status, duration_ms, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &(entry.at as i64),
                &entry.caller,
                &entry.connection_id,
                &entry.tool,
                &entry.input_sha256,
                &entry.status,
                &(entry.duration_ms as i64),
                &entry.detail,
            ],
        )
        .await?;
        Ok(())
    }

    async fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = self
            .query(
                "SELECT at, caller, connection_id, tool, input_sha256, status, duration_ms, detail FROM
                 (SELECT * FROM audit ORDER BY id DESC LIMIT $1) newest ORDER BY id",
                &[&i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                at: r.get::<_, i64>(0) as u64,
                caller: r.get(1),
                connection_id: r.get(2),
                tool: r.get(3),
                input_sha256: r.get(4),
                status: r.get(5),
                duration_ms: r.get::<_, i64>(6) as u64,
                detail: r.get(7),
            })
            .collect())
    }

    async fn create_api_key(&self, sha256: &str, label: &str) -> Result<ApiKeyInfo, StoreError> {
        let info =
            ApiKeyInfo { id: terapi_store::api_key_id(sha256), label: label.to_string(), created_at: unix_now() };
        self.execute(
            "INSERT INTO api_keys (sha256, id, label, created_at) VALUES ($1, $2, $3, $4)",
            &[&sha256, &info.id, &info.label, &(info.created_at as i64)],
        )
        .await?;
        Ok(info)
    }

    async fn api_key_exists(&self, sha256: &str) -> Result<bool, StoreError> {
        Ok(!self.query("SELECT 1 FROM api_keys WHERE sha256 = $1", &[&sha256]).await?.is_empty())
    }

    async fn api_key_sha256(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.query("SELECT sha256 FROM api_keys WHERE id = $1", &[&id]).await?.first().map(|r| r.get(0)))
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let rows = self.query("SELECT id, label, created_at FROM api_keys ORDER BY created_at, id", &[]).await?;
        Ok(rows
            .iter()
            .map(|r| ApiKeyInfo { id: r.get(0), label: r.get(1), created_at: r.get::<_, i64>(2) as u64 })
            .collect())
    }

    async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM api_keys WHERE id = $1", &[&id]).await? > 0)
    }

    async fn create_async_action(&self, action: &AsyncAction) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO async_actions (id, connection_id, action, status, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
            &[&action.id, &action.connection_id, &action.action, &action.status, &(action.created_at_ms as i64)],
        )
        .await?;
        Ok(())
    }

    async fn finish_async_action(
        &self,
        id: &str,
        result: Result<&str, &str>,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        let (status, output, error) = match result {
            Ok(output) => ("done", Some(output), None),
            Err(error) => ("failed", None, Some(error)),
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        tx.execute(
            &format!(
                "UPDATE async_actions SET status = $2, output = $3, error = $4, finished_at_ms = {NOW_MS}
                 WHERE id = $1 AND status = 'pending'"
            ),
            &[&id, &status, &output, &error],
        )
        .await
        .map_err(|e| self.err(e))?;
        if let Some(event) = event {
            insert_event(&tx, event, None, None).await.map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn async_action(&self, id: &str) -> Result<Option<AsyncAction>, StoreError> {
        let rows = self
            .query(
                "SELECT id, connection_id, action, status, output, error, created_at_ms, finished_at_ms
                 FROM async_actions WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(rows.first().map(|r| AsyncAction {
            id: r.get(0),
            connection_id: r.get(1),
            action: r.get(2),
            status: r.get(3),
            output: r.get(4),
            error: r.get(5),
            created_at_ms: r.get::<_, i64>(6) as u64,
            finished_at_ms: r.get::<_, Option<i64>>(7).map(|t| t as u64),
        }))
    }

    async fn create_connect_session(&self, session: &ConnectSession) -> Result<(), StoreError> {
        // Sessions live minutes; the expired ones are swept as new ones come.
        self.execute(&format!("DELETE FROM connect_sessions WHERE expires_at_ms < {NOW_MS} - 86400000"), &[]).await?;
        let allowed = serde_json::to_string(&session.allowed_integrations).unwrap_or_else(|_| "[]".into());
        self.execute(
            "INSERT INTO connect_sessions
                 (token_sha256, end_user, allowed_integrations, expires_at_ms, connection_id, allowed_origin,
                  reconnect_connection_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &session.token_sha256,
                &session.owner,
                &allowed,
                &(session.expires_at_ms as i64),
                &session.connection_id,
                &session.allowed_origin,
                &session.reconnect_connection_id,
            ],
        )
        .await?;
        Ok(())
    }

    async fn connect_session(&self, token_sha256: &str) -> Result<Option<ConnectSession>, StoreError> {
        let rows = self
            .query(
                "SELECT end_user, allowed_integrations, expires_at_ms, connection_id, allowed_origin,
                        reconnect_connection_id
                 FROM connect_sessions WHERE token_sha256 = $1",
                &[&token_sha256],
            )
            .await?;
        Ok(rows.first().map(|r| ConnectSession {
            token_sha256: token_sha256.to_string(),
            owner: r.get(0),
            allowed_integrations: serde_json::from_str(r.get::<_, &str>(1)).unwrap_or_default(),
            expires_at_ms: r.get::<_, i64>(2) as u64,
            connection_id: r.get(3),
            allowed_origin: r.get(4),
            reconnect_connection_id: r.get(5),
        }))
    }

    async fn claim_connect_session(
        &self,
        token_sha256: &str,
        connection_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let changed = self
            .execute(
                "UPDATE connect_sessions SET connection_id = $2
                 WHERE token_sha256 = $1 AND connection_id IS NULL AND expires_at_ms >= $3",
                &[&token_sha256, &connection_id, &(now_ms as i64)],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn release_connect_session(&self, token_sha256: &str, connection_id: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE connect_sessions SET connection_id = NULL WHERE token_sha256 = $1 AND connection_id = $2",
            &[&token_sha256, &connection_id],
        )
        .await?;
        Ok(())
    }
}

/// The columns `event_from_row` reads.
const EVENT_COLUMNS: &str = "id, kind, connection_id, facts, created_at_ms, status, attempts, next_attempt_at_ms,
     delivered_at_ms, last_error, run_started_at_ms, run_resumed, added, updated, deleted, seq";

fn event_from_row(r: &tokio_postgres::Row) -> EventRecord {
    let changes = match (r.get::<_, Option<i64>>(12), r.get::<_, Option<i64>>(13), r.get::<_, Option<i64>>(14)) {
        (Some(added), Some(updated), Some(deleted)) => {
            Some(RecordChanges { added: added as u64, updated: updated as u64, deleted: deleted as u64 })
        }
        _ => None,
    };
    EventRecord {
        id: r.get(0),
        kind: r.get(1),
        connection_id: r.get(2),
        facts: r.get(3),
        created_at_ms: r.get::<_, i64>(4) as u64,
        status: r.get(5),
        attempts: r.get::<_, i32>(6) as u32,
        next_attempt_at_ms: r.get::<_, i64>(7) as u64,
        delivered_at_ms: r.get::<_, Option<i64>>(8).map(|t| t as u64),
        last_error: r.get(9),
        run_started_at_ms: r.get::<_, Option<i64>>(10).map(|t| t as u64),
        run_resumed: r.get(11),
        changes,
    }
}

/// Writes an event in the caller's transaction, timed by the database.
async fn insert_event(
    tx: &deadpool_postgres::Transaction<'_>,
    event: &NewEvent,
    run: Option<(i64, bool)>,
    changes: Option<RecordChanges>,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        &format!(
            "INSERT INTO events (id, kind, connection_id, facts, created_at_ms, next_attempt_at_ms,
                                 run_started_at_ms, run_resumed, added, updated, deleted)
             VALUES ($1, $2, $3, $4, {NOW_MS}, {NOW_MS}, $5, $6, $7, $8, $9)"
        ),
        &[
            &event.id,
            &event.kind,
            &event.connection_id,
            &event.facts,
            &run.map(|r| r.0),
            &run.is_some_and(|r| r.1),
            &changes.map(|c| c.added as i64),
            &changes.map(|c| c.updated as i64),
            &changes.map(|c| c.deleted as i64),
        ],
    )
    .await?;
    Ok(())
}

/// What records of `model` changed at or after `since_ms`, by what their
/// last change was: the same records `modified_after_ms` lists.
async fn changes_since(
    db: &impl deadpool_postgres::GenericClient,
    connection_id: &str,
    model: &str,
    since_ms: i64,
) -> Result<RecordChanges, tokio_postgres::Error> {
    let row = db
        .query_one(
            "SELECT COUNT(*) FILTER (WHERE last_action = 'ADDED'), COUNT(*) FILTER (WHERE last_action = 'UPDATED'),
                    COUNT(*) FILTER (WHERE last_action = 'DELETED')
             FROM records WHERE connection_id = $1 AND model = $2 AND changed_at_ms >= $3",
            &[&connection_id, &model, &since_ms],
        )
        .await?;
    Ok(RecordChanges {
        added: row.get::<_, i64>(0) as u64,
        updated: row.get::<_, i64>(1) as u64,
        deleted: row.get::<_, i64>(2) as u64,
    })
}

/// Changes of one (connection, model) commit one at a time, in the order
/// they took their numbers: a reader never sees number 105 committed
/// while 104 is still to come, so a cursor skips nothing.
async fn lock_changes(
    tx: &deadpool_postgres::Transaction<'_>,
    connection_id: &str,
    model: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 7372659))", &[&connection_id, &model])
        .await?;
    Ok(())
}

/// A page's upsert, one statement (see `terapi_store::SQL_RECORD_UPSERT_SET`).
static UPSERT_PAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO records (connection_id, model, id, json, modified_at, modified_at_ms, first_seen_at, updated_at,
                              seen_at_ms, change_seq, changed_at_ms, last_action)
         SELECT $1, $2, page.id, page.json, page.modified_at, page.modified_at_ms, $6, $6, $7,
                nextval('record_changes'), $7, 'ADDED'
         FROM unnest($3::text[], $4::text[], $5::text[], $8::bigint[])
              WITH ORDINALITY AS page (id, json, modified_at, modified_at_ms, n)
         ORDER BY page.n
         ON CONFLICT (connection_id, model, id) DO UPDATE {}",
        terapi_store::SQL_RECORD_UPSERT_SET
    )
});

/// Unchanged records are left alone, so `updated_at` means "changed".
async fn upsert_records(
    tx: &deadpool_postgres::Transaction<'_>,
    connection_id: &str,
    model: &str,
    records: &[SyncRecord],
) -> Result<(), tokio_postgres::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let now = unix_now() as i64;
    // One statement can touch a row once: of an id given twice, the last wins.
    let mut last: std::collections::HashMap<&str, &SyncRecord> = std::collections::HashMap::new();
    let mut order = Vec::with_capacity(records.len());
    for record in records {
        if last.insert(record.id.as_str(), record).is_none() {
            order.push(record.id.as_str());
        }
    }
    let page: Vec<&SyncRecord> = order.iter().map(|id| last[id]).collect();
    // One statement for the page: arrays of ids, JSON and times, unnested.
    let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    let jsons: Vec<&str> = page.iter().map(|r| r.json.as_str()).collect();
    let modified: Vec<Option<&str>> = page.iter().map(|r| r.modified_at.as_deref()).collect();
    let now_ms = terapi_domain::clock::unix_ms() as i64;
    lock_changes(tx, connection_id, model).await?;
    let statement = tx.prepare_cached(UPSERT_PAGE.as_str()).await?;
    let modified_ms: Vec<Option<i64>> = page.iter().map(|r| terapi_store::modified_at_ms(r)).collect();
    tx.execute(&statement, &[&connection_id, &model, &ids, &jsons, &modified, &now, &now_ms, &modified_ms]).await?;
    Ok(())
}
