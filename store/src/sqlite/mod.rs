//! The store on one machine: one SQLite file (WAL) under a data directory.
//! Several processes may share it: opening is race-free, sync runs are
//! leased, and request budgets are kept in it.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};

mod driver;

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use terapi_domain::budget::{BudgetStore, Reservation, interval_ms, reservation_from};
use terapi_domain::providers::RateLimitSpec;

use crate::crypto::MasterKey;
use crate::{StoreError, schema};

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
        Ok(reservation_from(tat.map(|(tat, used)| (tat, now_ms as i64, used)), limit))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LastAction;
    use crate::crypto;
    use crate::{ConnectionStore, GovernanceStore, ScheduleStore, SyncQueue};
    use crate::{RecordQuery, RecordStore, RunOutcome, SyncLease, SyncRunStore};
    use std::collections::BTreeMap;
    use std::time::Duration;
    use terapi_domain::Secret;
    use terapi_domain::SyncPage;
    use terapi_domain::budget::{BudgetState, reserve};
    use terapi_domain::{Connection, Credentials, SyncRecord};

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

    #[test]
    fn a_transaction_that_waits_on_something_else_is_refused_and_rolled_back() {
        use crate::ApiKeyStore;
        use crate::sql::SqlStore;
        let store = SqliteStore::open(&fresh_dir("stuck-tx"), key()).unwrap();
        let outcome = block_on(store.transaction(Box::new(|tx, _| {
            Box::pin(async move {
                tx.execute("INSERT INTO api_keys (sha256, id, label, created_at) VALUES ('h', 'i', 'l', 0)", &[])
                    .await?;
                std::future::pending::<()>().await;
                Ok(())
            })
        })));
        let error = outcome.unwrap_err().to_string();
        assert!(error.contains("waited on something other than SQLite"), "{error}");
        assert!(!block_on(store.api_key_exists("h")).unwrap(), "nothing of it was kept");
    }
}
