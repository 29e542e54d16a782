//! The store on one machine: one SQLite file (WAL) under a data directory.
//! Several processes may share it: opening is race-free, sync runs are
//! leased, and request budgets are kept in it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use terapi_domain::budget::{BudgetStore, Reservation, interval_ms};
use terapi_domain::providers::RateLimitSpec;
use terapi_domain::{Connection, Credentials, SyncPage, SyncRecord};

use crate::crypto::MasterKey;
use crate::{
    ApiKeyInfo, AsyncAction, AuditEntry, ConnectSession, ConnectionSummary, DeliveryNext, DeliveryRecord, EventRecord,
    GovernanceDoc, NewEvent, RecordChanges, RecordPage, RecordQuery, RunOutcome, Store, StoreError, StoredRecord,
    SyncLease, SyncQueue, SyncRunRecord, SyncState, TenantLoad, UnseenRecords, auth_mode_name, schema, unix_now,
    username,
};

/// The columns `event_from_row` reads.
const EVENT_COLUMNS: &str = "id, kind, connection_id, facts, created_at_ms, status, attempts, next_attempt_at_ms,
     delivered_at_ms, last_error, run_started_at_ms, run_resumed, added, updated, deleted, seq";

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRecord> {
    let changes = match (r.get::<_, Option<i64>>(12)?, r.get::<_, Option<i64>>(13)?, r.get::<_, Option<i64>>(14)?) {
        (Some(added), Some(updated), Some(deleted)) => {
            Some(RecordChanges { added: added as u64, updated: updated as u64, deleted: deleted as u64 })
        }
        _ => None,
    };
    Ok(EventRecord {
        id: r.get(0)?,
        kind: r.get(1)?,
        connection_id: r.get(2)?,
        facts: r.get(3)?,
        created_at_ms: r.get::<_, i64>(4)? as u64,
        status: r.get(5)?,
        attempts: r.get::<_, i64>(6)? as u32,
        next_attempt_at_ms: r.get::<_, i64>(7)? as u64,
        delivered_at_ms: r.get::<_, Option<i64>>(8)?.map(|t| t as u64),
        last_error: r.get(9)?,
        run_started_at_ms: r.get::<_, Option<i64>>(10)?.map(|t| t as u64),
        run_resumed: r.get(11)?,
        changes,
    })
}

/// Writes an event in the caller's transaction.
fn insert_event(
    tx: &rusqlite::Transaction<'_>,
    event: &NewEvent,
    now_ms: i64,
    run: Option<(i64, bool)>,
    changes: Option<RecordChanges>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO events (id, kind, connection_id, facts, created_at_ms, next_attempt_at_ms,
                             run_started_at_ms, run_resumed, added, updated, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            event.id,
            event.kind,
            event.connection_id,
            event.facts,
            now_ms,
            run.map(|r| r.0),
            run.is_some_and(|r| r.1),
            changes.map(|c| c.added as i64),
            changes.map(|c| c.updated as i64),
            changes.map(|c| c.deleted as i64),
        ],
    )?;
    Ok(())
}

/// What records of `model` changed at or after `since_ms`, by what their
/// last change was: the same records `modified_after_ms` lists.
fn changes_since(
    db: &rusqlite::Connection,
    connection_id: &str,
    model: &str,
    since_ms: u64,
) -> rusqlite::Result<RecordChanges> {
    db.prepare_cached(
        "SELECT COALESCE(SUM(last_action = 'ADDED'), 0), COALESCE(SUM(last_action = 'UPDATED'), 0),
                COALESCE(SUM(last_action = 'DELETED'), 0)
         FROM records WHERE connection_id = ?1 AND model = ?2 AND changed_at_ms >= ?3",
    )?
    .query_row(params![connection_id, model, since_ms as i64], |r| {
        Ok(RecordChanges {
            added: r.get::<_, i64>(0)? as u64,
            updated: r.get::<_, i64>(1)? as u64,
            deleted: r.get::<_, i64>(2)? as u64,
        })
    })
}

/// Takes `n` numbers of the change counter; the first of them.
fn next_changes(tx: &rusqlite::Transaction<'_>, n: usize) -> rusqlite::Result<i64> {
    let last: i64 = tx.query_row(
        "UPDATE counters SET value = value + ?1 WHERE name = 'record_changes' RETURNING value",
        [n as i64],
        |r| r.get(0),
    )?;
    Ok(last - n as i64 + 1)
}

pub const DATABASE_FILE: &str = "terapi.db";

pub struct SqliteStore {
    path: PathBuf,
    db: Mutex<rusqlite::Connection>,
    key: MasterKey,
}

impl SqliteStore {
    /// Opens `DATA_DIR/terapi.db` with the master key from the environment
    /// or `DATA_DIR/master.key` (see [`MasterKey::from_env_or_file`]).
    pub fn open_in(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        let key = MasterKey::from_env_or_file(data_dir)?;
        Self::open(data_dir, key)
    }

    /// Opens (creating if needed) `DATA_DIR/terapi.db`, migrates it, and
    /// checks `key` against the store before anything is written. Safe to
    /// call from several processes at once on a fresh directory.
    pub fn open(data_dir: &Path, key: MasterKey) -> Result<SqliteStore, StoreError> {
        // Some steps of a first open (switching to WAL) answer "locked" at
        // once, without the busy timeout, while another process migrates.
        // Nothing is committed by a failed attempt, so trying again is safe.
        let mut attempt = 0;
        loop {
            match Self::open_once(data_dir, key.clone()) {
                Err(StoreError::Database { message, .. }) if message.contains("locked") && attempt < 50 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20 * attempt.min(10)));
                }
                other => return other,
            }
        }
    }

    fn open_once(data_dir: &Path, key: MasterKey) -> Result<SqliteStore, StoreError> {
        let path = data_dir.join(DATABASE_FILE);
        let db_error = |e: &dyn std::fmt::Display| StoreError::Database { path: path.clone(), message: e.to_string() };
        create_private_dir(data_dir).map_err(|e| db_error(&e))?;
        let mut db = rusqlite::Connection::open(&path).map_err(|e| db_error(&e))?;
        // Before anything that takes a lock: a second process opening at the
        // same moment waits instead of failing with "database is locked".
        db.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| db_error(&e))?;
        // SQLite gives the WAL and shared-memory files the database file's
        // mode, so tightening it first covers them.
        tighten(&path, 0o600).map_err(|e| db_error(&e))?;
        // WAL: a crashed writer never corrupts what was committed, and
        // readers do not block a running sync.
        db.pragma_update(None, "journal_mode", "WAL").map_err(|e| db_error(&e))?;
        db.pragma_update(None, "synchronous", "NORMAL").map_err(|e| db_error(&e))?;
        db.pragma_update(None, "foreign_keys", "ON").map_err(|e| db_error(&e))?;
        for side in ["-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{side}", path.display()));
            tighten(&file, 0o600).map_err(|e| db_error(&e))?;
        }

        // Migrations and the key check in one write transaction: a process
        // that arrives second waits, then sees the first one's work.
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_error(&e))?;
        let found = schema::version(&tx).map_err(|e| db_error(&e))?;
        if found > schema::LATEST {
            return Err(StoreError::NewerSchema { path, found, known: schema::LATEST });
        }
        schema::migrate(&tx, found).map_err(|e| db_error(&e))?;
        let check: Option<Vec<u8>> = tx
            .query_row("SELECT value FROM meta WHERE key = 'key_check'", [], |r| r.get(0))
            .optional()
            .map_err(|e| db_error(&e))?;
        match check {
            Some(sealed) => key.matches(&sealed)?,
            None => {
                tx.execute("INSERT INTO meta (key, value) VALUES ('key_check', ?1)", params![key.key_check()])
                    .map_err(|e| db_error(&e))?;
            }
        }
        tx.commit().map_err(|e| db_error(&e))?;
        Ok(SqliteStore { path, db: Mutex::new(db), key })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_connection(&self, id: &str) -> Result<Connection, StoreError> {
        let row = self
            .db()
            .query_row("SELECT provider, sealed_credentials, config FROM connections WHERE id = ?1", [id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let (provider, sealed, config) = row.ok_or_else(|| StoreError::NoConnection(id.to_string()))?;
        let credentials = self.key.open_credentials(id, &sealed)?;
        let config = serde_json::from_str(&config)
            .map_err(|e| StoreError::Corrupt { id: id.to_string(), message: e.to_string() })?;
        Ok(Connection { id: id.to_string(), provider, credentials, config })
    }

    /// Runs SQLite work off the async executor. Every call can block: on
    /// this process's one connection, on another process's write lock (up
    /// to the busy timeout) or on the disk. On a multi-threaded runtime the
    /// worker thread becomes a blocking thread for the call and its other
    /// tasks (HTTP, the scheduler, webhooks) move to a fresh worker; a
    /// single-threaded runtime (tests, the CLI's one-shot commands) has no
    /// other worker to hand them to and runs the work inline.
    fn blocking<T>(&self, work: impl FnOnce() -> T) -> T {
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
            _ => work(),
        }
    }

    fn db(&self) -> MutexGuard<'_, rusqlite::Connection> {
        self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        // Another process held the write lock past the busy timeout: the
        // same statement works once it lets go.
        let busy = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        let (path, message) = (self.path.clone(), e.to_string());
        if busy { StoreError::Unavailable { path, message } } else { StoreError::Database { path, message } }
    }

    fn summaries(&self, id: Option<&str>) -> Result<Vec<ConnectionSummary>, StoreError> {
        let db = self.db();
        let mut statement = db
            .prepare_cached(
                "SELECT id, provider, auth_mode, username, config, created_at, updated_at, verified_at,
                        end_user, tags, metadata
                 FROM connections WHERE ?1 IS NULL OR id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = statement
            .query_map([id], |r| {
                Ok(ConnectionSummary {
                    id: r.get(0)?,
                    provider: r.get(1)?,
                    auth_mode: r.get(2)?,
                    username: r.get(3)?,
                    config: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                    created_at: r.get::<_, i64>(5)? as u64,
                    updated_at: r.get::<_, i64>(6)? as u64,
                    verified_at: r.get::<_, Option<i64>>(7)?.map(|t| t as u64),
                    end_user: r.get::<_, Option<String>>(8)?.and_then(|t| serde_json::from_str(&t).ok()),
                    tags: r
                        .get::<_, Option<String>>(9)?
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or_default(),
                    metadata: r.get::<_, Option<String>>(10)?.and_then(|t| serde_json::from_str(&t).ok()),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    fn upsert_in(
        &self,
        tx: &rusqlite::Transaction<'_>,
        connection_id: &str,
        model: &str,
        records: &[SyncRecord],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let now = unix_now() as i64;
        let now_ms = terapi_domain::clock::unix_ms() as i64;
        // Each record may change: it takes a number of the change order
        // (one that goes unused if it did not change).
        let first = next_changes(tx, records.len()).map_err(|e| self.err(e))?;
        let mut upsert = tx.prepare_cached(UPSERT_RECORD.as_str()).map_err(|e| self.err(e))?;
        for (i, record) in records.iter().enumerate() {
            let change = first + i as i64;
            upsert
                .execute(params![
                    connection_id,
                    model,
                    record.id,
                    record.json,
                    record.modified_at,
                    now,
                    now_ms,
                    change,
                    crate::modified_at_ms(record)
                ])
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// The reservation of one request slot (see `terapi_domain::limits`), as
    /// one statement: the GCRA step and the daily count together.
    fn reserve_slot(&self, tenant: &str, limit: &RateLimitSpec, now_ms: u64) -> Result<Reservation, StoreError> {
        let interval = interval_ms(limit) as i64;
        let day = (now_ms / terapi_domain::budget::DAY_MS) as i64;
        let tat: Option<(i64, i64)> = self
            .db()
            .prepare_cached(
                "INSERT INTO rate_budget (tenant, tat_ms, day, used) VALUES (?1, ?2 + ?3, ?4, 1)
                 ON CONFLICT (tenant) DO UPDATE SET
                     tat_ms = MAX(rate_budget.tat_ms, ?2) + ?3,
                     used = CASE WHEN rate_budget.day = ?4 THEN rate_budget.used + 1 ELSE 1 END,
                     day = ?4
                 WHERE ?5 IS NULL OR rate_budget.day <> ?4 OR rate_budget.used < ?5
                 RETURNING tat_ms, used",
            )
            .and_then(|mut s| {
                s.query_row(params![tenant, now_ms as i64, interval, day, limit.per_day], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()
            })
            .map_err(|e| self.err(e))?;
        Ok(match tat {
            Some((tat, used)) => {
                let start = (tat - interval).max(now_ms as i64) as u64;
                Reservation::Granted {
                    wait: std::time::Duration::from_millis(start - now_ms),
                    used_today: used.clamp(0, i64::from(u32::MAX)) as u32,
                }
            }
            None => Reservation::DailySpent { limit: limit.per_day.unwrap_or(0) },
        })
    }
}

impl BudgetStore for SqliteStore {
    fn reserve<'a>(
        &'a self,
        tenant: &'a str,
        limit: &'a RateLimitSpec,
        now_ms: u64,
    ) -> Pin<Box<dyn Future<Output = Result<Reservation, String>> + Send + 'a>> {
        Box::pin(std::future::ready(
            self.blocking(|| self.reserve_slot(tenant, limit, now_ms)).map_err(|e| e.to_string()),
        ))
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn derived_secret(&self, purpose: &str) -> [u8; 32] {
        self.key.derive(purpose)
    }

    async fn create_connection(&self, connection: &Connection, event: Option<&NewEvent>) -> Result<(), StoreError> {
        self.blocking(|| {
            let now = unix_now();
            let sealed = self.key.seal_credentials(&connection.id, &connection.credentials);
            let config = serde_json::to_string(&connection.config).unwrap_or_else(|_| "{}".into());
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let inserted = tx
                .execute(
                    "INSERT INTO connections (id, provider, auth_mode, username, sealed_credentials, config, created_at, updated_at, verified_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7) ON CONFLICT (id) DO NOTHING",
                    params![
                        connection.id,
                        connection.provider,
                        auth_mode_name(&connection.credentials),
                        username(&connection.credentials),
                        sealed,
                        config,
                        now as i64
                    ],
                )
                .map_err(|e| self.err(e))?;
            if inserted == 0 {
                return Err(StoreError::ConnectionExists(connection.id.clone()));
            }
            if let Some(event) = event {
                insert_event(&tx, event, terapi_domain::clock::unix_ms() as i64, None, None).map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn rotate_credentials(
        &self,
        id: &str,
        credentials: &Credentials,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        self.blocking(|| {
            let sealed = self.key.seal_credentials(id, credentials);
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let changed = tx
                .execute(
                    "UPDATE connections SET sealed_credentials = ?2, auth_mode = ?3, username = ?4, updated_at = ?5, verified_at = ?5 WHERE id = ?1",
                    params![id, sealed, auth_mode_name(credentials), username(credentials), unix_now() as i64],
                )
                .map_err(|e| self.err(e))?;
            if changed == 0 {
                return Err(StoreError::NoConnection(id.to_string()));
            }
            if let Some(event) = event {
                insert_event(&tx, event, terapi_domain::clock::unix_ms() as i64, None, None).map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn save_tokens(
        &self,
        id: &str,
        credentials: &Credentials,
        config: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.blocking(|| {
            let mut connection = self.read_connection(id)?;
            connection.config.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
            let merged = serde_json::to_string(&connection.config).unwrap_or_else(|_| "{}".into());
            let sealed = self.key.seal_credentials(id, credentials);
            let changed = self
                .db()
                .execute(
                    "UPDATE connections SET sealed_credentials = ?2, auth_mode = ?3, username = ?4, config = ?5,
                     updated_at = ?6, verified_at = ?6 WHERE id = ?1",
                    params![id, sealed, auth_mode_name(credentials), username(credentials), merged, unix_now() as i64],
                )
                .map_err(|e| self.err(e))?;
            if changed == 0 {
                return Err(StoreError::NoConnection(id.to_string()));
            }
            Ok(())
        })
    }

    async fn delete_connection(&self, id: &str) -> Result<(), StoreError> {
        self.blocking(|| {
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            tx.execute("DELETE FROM records WHERE connection_id = ?1", [id]).map_err(|e| self.err(e))?;
            tx.execute("DELETE FROM sync_state WHERE connection_id = ?1", [id]).map_err(|e| self.err(e))?;
            tx.execute("DELETE FROM sync_runs WHERE connection_id = ?1", [id]).map_err(|e| self.err(e))?;
            let deleted = tx.execute("DELETE FROM connections WHERE id = ?1", [id]).map_err(|e| self.err(e))?;
            if deleted == 0 {
                return Err(StoreError::NoConnection(id.to_string()));
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn connection(&self, id: &str) -> Result<Connection, StoreError> {
        self.blocking(|| self.read_connection(id))
    }

    async fn connections(&self) -> Result<Vec<ConnectionSummary>, StoreError> {
        self.blocking(|| self.summaries(None))
    }

    async fn connection_summary(&self, id: &str) -> Result<ConnectionSummary, StoreError> {
        self.blocking(|| self.summaries(Some(id))?.pop().ok_or_else(|| StoreError::NoConnection(id.to_string())))
    }

    async fn mark_verified(&self, id: &str) -> Result<(), StoreError> {
        self.blocking(|| {
            self.db()
                .execute("UPDATE connections SET verified_at = ?2 WHERE id = ?1", params![id, unix_now() as i64])
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn set_end_user(&self, id: &str, end_user: Option<&str>, tags: &str) -> Result<(), StoreError> {
        self.blocking(|| {
            let changed = self
                .db()
                .execute(
                    "UPDATE connections SET end_user = ?2, tags = ?3, updated_at = ?4 WHERE id = ?1",
                    params![id, end_user, tags, unix_now() as i64],
                )
                .map_err(|e| self.err(e))?;
            if changed == 0 {
                return Err(StoreError::NoConnection(id.to_string()));
            }
            Ok(())
        })
    }

    async fn set_metadata(&self, id: &str, metadata: Option<&str>) -> Result<(), StoreError> {
        self.blocking(|| {
            let changed = self
                .db()
                .execute(
                    "UPDATE connections SET metadata = ?2, updated_at = ?3 WHERE id = ?1",
                    params![id, metadata, unix_now() as i64],
                )
                .map_err(|e| self.err(e))?;
            if changed == 0 {
                return Err(StoreError::NoConnection(id.to_string()));
            }
            Ok(())
        })
    }

    async fn begin_sync(&self, lease: &SyncLease, model: &str, full: bool) -> Result<Option<String>, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let mut db = self.db();
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
            let holder: Option<(String, i64)> = tx
                .query_row(
                    "SELECT lease_owner, lease_expires_at FROM sync_state
                     WHERE connection_id = ?1 AND sync = ?2 AND lease_owner IS NOT NULL AND lease_expires_at > ?3",
                    params![lease.connection_id, lease.sync, now_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(|e| self.err(e))?;
            if lease.claimed {
                let owner: Option<String> = tx
                    .query_row(
                        "SELECT lease_owner FROM sync_state WHERE connection_id = ?1 AND sync = ?2",
                        params![lease.connection_id, lease.sync],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| self.err(e))?
                    .flatten();
                if owner.as_deref() != Some(lease.owner.as_str()) {
                    return Err(StoreError::LeaseLost {
                        connection: lease.connection_id.clone(),
                        sync: lease.sync.clone(),
                    });
                }
            }
            if let Some((owner, until)) = holder
                && owner != lease.owner
            {
                return Err(StoreError::SyncRunning {
                    connection: lease.connection_id.clone(),
                    sync: lease.sync.clone(),
                    owner,
                    until: crate::time::rfc3339((until / 1000) as u64),
                });
            }
            let expires = now_ms + lease.ttl.as_millis() as i64;
            let checkpoint = tx
                .query_row(
                    "INSERT INTO sync_state (connection_id, sync, model, status, last_started_at, lease_owner, lease_expires_at,
                                             run_started_at_ms)
                     VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?8)
                     ON CONFLICT (connection_id, sync) DO UPDATE SET status = 'running', model = ?3, last_started_at = ?4,
                         last_error = NULL, lease_owner = ?5, lease_expires_at = ?6,
                         checkpoint = CASE WHEN ?7 THEN NULL ELSE sync_state.checkpoint END,
                         run_started_at_ms = CASE WHEN NOT ?7 AND sync_state.run_started_at_ms IS NOT NULL
                                                       AND sync_state.status IN ('yielded', 'running', 'interrupted')
                                                  THEN sync_state.run_started_at_ms ELSE ?8 END,
                         run_resumed = CASE WHEN NOT ?7 AND sync_state.run_started_at_ms IS NOT NULL
                                                 AND sync_state.status IN ('yielded', 'running', 'interrupted')
                                            THEN sync_state.run_resumed
                                            ELSE NOT ?7 AND sync_state.checkpoint IS NOT NULL END
                     RETURNING checkpoint",
                    params![lease.connection_id, lease.sync, model, now_ms / 1000, lease.owner, expires, full, now_ms],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?;
            tx.execute(
                "INSERT INTO sync_runs (connection_id, sync, owner, started_at_ms, last_beat_ms, status)
                 VALUES (?1, ?2, ?3, ?4, ?4, 'running')",
                params![lease.connection_id, lease.sync, lease.owner, now_ms],
            )
            .map_err(|e| self.err(e))?;
            // A pass from the beginning starts now; a resumed one keeps its start.
            tx.execute(
                "UPDATE sync_state SET pass_started_at_ms = ?3
                 WHERE connection_id = ?1 AND sync = ?2 AND (checkpoint IS NULL OR pass_started_at_ms IS NULL)",
                params![lease.connection_id, lease.sync, now_ms],
            )
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
            Ok(checkpoint)
        })
    }

    async fn commit_page(&self, lease: &SyncLease, model: &str, page: &SyncPage) -> Result<(), StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let held = tx
                .execute(
                    "UPDATE sync_state SET checkpoint = ?4, pages = pages + 1, lease_expires_at = ?5
                     WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3",
                    params![
                        lease.connection_id,
                        lease.sync,
                        lease.owner,
                        page.next_checkpoint,
                        now_ms + lease.ttl.as_millis() as i64
                    ],
                )
                .map_err(|e| self.err(e))?;
            if held == 0 {
                return Err(StoreError::LeaseLost {
                    connection: lease.connection_id.clone(),
                    sync: lease.sync.clone(),
                });
            }
            self.upsert_in(&tx, &lease.connection_id, model, &page.records)?;
            tx.execute(
                "UPDATE sync_runs SET pages = pages + 1, records = records + ?4, last_beat_ms = ?5
                 WHERE connection_id = ?1 AND sync = ?2 AND owner = ?3 AND finished_at_ms IS NULL",
                params![lease.connection_id, lease.sync, lease.owner, page.records.len() as i64, now_ms],
            )
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn finish_sync(
        &self,
        lease: &SyncLease,
        outcome: RunOutcome<'_>,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        self.blocking(|| {
            let (status, error) = (outcome.status(), outcome.message());
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let run: Option<(String, Option<i64>, bool)> = tx
                .query_row(
                    "SELECT model, run_started_at_ms, run_resumed FROM sync_state
                     WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3",
                    params![lease.connection_id, lease.sync, lease.owner],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(|e| self.err(e))?;
            if let (Some(event), Some((model, started, resumed))) = (event, &run) {
                let started = started.unwrap_or(now_ms);
                let changes = match outcome {
                    RunOutcome::Done | RunOutcome::Warned(_) => {
                        Some(changes_since(&tx, &lease.connection_id, model, started as u64).map_err(|e| self.err(e))?)
                    }
                    _ => None,
                };
                insert_event(&tx, event, now_ms, Some((started, *resumed)), changes).map_err(|e| self.err(e))?;
            }
            tx.execute(
                "UPDATE sync_state SET status = ?4, last_error = ?5, last_finished_at = ?6 / 1000,
                     lease_owner = NULL, lease_expires_at = NULL,
                     due_at = CASE WHEN paused AND ?4 <> 'yielded' THEN NULL
                                   WHEN ?4 = 'done' THEN ?6 + frequency_secs * 1000
                                   WHEN ?4 = 'yielded' THEN ?6
                                   WHEN due_at IS NULL AND frequency_secs IS NULL THEN NULL
                                   WHEN ?4 = 'interrupted' THEN ?6
                                   ELSE ?6 + MIN(?7, COALESCE(frequency_secs * 1000, ?7)) END
                 WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3",
                params![
                    lease.connection_id,
                    lease.sync,
                    lease.owner,
                    status,
                    error,
                    now_ms,
                    crate::RETRY_FAILED_AFTER_MS as i64
                ],
            )
            .map_err(|e| self.err(e))?;
            tx.execute(
                // A run that lost its lease (paused past it, and taken over)
                // ended, as far as anyone could tell, at its last sign of life.
                "UPDATE sync_runs SET status = CASE WHEN ?6 THEN ?4 ELSE 'lost' END,
                     finished_at_ms = CASE WHEN ?6 THEN ?5 ELSE last_beat_ms END,
                     last_beat_ms = CASE WHEN ?6 THEN ?5 ELSE last_beat_ms END
                 WHERE connection_id = ?1 AND sync = ?2 AND owner = ?3 AND finished_at_ms IS NULL",
                params![lease.connection_id, lease.sync, lease.owner, status, now_ms, run.is_some()],
            )
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn expire_lease(&self, connection_id: &str, sync: &str, dead_owner: &str) -> Result<bool, StoreError> {
        self.blocking(|| {
            let changed = self
                .db()
                .execute(
                    "UPDATE sync_state SET lease_expires_at = 0 WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3",
                    params![connection_id, sync, dead_owner],
                )
                .map_err(|e| self.err(e))?;
            Ok(changed == 1)
        })
    }

    async fn mark_unseen_deleted(&self, lease: &SyncLease, model: &str) -> Result<u64, StoreError> {
        self.blocking(|| {
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let gone: Vec<i64> = tx
                .prepare_cached(
                    "SELECT rowid FROM records
                     WHERE connection_id = ?1 AND model = ?4 AND deleted_at IS NULL
                       AND COALESCE(seen_at_ms, 0) < (SELECT pass_started_at_ms FROM sync_state
                                                      WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3)",
                )
                .and_then(|mut s| {
                    s.query_map(params![lease.connection_id, lease.sync, lease.owner, model], |r| r.get(0))?.collect()
                })
                .map_err(|e| self.err(e))?;
            if gone.is_empty() {
                return Ok(0);
            }
            let first = next_changes(&tx, gone.len()).map_err(|e| self.err(e))?;
            let (now, now_ms) = (unix_now() as i64, terapi_domain::clock::unix_ms() as i64);
            {
                let mut mark = tx
                    .prepare_cached(
                        "UPDATE records SET deleted_at = ?2, updated_at = ?2, change_seq = ?3, changed_at_ms = ?4,
                             last_action = 'DELETED'
                         WHERE rowid = ?1",
                    )
                    .map_err(|e| self.err(e))?;
                for (i, rowid) in gone.iter().enumerate() {
                    mark.execute(params![rowid, now, first + i as i64, now_ms]).map_err(|e| self.err(e))?;
                }
            }
            tx.commit().map_err(|e| self.err(e))?;
            Ok(gone.len() as u64)
        })
    }

    async fn unseen_records(&self, lease: &SyncLease, model: &str) -> Result<UnseenRecords, StoreError> {
        self.blocking(|| {
            let (unseen, live): (Option<i64>, i64) = self
                .db()
                .query_row(
                    "SELECT SUM(CASE WHEN COALESCE(seen_at_ms, 0) < (SELECT pass_started_at_ms FROM sync_state
                                          WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3) THEN 1 ELSE 0 END),
                            COUNT(*)
                     FROM records WHERE connection_id = ?1 AND model = ?4 AND deleted_at IS NULL",
                    params![lease.connection_id, lease.sync, lease.owner, model],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| self.err(e))?;
            Ok(UnseenRecords { unseen: unseen.unwrap_or(0) as u64, live: live as u64 })
        })
    }

    async fn claim_once(&self, scope: &str, id: &str, keep_until_ms: u64) -> Result<bool, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            tx.execute(crate::SQL_PRUNE_SEEN_ONCE.replace('$', "?").as_str(), params![scope, now_ms])
                .map_err(|e| self.err(e))?;
            let new = tx
                .execute(crate::SQL_CLAIM_ONCE.replace('$', "?").as_str(), params![scope, id, keep_until_ms as i64])
                .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
            Ok(new == 1)
        })
    }

    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let taken = self
                .db()
                .execute(
                    crate::SQL_TRY_LOCK.replace('$', "?").as_str(),
                    params![name, owner, now_ms + ttl.as_millis() as i64, now_ms],
                )
                .map_err(|e| self.err(e))?;
            Ok(taken == 1)
        })
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.blocking(|| {
            self.db()
                .execute(crate::SQL_UNLOCK.replace('$', "?").as_str(), params![name, owner])
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn live_locks(&self, prefix: &str) -> Result<u64, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let pattern = crate::like_prefix(prefix);
            self.db()
                .query_row(&crate::SQL_COUNT_LIVE_LOCKS.replace('$', "?"), params![pattern, now_ms], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(|e| self.err(e))
        })
    }

    async fn live_leases(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            self.db()
                .prepare_cached(&crate::SQL_LIVE_LEASES.replace('$', "?"))
                .and_then(|mut s| s.query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
                .map_err(|e| self.err(e))
        })
    }

    async fn renew_lease(&self, lease: &SyncLease) -> Result<(), StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let held = tx
                .execute(
                    "UPDATE sync_state SET lease_expires_at = ?4 WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3",
                    params![lease.connection_id, lease.sync, lease.owner, now_ms + lease.ttl.as_millis() as i64],
                )
                .map_err(|e| self.err(e))?;
            if held == 0 {
                return Err(StoreError::LeaseLost { connection: lease.connection_id.clone(), sync: lease.sync.clone() });
            }
            tx.execute(
                "UPDATE sync_runs SET last_beat_ms = ?4
                 WHERE connection_id = ?1 AND sync = ?2 AND owner = ?3 AND finished_at_ms IS NULL",
                params![lease.connection_id, lease.sync, lease.owner, now_ms],
            )
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn sync_runs(&self, connection_id: &str) -> Result<Vec<SyncRunRecord>, StoreError> {
        self.blocking(|| {
            let db = self.db();
            let mut statement = db
                .prepare_cached(
                    "SELECT connection_id, sync, owner, started_at_ms, last_beat_ms, finished_at_ms, status, pages, records
                     FROM sync_runs WHERE connection_id = ?1 ORDER BY id",
                )
                .map_err(|e| self.err(e))?;
            let rows = statement
                .query_map([connection_id], |r| {
                    Ok(SyncRunRecord {
                        connection_id: r.get(0)?,
                        sync: r.get(1)?,
                        owner: r.get(2)?,
                        started_at_ms: r.get::<_, i64>(3)? as u64,
                        last_beat_ms: r.get::<_, i64>(4)? as u64,
                        finished_at_ms: r.get::<_, Option<i64>>(5)?.map(|t| t as u64),
                        status: r.get(6)?,
                        pages: r.get::<_, i64>(7)? as u64,
                        records: r.get::<_, i64>(8)? as u64,
                    })
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        })
    }

    async fn schedule_sync(
        &self,
        connection_id: &str,
        sync: &str,
        model: &str,
        due_at_ms: u64,
        reset: bool,
    ) -> Result<(), StoreError> {
        self.blocking(|| {
            self.db()
                .execute(
                    "INSERT INTO sync_state (connection_id, sync, model, status, due_at) VALUES (?1, ?2, ?3, 'queued', ?4)
                     ON CONFLICT (connection_id, sync) DO UPDATE SET model = ?3, due_at = ?4,
                         checkpoint = CASE WHEN ?5 THEN NULL ELSE sync_state.checkpoint END",
                    params![connection_id, sync, model, due_at_ms as i64, reset],
                )
                .map_err(|e| self.err(e))?;
            Ok(())
        })
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
        self.blocking(|| {
            self.db()
                .execute(
                    "INSERT INTO sync_state (connection_id, sync, model, status, due_at, frequency_secs, paused)
                     VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6)
                     ON CONFLICT (connection_id, sync) DO UPDATE SET model = ?3, due_at = ?4, frequency_secs = ?5, paused = ?6",
                    params![connection_id, sync, model, due_at_ms.map(|t| t as i64), frequency_secs as i64, paused],
                )
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn record_changes(&self, connection_id: &str, model: &str, since: u64) -> Result<RecordChanges, StoreError> {
        self.blocking(|| changes_since(&self.db(), connection_id, model, since).map_err(|e| self.err(e)))
    }

    async fn due_now(&self) -> Result<u64, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            self.db()
                .query_row("SELECT COUNT(*) FROM sync_state WHERE due_at <= ?1", [now_ms], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(|e| self.err(e))
        })
    }

    async fn claim_due_sync(
        &self,
        owner: &str,
        ttl: Duration,
        skip_tenants: &[String],
    ) -> Result<Option<(String, String)>, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let skip = serde_json::to_string(skip_tenants).unwrap_or_else(|_| "[]".into());
            // SQLite has one writer at a time: the statement is the claim.
            self.db()
                .prepare_cached(
                    "UPDATE sync_state SET lease_owner = ?1, lease_expires_at = ?2
                     WHERE rowid = (SELECT rowid FROM sync_state
                                    WHERE due_at <= ?3 AND (lease_owner IS NULL OR lease_expires_at <= ?3)
                                      AND (tenant IS NULL OR tenant NOT IN (SELECT value FROM json_each(?4)))
                                    ORDER BY due_at LIMIT 1)
                     RETURNING connection_id, sync",
                )
                .and_then(|mut s| {
                    s.query_row(params![owner, now_ms + ttl.as_millis() as i64, now_ms, skip], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                })
                .map_err(|e| self.err(e))
        })
    }

    async fn set_sync_tenant(&self, connection_id: &str, tenant: &str) -> Result<(), StoreError> {
        self.blocking(|| {
            self.db()
                .execute(
                    "UPDATE sync_state SET tenant = ?2 WHERE connection_id = ?1 AND tenant IS NOT ?2",
                    params![connection_id, tenant],
                )
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn tenant_load(&self, backlog_ms: u64) -> Result<TenantLoad, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let db = self.db();
            let running = db
                .prepare_cached(
                    "SELECT tenant, COUNT(*) FROM sync_state
                     WHERE lease_owner IS NOT NULL AND lease_expires_at > ?1 AND tenant IS NOT NULL GROUP BY tenant",
                )
                .and_then(|mut s| {
                    s.query_map([now_ms], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u32)))?.collect()
                })
                .map_err(|e| self.err(e))?;
            let busy = db
                .prepare_cached("SELECT tenant FROM rate_budget WHERE tat_ms > ?1")
                .and_then(|mut s| s.query_map([now_ms + backlog_ms as i64], |r| r.get(0))?.collect())
                .map_err(|e| self.err(e))?;
            let waiting = db
                .prepare_cached(&crate::SQL_WAITING_BY_TENANT.replace('$', "?"))
                .and_then(|mut s| {
                    s.query_map([now_ms], |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)? as u32)))?
                        .collect()
                })
                .map_err(|e| self.err(e))?;
            Ok(TenantLoad { running, busy, waiting })
        })
    }

    async fn waiting_syncs(&self) -> Result<u64, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            self.db()
                .query_row(
                    "SELECT COUNT(*) FROM sync_state WHERE due_at <= ?1 AND (lease_owner IS NULL OR lease_expires_at <= ?1)",
                    [now_ms],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n as u64)
                .map_err(|e| self.err(e))
        })
    }

    async fn sync_queue(&self) -> Result<SyncQueue, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            self.db()
                .query_row(
                    "SELECT
                         COUNT(*) FILTER (WHERE due_at <= ?1 AND (lease_owner IS NULL OR lease_expires_at <= ?1)),
                         COUNT(*) FILTER (WHERE lease_owner IS NOT NULL AND lease_expires_at > ?1),
                         MIN(due_at) FILTER (WHERE due_at <= ?1 AND (lease_owner IS NULL OR lease_expires_at <= ?1))
                     FROM sync_state",
                    [now_ms],
                    |r| {
                        Ok(SyncQueue {
                            waiting: r.get::<_, i64>(0)? as u64,
                            running: r.get::<_, i64>(1)? as u64,
                            lag_ms: r.get::<_, Option<i64>>(2)?.map_or(0, |due| (now_ms - due).max(0) as u64),
                        })
                    },
                )
                .map_err(|e| self.err(e))
        })
    }

    async fn record_event(&self, event: &NewEvent) -> Result<(), StoreError> {
        self.blocking(|| {
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            insert_event(&tx, event, terapi_domain::clock::unix_ms() as i64, None, None).map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn claim_events(&self, owner: &str, ttl: Duration, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let db = self.db();
            let mut events: Vec<(i64, EventRecord)> = db
                .prepare_cached(&format!(
                    "UPDATE events SET claimed_by = ?1, claim_expires_at_ms = ?2 + ?3, attempts = attempts + 1
                     WHERE seq IN (SELECT seq FROM events
                                   WHERE status = 'pending' AND next_attempt_at_ms <= ?2
                                     AND (claimed_by IS NULL OR claim_expires_at_ms <= ?2)
                                   ORDER BY seq LIMIT ?4)
                     RETURNING {EVENT_COLUMNS}"
                ))
                .and_then(|mut s| {
                    s.query_map(params![owner, now_ms, ttl.as_millis() as i64, i64::from(limit)], |r| {
                        Ok((r.get(15)?, event_from_row(r)?))
                    })?
                    .collect()
                })
                .map_err(|e| self.err(e))?;
            events.sort_by_key(|(seq, _)| *seq);
            Ok(events.into_iter().map(|(_, e)| e).collect())
        })
    }

    async fn record_delivery(&self, delivery: &DeliveryRecord, next: DeliveryNext) -> Result<(), StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let (status, retry_at) = match next {
                DeliveryNext::Delivered => ("delivered", now_ms),
                DeliveryNext::Skipped => ("skipped", now_ms),
                DeliveryNext::RetryIn(wait) => ("pending", now_ms + wait.as_millis() as i64),
                DeliveryNext::GiveUp => ("failed", now_ms),
            };
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            if next != DeliveryNext::Skipped {
                tx.execute(
                    "INSERT INTO event_deliveries (event_id, attempt, at_ms, owner, url, status_code, error, duration_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        delivery.event_id,
                        delivery.attempt,
                        delivery.at_ms as i64,
                        delivery.owner,
                        delivery.url,
                        delivery.status_code,
                        delivery.error,
                        delivery.duration_ms as i64
                    ],
                )
                .map_err(|e| self.err(e))?;
            }
            tx.execute(
                "UPDATE events SET status = ?3, next_attempt_at_ms = ?4, claimed_by = NULL, claim_expires_at_ms = NULL,
                     delivered_at_ms = CASE WHEN ?3 = 'delivered' THEN ?5 ELSE delivered_at_ms END,
                     last_error = ?6
                 WHERE id = ?1 AND claimed_by = ?2",
                params![delivery.event_id, delivery.owner, status, retry_at, now_ms, delivery.error],
            )
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn release_events(&self, owner: &str) -> Result<(), StoreError> {
        self.blocking(|| {
            self.db()
                .execute(
                    "UPDATE events SET claimed_by = NULL, claim_expires_at_ms = NULL WHERE claimed_by = ?1",
                    [owner],
                )
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        self.blocking(|| {
            self.db()
                .prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT ?1"))
                .and_then(|mut s| s.query_map([i64::from(limit)], event_from_row)?.collect())
                .map_err(|e| self.err(e))
        })
    }

    async fn deliveries(&self, event_id: Option<&str>, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.blocking(|| {
            self.db()
                .prepare_cached(
                    "SELECT event_id, attempt, at_ms, owner, url, status_code, error, duration_ms FROM event_deliveries
                     WHERE ?1 IS NULL OR event_id = ?1 ORDER BY seq DESC LIMIT ?2",
                )
                .and_then(|mut s| {
                    s.query_map(params![event_id, i64::from(limit)], |r| {
                        Ok(DeliveryRecord {
                            event_id: r.get(0)?,
                            attempt: r.get::<_, i64>(1)? as u32,
                            at_ms: r.get::<_, i64>(2)? as u64,
                            owner: r.get(3)?,
                            url: r.get(4)?,
                            status_code: r.get::<_, Option<i64>>(5)?.map(|c| c as u16),
                            error: r.get(6)?,
                            duration_ms: r.get::<_, i64>(7)? as u64,
                        })
                    })?
                    .collect()
                })
                .map_err(|e| self.err(e))
        })
    }

    async fn prune_events(&self, before_ms: u64) -> Result<u64, StoreError> {
        self.blocking(|| {
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            tx.execute(
                "DELETE FROM event_deliveries WHERE event_id IN (SELECT id FROM events WHERE created_at_ms < ?1)",
                [before_ms as i64],
            )
            .map_err(|e| self.err(e))?;
            let pruned = tx
                .execute("DELETE FROM events WHERE created_at_ms < ?1", [before_ms as i64])
                .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
            Ok(pruned as u64)
        })
    }

    async fn sync_states(&self, connection_id: &str) -> Result<Vec<SyncState>, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let db = self.db();
            let mut statement = db
                .prepare_cached(
                    "SELECT s.sync, s.model, s.checkpoint,
                            CASE WHEN s.status = 'running' AND (s.lease_expires_at IS NULL OR s.lease_expires_at <= ?2)
                                 THEN 'interrupted' ELSE s.status END,
                            s.pages, s.last_started_at, s.last_finished_at, s.last_error,
                            (SELECT COUNT(*) FROM records r WHERE r.connection_id = s.connection_id AND r.model = s.model
                                                              AND r.deleted_at IS NULL),
                            s.frequency_secs, s.paused, s.due_at
                     FROM sync_state s WHERE s.connection_id = ?1 ORDER BY s.sync",
                )
                .map_err(|e| self.err(e))?;
            let rows = statement
                .query_map(params![connection_id, now_ms], |r| {
                    Ok(SyncState {
                        connection_id: connection_id.to_string(),
                        sync: r.get(0)?,
                        model: r.get(1)?,
                        checkpoint: r.get(2)?,
                        status: r.get(3)?,
                        pages: r.get::<_, i64>(4)? as u64,
                        last_started_at: r.get::<_, Option<i64>>(5)?.map(|t| t as u64),
                        last_finished_at: r.get::<_, Option<i64>>(6)?.map(|t| t as u64),
                        last_error: r.get(7)?,
                        records: r.get::<_, i64>(8)? as u64,
                        frequency_secs: r.get::<_, Option<i64>>(9)?.map(|t| t as u64),
                        paused: r.get(10)?,
                        due_at_ms: r.get::<_, Option<i64>>(11)?.map(|t| t as u64),
                    })
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        })
    }

    async fn upsert_records(&self, connection_id: &str, model: &str, records: &[SyncRecord]) -> Result<(), StoreError> {
        self.blocking(|| {
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            self.upsert_in(&tx, connection_id, model, records)?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn records(&self, query: &RecordQuery) -> Result<RecordPage, StoreError> {
        self.blocking(|| {
            let after: i64 = match &query.cursor {
                Some(cursor) => cursor.parse().map_err(|_| {
                    StoreError::BadQuery("the cursor is not one this store handed out; start again without it".into())
                })?,
                None => 0,
            };
            let list = |words: Vec<String>| (!words.is_empty()).then(|| serde_json::to_string(&words).unwrap_or_default());
            let actions = list(query.actions.iter().map(|a| a.as_str().to_string()).collect());
            let ids = list(query.ids.clone());
            let limit = query.limit.clamp(1, 10_000);
            let db = self.db();
            let mut statement = db
                .prepare_cached(
                    "SELECT change_seq, id, json, first_seen_at, updated_at, deleted_at, changed_at_ms, last_action, pruned_at
                     FROM records
                     WHERE connection_id = ?1 AND model = ?2 AND change_seq > ?3
                     AND (?4 IS NULL OR changed_at_ms >= ?4)
                     AND (?6 OR deleted_at IS NULL)
                     AND (?7 IS NULL OR last_action IN (SELECT value FROM json_each(?7)))
                     AND (?8 IS NULL OR id IN (SELECT value FROM json_each(?8)))
                     ORDER BY change_seq LIMIT ?5",
                )
                .map_err(|e| self.err(e))?;
            let parameters = params![
                query.connection_id,
                query.model,
                after,
                query.modified_after_ms.map(|t| t as i64),
                limit + 1,
                query.include_deleted,
                actions,
                ids
            ];
            let rows = statement
                .query_map(parameters, |r| {
                    Ok(StoredRecord {
                        id: r.get(1)?,
                        json: r.get(2)?,
                        first_seen_at: r.get::<_, i64>(3)? as u64,
                        updated_at: r.get::<_, i64>(4)? as u64,
                        deleted_at: r.get::<_, Option<i64>>(5)?.map(|t| t as u64),
                        changed_at_ms: r.get::<_, i64>(6)? as u64,
                        last_action: crate::LastAction::parse(&r.get::<_, String>(7)?).unwrap_or(crate::LastAction::Added),
                        pruned_at: r.get::<_, Option<i64>>(8)?.map(|t| t as u64),
                        cursor: r.get::<_, i64>(0)?.to_string(),
                    })
                })
                .map_err(|e| self.err(e))?;
            let mut rows: Vec<StoredRecord> = rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
            let more = rows.len() > limit as usize;
            rows.truncate(limit as usize);
            let next_cursor = more.then(|| rows.last().map(|r| r.cursor.clone())).flatten();
            Ok(RecordPage { records: rows, next_cursor })
        })
    }

    async fn prune_records(
        &self,
        connection_id: &str,
        model: &str,
        until_cursor: &str,
        limit: u32,
    ) -> Result<(u64, bool), StoreError> {
        self.blocking(|| {
            let until: i64 = until_cursor.parse().map_err(|_| {
                StoreError::BadQuery("`until_cursor` is not a cursor this store handed out (a record's cursor)".into())
            })?;
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let pruned = tx
                .execute(
                    "UPDATE records SET json = '{}', pruned_at = ?4
                     WHERE rowid IN (SELECT rowid FROM records
                                     WHERE connection_id = ?1 AND model = ?2 AND change_seq <= ?3 AND pruned_at IS NULL
                                     ORDER BY change_seq LIMIT ?5)",
                    params![connection_id, model, until, unix_now() as i64, i64::from(limit.clamp(1, 10_000))],
                )
                .map_err(|e| self.err(e))?;
            let more: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM records
                                    WHERE connection_id = ?1 AND model = ?2 AND change_seq <= ?3 AND pruned_at IS NULL)",
                    params![connection_id, model, until],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
            Ok((pruned as u64, more))
        })
    }

    async fn tool_decisions(&self, provider: &str) -> Result<BTreeMap<String, bool>, StoreError> {
        self.blocking(|| {
            let db = self.db();
            let mut statement = db
                .prepare_cached("SELECT tool, status FROM tool_policy WHERE provider = ?1")
                .map_err(|e| self.err(e))?;
            let rows = statement
                .query_map(params![provider], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)? == "approved")))
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        })
    }

    async fn set_tool_decision(&self, provider: &str, tool: &str, approved: bool) -> Result<(), StoreError> {
        self.blocking(|| {
            let status = if approved { "approved" } else { "denied" };
            self.db()
                .execute(
                    "INSERT INTO tool_policy (provider, tool, status, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (provider, tool) DO UPDATE SET status = ?3, updated_at = ?4",
                    params![provider, tool, status, unix_now() as i64],
                )
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.blocking(|| {
            self.db()
                .execute(
                    "INSERT INTO audit (at, caller, connection_id, tool, input_sha256, status, duration_ms, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        entry.at as i64,
                        entry.caller,
                        entry.connection_id,
                        entry.tool,
                        entry.input_sha256,
                        entry.status,
                        entry.duration_ms as i64,
                        entry.detail
                    ],
                )
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn governance_docs(&self, kind: &str) -> Result<Vec<GovernanceDoc>, StoreError> {
        self.blocking(|| {
            let db = self.db();
            let mut statement = db
                .prepare_cached("SELECT key, version, body FROM governance WHERE kind = ?1 ORDER BY key")
                .map_err(|e| self.err(e))?;
            let rows = statement
                .query_map(params![kind], |r| Ok(GovernanceDoc { key: r.get(0)?, version: r.get(1)?, body: r.get(2)? }))
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        })
    }

    async fn governance_doc(&self, kind: &str, key: &str) -> Result<Option<GovernanceDoc>, StoreError> {
        self.blocking(|| {
            self.db()
                .query_row(
                    "SELECT key, version, body FROM governance WHERE kind = ?1 AND key = ?2",
                    params![kind, key],
                    |r| Ok(GovernanceDoc { key: r.get(0)?, version: r.get(1)?, body: r.get(2)? }),
                )
                .optional()
                .map_err(|e| self.err(e))
        })
    }

    async fn put_governance_doc(
        &self,
        kind: &str,
        key: &str,
        expected_version: i64,
        body: &str,
    ) -> Result<bool, StoreError> {
        self.blocking(|| {
            let now = unix_now() as i64;
            let written = if expected_version == 0 {
                self.db().execute(
                    "INSERT INTO governance (kind, key, version, body, updated_at) VALUES (?1, ?2, 1, ?3, ?4)
                     ON CONFLICT (kind, key) DO NOTHING",
                    params![kind, key, body, now],
                )
            } else {
                self.db().execute(
                    "UPDATE governance SET version = version + 1, body = ?3, updated_at = ?4
                     WHERE kind = ?1 AND key = ?2 AND version = ?5",
                    params![kind, key, body, now, expected_version],
                )
            };
            Ok(written.map_err(|e| self.err(e))? == 1)
        })
    }

    async fn governance_version(&self) -> Result<i64, StoreError> {
        self.blocking(|| {
            self.db()
                .query_row("SELECT coalesce(sum(version), 0) FROM governance", [], |r| r.get(0))
                .map_err(|e| self.err(e))
        })
    }

    async fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.blocking(|| {
            let db = self.db();
            let mut statement = db
                .prepare(
                    "SELECT at, caller, connection_id, tool, input_sha256, status, duration_ms, detail FROM
                     (SELECT * FROM audit ORDER BY id DESC LIMIT ?1) ORDER BY id",
                )
                .map_err(|e| self.err(e))?;
            let rows = statement
                .query_map([limit], |r| {
                    Ok(AuditEntry {
                        at: r.get::<_, i64>(0)? as u64,
                        caller: r.get(1)?,
                        connection_id: r.get(2)?,
                        tool: r.get(3)?,
                        input_sha256: r.get(4)?,
                        status: r.get(5)?,
                        duration_ms: r.get::<_, i64>(6)? as u64,
                        detail: r.get(7)?,
                    })
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        })
    }

    async fn create_api_key(&self, sha256: &str, label: &str) -> Result<ApiKeyInfo, StoreError> {
        self.blocking(|| {
            let info = ApiKeyInfo { id: crate::api_key_id(sha256), label: label.to_string(), created_at: unix_now() };
            self.db()
                .execute(
                    "INSERT INTO api_keys (sha256, id, label, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![sha256, info.id, info.label, info.created_at as i64],
                )
                .map_err(|e| self.err(e))?;
            Ok(info)
        })
    }

    async fn api_key_exists(&self, sha256: &str) -> Result<bool, StoreError> {
        self.blocking(|| {
            self.db()
                .prepare_cached("SELECT 1 FROM api_keys WHERE sha256 = ?1")
                .and_then(|mut s| s.exists([sha256]))
                .map_err(|e| self.err(e))
        })
    }

    async fn api_key_sha256(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.blocking(|| {
            self.db()
                .query_row("SELECT sha256 FROM api_keys WHERE id = ?1", [id], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))
        })
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.blocking(|| {
            let db = self.db();
            let mut statement = db
                .prepare("SELECT id, label, created_at FROM api_keys ORDER BY created_at, id")
                .map_err(|e| self.err(e))?;
            let rows = statement
                .query_map([], |r| {
                    Ok(ApiKeyInfo { id: r.get(0)?, label: r.get(1)?, created_at: r.get::<_, i64>(2)? as u64 })
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        })
    }

    async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        self.blocking(|| {
            let deleted = self.db().execute("DELETE FROM api_keys WHERE id = ?1", [id]).map_err(|e| self.err(e))?;
            Ok(deleted > 0)
        })
    }

    async fn create_async_action(&self, action: &AsyncAction) -> Result<(), StoreError> {
        self.blocking(|| {
            self.db()
                .execute(
                    "INSERT INTO async_actions (id, connection_id, action, status, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![action.id, action.connection_id, action.action, action.status, action.created_at_ms as i64],
                )
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn finish_async_action(
        &self,
        id: &str,
        result: Result<&str, &str>,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let (status, output, error) = match result {
                Ok(output) => ("done", Some(output), None),
                Err(error) => ("failed", None, Some(error)),
            };
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            tx.execute(
                "UPDATE async_actions SET status = ?2, output = ?3, error = ?4, finished_at_ms = ?5
                 WHERE id = ?1 AND status = 'pending'",
                params![id, status, output, error, now_ms],
            )
            .map_err(|e| self.err(e))?;
            if let Some(event) = event {
                insert_event(&tx, event, now_ms, None, None).map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn async_action(&self, id: &str) -> Result<Option<AsyncAction>, StoreError> {
        self.blocking(|| {
            self.db()
                .query_row(
                    "SELECT id, connection_id, action, status, output, error, created_at_ms, finished_at_ms
                     FROM async_actions WHERE id = ?1",
                    [id],
                    |r| {
                        Ok(AsyncAction {
                            id: r.get(0)?,
                            connection_id: r.get(1)?,
                            action: r.get(2)?,
                            status: r.get(3)?,
                            output: r.get(4)?,
                            error: r.get(5)?,
                            created_at_ms: r.get::<_, i64>(6)? as u64,
                            finished_at_ms: r.get::<_, Option<i64>>(7)?.map(|t| t as u64),
                        })
                    },
                )
                .optional()
                .map_err(|e| self.err(e))
        })
    }

    async fn create_connect_session(&self, session: &ConnectSession) -> Result<(), StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            // Sessions live minutes; the expired ones are swept as new ones come.
            tx.execute("DELETE FROM connect_sessions WHERE expires_at_ms < ?1 - 86400000", [now_ms])
                .map_err(|e| self.err(e))?;
            tx.execute(
                "INSERT INTO connect_sessions
                     (token_sha256, end_user, allowed_integrations, expires_at_ms, connection_id, allowed_origin,
                      reconnect_connection_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    session.token_sha256,
                    session.owner,
                    serde_json::to_string(&session.allowed_integrations).unwrap_or_else(|_| "[]".into()),
                    session.expires_at_ms as i64,
                    session.connection_id,
                    session.allowed_origin,
                    session.reconnect_connection_id,
                ],
            )
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn connect_session(&self, token_sha256: &str) -> Result<Option<ConnectSession>, StoreError> {
        self.blocking(|| {
            self.db()
                .query_row(
                    "SELECT end_user, allowed_integrations, expires_at_ms, connection_id, allowed_origin,
                            reconnect_connection_id
                     FROM connect_sessions WHERE token_sha256 = ?1",
                    [token_sha256],
                    |r| {
                        Ok(ConnectSession {
                            token_sha256: token_sha256.to_string(),
                            owner: r.get(0)?,
                            allowed_integrations: serde_json::from_str(&r.get::<_, String>(1)?).unwrap_or_default(),
                            expires_at_ms: r.get::<_, i64>(2)? as u64,
                            connection_id: r.get(3)?,
                            allowed_origin: r.get(4)?,
                            reconnect_connection_id: r.get(5)?,
                        })
                    },
                )
                .optional()
                .map_err(|e| self.err(e))
        })
    }

    async fn claim_connect_session(
        &self,
        token_sha256: &str,
        connection_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.blocking(|| {
            let changed = self
                .db()
                .execute(
                    "UPDATE connect_sessions SET connection_id = ?2
                     WHERE token_sha256 = ?1 AND connection_id IS NULL AND expires_at_ms >= ?3",
                    params![token_sha256, connection_id, now_ms as i64],
                )
                .map_err(|e| self.err(e))?;
            Ok(changed == 1)
        })
    }

    async fn release_connect_session(&self, token_sha256: &str, connection_id: &str) -> Result<(), StoreError> {
        self.blocking(|| {
            self.db()
                .execute(
                    "UPDATE connect_sessions SET connection_id = NULL WHERE token_sha256 = ?1 AND connection_id = ?2",
                    params![token_sha256, connection_id],
                )
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }
}

/// Creates `dir` (mode 0700), or tightens an existing one of ours to 0700:
/// it holds the key file and every secret.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    tighten(dir, 0o700)
}

/// Clears the group and other bits of `path` if any are set (a missing file
/// is fine: SQLite may not have made it yet). A shared directory (sticky
/// bit, like /tmp) is refused rather than taken over.
fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        match std::fs::metadata(path) {
            Ok(m) if m.permissions().mode() & 0o1000 != 0 => Err(std::io::Error::other(format!(
                "{} is a shared directory; give a data directory of your own (--data-dir)",
                path.display()
            ))),
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// One record's upsert (see `terapi_store::SQL_RECORD_UPSERT_SET`).
static UPSERT_RECORD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO records (connection_id, model, id, json, modified_at, modified_at_ms, first_seen_at, updated_at,
                          seen_at_ms, change_seq, changed_at_ms, last_action)
     VALUES (?1, ?2, ?3, ?4, ?5, ?9, ?6, ?6, ?7, ?8, ?7, 'ADDED')
     ON CONFLICT (connection_id, model, id) DO UPDATE {}",
        crate::SQL_RECORD_UPSERT_SET
    )
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LastAction;
    use crate::crypto;
    use std::time::Duration;
    use terapi_domain::Secret;
    use terapi_domain::budget::{BudgetState, reserve};

    fn key() -> MasterKey {
        MasterKey::from_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap()
    }

    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("terapi-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn the_budget_statement_does_what_the_budget_function_does() {
        let store = SqliteStore::open(&fresh_dir("budget"), key()).unwrap();
        let limit = RateLimitSpec { per_second: Some(3), per_day: Some(7) };
        let mut state: Option<BudgetState> = None;
        // Requests arriving at these times (ms), across a day boundary.
        let day = terapi_domain::budget::DAY_MS;
        for now in [5 * day + 10, 5 * day + 11, 5 * day + 400, 5 * day + 2000, 5 * day + 2001, 5 * day + 2002]
            .into_iter()
            .chain([5 * day + 2003, 5 * day + 2004, 5 * day + 2005, 6 * day, 6 * day + 1])
        {
            let (next, expected) = reserve(state, &limit, now);
            state = Some(next);
            assert_eq!(store.reserve_slot("tenant", &limit, now).unwrap(), expected, "at {now}");
        }
    }

    #[test]
    fn the_sync_queue_counts_waiting_and_running_syncs_and_the_oldest_wait() {
        let store = SqliteStore::open(&fresh_dir("queue"), key()).unwrap();
        block_on(async {
            assert_eq!(store.sync_queue().await.unwrap(), SyncQueue::default());
            store.create_connection(&connection("c"), None).await.unwrap();
            let now = terapi_domain::clock::unix_ms();
            store.schedule_sync("c", "a", "M", now - 5_000, false).await.unwrap();
            store.schedule_sync("c", "b", "M", now - 1_000, false).await.unwrap();
            store.schedule_sync("c", "later", "M", now + 60_000, false).await.unwrap();
            let queue = store.sync_queue().await.unwrap();
            assert_eq!((queue.waiting, queue.running), (2, 0));
            assert!((5_000..6_000).contains(&queue.lag_ms), "{queue:?}");
            // The longest-waiting one is claimed: it runs, and the lag is the next one's.
            let (_, claimed) = store.claim_due_sync("w", Duration::from_secs(60), &[]).await.unwrap().unwrap();
            assert_eq!(claimed, "a");
            let queue = store.sync_queue().await.unwrap();
            assert_eq!((queue.waiting, queue.running), (1, 1));
            assert!((1_000..2_000).contains(&queue.lag_ms), "{queue:?}");
        });
    }

    #[test]
    fn a_store_from_a_newer_terapi_is_refused_untouched() {
        let dir = fresh_dir("newer");
        drop(SqliteStore::open(&dir, key()).unwrap());
        let db = rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap();
        db.pragma_update(None, "user_version", i64::from(schema::LATEST + 1)).unwrap();
        drop(db);
        let error = SqliteStore::open(&dir, key()).err().unwrap().to_string();
        assert!(error.contains("written by a newer terapi") && error.contains("upgrade terapi"), "{error}");
        let db = rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap();
        assert_eq!(schema::version(&db).unwrap(), schema::LATEST + 1);
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_data_dir_and_its_files_are_made_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = fresh_dir("modes");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join(DATABASE_FILE), b"").unwrap();
        std::fs::set_permissions(dir.join(DATABASE_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = SqliteStore::open(&dir, key()).unwrap();
        block_on(store.set_tool_decision("gong", "x", true)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for name in [DATABASE_FILE, "terapi.db-wal", "terapi.db-shm"] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        let shared = fresh_dir("sticky");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let error = SqliteStore::open(&shared, key()).err().unwrap().to_string();
        assert!(error.contains("is a shared directory"), "{error}");
    }

    #[test]
    fn a_store_with_secrets_but_no_key_file_stops_instead_of_minting_a_key() {
        let dir = fresh_dir("lost-key");
        // The env var would take precedence; these tests never set it.
        assert!(std::env::var_os(crypto::KEY_ENV_VAR).is_none());
        drop(SqliteStore::open_in(&dir).unwrap());
        let original = std::fs::read(dir.join(crypto::KEY_FILE)).unwrap();
        std::fs::remove_file(dir.join(crypto::KEY_FILE)).unwrap();
        let error = SqliteStore::open_in(&dir).err().unwrap().to_string();
        assert!(error.contains("master.key is missing") && error.contains("restore the key file"), "{error}");
        assert!(!dir.join(crypto::KEY_FILE).exists(), "no new key was written");
        std::fs::write(dir.join(crypto::KEY_FILE), original).unwrap();
        SqliteStore::open_in(&dir).unwrap();
    }

    #[test]
    fn many_first_opens_at_once_all_succeed_with_one_key() {
        let dir = fresh_dir("race");
        let opened: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| SqliteStore::open_in(&dir).map(drop))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for result in opened {
            result.unwrap();
        }
        let key = std::fs::read_to_string(dir.join(crypto::KEY_FILE)).unwrap();
        assert_eq!(key.trim().len(), 44);
    }

    fn connection(id: &str) -> Connection {
        Connection {
            id: id.into(),
            provider: "gong".into(),
            credentials: Credentials::Basic { username: "k".into(), password: Secret::new("s") },
            config: BTreeMap::new(),
        }
    }

    #[test]
    fn a_lease_keeps_a_sync_single_and_a_lapsed_one_shows_interrupted() {
        let store = SqliteStore::open(&fresh_dir("lease"), key()).unwrap();
        let connection = connection("acme");
        let lease = |owner: &str, ttl: u64| SyncLease {
            claimed: false,
            connection_id: "acme".into(),
            sync: "users".into(),
            owner: owner.into(),
            ttl: Duration::from_millis(ttl),
        };
        let page = |id: &str, next: &str| SyncPage {
            records: vec![SyncRecord { id: id.into(), modified_at: None, json: format!("{{\"id\":\"{id}\"}}") }],
            next_checkpoint: Some(next.into()),
            done: false,
            total_records: None,
        };
        block_on(async {
            store.create_connection(&connection, None).await.unwrap();
            let a = lease("host:1", 60_000);
            assert_eq!(store.begin_sync(&a, "GongUser", false).await.unwrap(), None);
            store.commit_page(&a, "GongUser", &page("1", "c1")).await.unwrap();
            let error = store.begin_sync(&lease("host:2", 60_000), "GongUser", false).await.unwrap_err();
            assert!(error.to_string().contains("already running (by host:1"), "{error}");
            assert_eq!(store.sync_states("acme").await.unwrap()[0].status, "running");

            // host:1 dies; with a lease that has lapsed, the run shows as
            // interrupted and another may take over from its checkpoint.
            let dying = lease("host:1", 0);
            store.commit_page(&dying, "GongUser", &page("2", "c2")).await.unwrap();
            assert_eq!(store.sync_states("acme").await.unwrap()[0].status, "interrupted");
            let b = lease("host:2", 60_000);
            assert_eq!(store.begin_sync(&b, "GongUser", false).await.unwrap().as_deref(), Some("c2"));
            // The dead run's late page is refused, not interleaved.
            let late = store.commit_page(&a, "GongUser", &page("3", "c3")).await.unwrap_err();
            assert!(matches!(late, StoreError::LeaseLost { .. }), "{late}");
            store.finish_sync(&b, RunOutcome::Done, None).await.unwrap();
            let state = &store.sync_states("acme").await.unwrap()[0];
            assert_eq!((state.status.as_str(), state.records, state.checkpoint.as_deref()), ("done", 2, Some("c2")));
        });
    }

    #[test]
    fn records_page_by_cursor_and_filter_by_time() {
        let store = SqliteStore::open(&fresh_dir("records"), key()).unwrap();
        let records: Vec<SyncRecord> = (0..5)
            .map(|i| SyncRecord {
                id: i.to_string(),
                modified_at: Some(format!("2024-05-0{}T00:00:00Z", i + 1)),
                json: format!("{{\"id\":\"{i}\"}}"),
            })
            .collect();
        block_on(async {
            store.create_connection(&connection("c"), None).await.unwrap();
            store.upsert_records("c", "M", &records).await.unwrap();
            let mut query = RecordQuery {
                connection_id: "c".into(),
                model: "M".into(),
                modified_after_ms: None,
                cursor: None,
                limit: 2,
                include_deleted: false,
                actions: Vec::new(),
                ids: Vec::new(),
            };
            let mut seen = Vec::new();
            loop {
                let page = store.records(&query).await.unwrap();
                seen.extend(page.records);
                match page.next_cursor {
                    Some(cursor) => query.cursor = Some(cursor),
                    None => break,
                }
            }
            assert_eq!(seen.len(), 5);
            query.cursor = None;
            query.limit = 100;
            // Changed here at or after the moment, to the millisecond.
            let stored_at = seen[0].changed_at_ms;
            query.modified_after_ms = Some(stored_at);
            assert_eq!(store.records(&query).await.unwrap().records.len(), 5, "all were stored at that moment");
            query.modified_after_ms = Some(stored_at + 1);
            assert!(store.records(&query).await.unwrap().records.is_empty());
            query.modified_after_ms = None;
            // A change moves a record behind every other: a saved cursor
            // finds it.
            let saved = seen.last().unwrap().cursor.clone();
            let mut changed = records[1].clone();
            changed.json = "{\"id\":\"1\",\"title\":\"new\"}".into();
            store.upsert_records("c", "M", &[changed, records[2].clone()]).await.unwrap();
            query.cursor = Some(saved);
            let after: Vec<(String, LastAction)> =
                store.records(&query).await.unwrap().records.into_iter().map(|r| (r.id, r.last_action)).collect();
            assert_eq!(after, [("1".to_string(), LastAction::Updated)], "the unchanged record 2 stays where it was");
            query.cursor = Some("not-a-cursor".into());
            assert!(matches!(store.records(&query).await, Err(StoreError::BadQuery(_))));
        });
    }
}
