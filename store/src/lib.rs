//! The embedded store: one SQLite file under a data directory.
//!
//! - Connections, with their secrets encrypted at rest (XChaCha20-Poly1305,
//!   bound to the connection id) under a master key that never enters the file.
//! - Sync state per connection and sync: the checkpoint to resume from, the
//!   last run, the last error.
//! - Records per connection and model, upserted by id. A page's records and
//!   its checkpoint commit in one transaction, so a sync stopped anywhere
//!   resumes from the last committed page, losing and duplicating nothing.

mod crypto;
mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use terapi_host::{Connection, Credentials, PageSink, Secret, SyncPage, SyncRecord, SyncRun};

pub use crypto::{KEY_ENV_VAR, MasterKey};

pub const DATABASE_FILE: &str = "terapi.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} could not be used: {message}")]
    Database { path: PathBuf, message: String },
    #[error(
        "the master key does not match the one this store was created with, so its secrets cannot be read; \
         set {KEY_ENV_VAR} (or restore the key file) to the original key. Nothing was changed."
    )]
    WrongKey,
    #[error("master key: {0}")]
    Key(String),
    #[error("a connection named `{0}` already exists; rotate its credential or delete it first")]
    ConnectionExists(String),
    #[error("no connection named `{0}`; `connection list` shows the saved ones")]
    NoConnection(String),
    #[error("connection `{id}` could not be decrypted: {message}")]
    Corrupt { id: String, message: String },
}

/// What `connection list/show` print: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionSummary {
    pub id: String,
    pub provider: String,
    pub auth_mode: String,
    /// The access key (Gong's basic-auth user name) is an identifier, not a secret.
    pub username: Option<String>,
    pub config: BTreeMap<String, String>,
    pub created_at: u64,
    pub updated_at: u64,
    pub verified_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncState {
    pub connection_id: String,
    pub sync: String,
    pub model: String,
    /// Where the next run starts; `None` means from the beginning.
    pub checkpoint: Option<String>,
    pub status: String,
    pub records: u64,
    pub pages: u64,
    pub last_started_at: Option<u64>,
    pub last_finished_at: Option<u64>,
    pub last_error: Option<String>,
}

pub struct Store {
    path: PathBuf,
    db: Mutex<rusqlite::Connection>,
    key: MasterKey,
}

/// The secret part of a credential, as encrypted in the `connections` table.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum SealedCredentials {
    Basic { username: String, password: String },
    Oauth2 { access_token: String, refresh_token: Option<String>, expires_at: Option<u64> },
}

impl Store {
    /// Opens (creating if needed) `DATA_DIR/terapi.db`, migrates it, and
    /// checks `key` against the store before anything is written.
    pub fn open(data_dir: &Path, key: MasterKey) -> Result<Store, StoreError> {
        let path = data_dir.join(DATABASE_FILE);
        let db_error = |e: &dyn std::fmt::Display| StoreError::Database { path: path.clone(), message: e.to_string() };
        create_private_dir(data_dir).map_err(|e| db_error(&e))?;
        let mut db = rusqlite::Connection::open(&path).map_err(|e| db_error(&e))?;
        // WAL: a crashed writer never corrupts what was committed, and
        // readers (`records list`) do not block a running sync.
        db.pragma_update(None, "journal_mode", "WAL").map_err(|e| db_error(&e))?;
        db.pragma_update(None, "synchronous", "NORMAL").map_err(|e| db_error(&e))?;
        db.pragma_update(None, "foreign_keys", "ON").map_err(|e| db_error(&e))?;
        db.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| db_error(&e))?;
        schema::migrate(&mut db).map_err(|e| db_error(&e))?;

        let check: Option<Vec<u8>> = db
            .query_row("SELECT value FROM meta WHERE key = 'key_check'", [], |r| r.get(0))
            .optional()
            .map_err(|e| db_error(&e))?;
        match check {
            Some(sealed) => key.open(crypto::KEY_CHECK_AAD, &sealed).map_err(|_| StoreError::WrongKey).map(drop)?,
            None => {
                let sealed = key.seal(crypto::KEY_CHECK_AAD, crypto::KEY_CHECK_PLAINTEXT);
                db.execute("INSERT INTO meta (key, value) VALUES ('key_check', ?1)", params![sealed])
                    .map_err(|e| db_error(&e))?;
            }
        }
        Ok(Store { path, db: Mutex::new(db), key })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> MutexGuard<'_, rusqlite::Connection> {
        self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Database { path: self.path.clone(), message: e.to_string() }
    }

    /// Saves a new connection; the caller verifies the credential first.
    pub fn create_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        let now = now();
        let sealed = self.seal_credentials(&connection.id, &connection.credentials);
        let config = serde_json::to_string(&connection.config).unwrap_or_else(|_| "{}".into());
        let inserted = self
            .db()
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
        Ok(())
    }

    /// Replaces the credential in place: the id, config, checkpoints and
    /// records stay as they are.
    pub fn rotate_credentials(&self, id: &str, credentials: &Credentials) -> Result<(), StoreError> {
        let sealed = self.seal_credentials(id, credentials);
        let changed = self
            .db()
            .execute(
                "UPDATE connections SET sealed_credentials = ?2, auth_mode = ?3, username = ?4, updated_at = ?5, verified_at = ?5 WHERE id = ?1",
                params![id, sealed, auth_mode_name(credentials), username(credentials), now() as i64],
            )
            .map_err(|e| self.err(e))?;
        if changed == 0 {
            return Err(StoreError::NoConnection(id.to_string()));
        }
        Ok(())
    }

    /// Saves renewed OAuth tokens in place, and merges `config` (e.g. the
    /// token response's `api_base_url_for_customer`) into the connection's.
    pub fn save_tokens(
        &self,
        id: &str,
        credentials: &Credentials,
        config: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection(id)?;
        connection.config.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
        let merged = serde_json::to_string(&connection.config).unwrap_or_else(|_| "{}".into());
        self.rotate_credentials(id, credentials)?;
        self.db()
            .execute("UPDATE connections SET config = ?2 WHERE id = ?1", params![id, merged])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Deletes the connection with its sync state and records.
    pub fn delete_connection(&self, id: &str) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM records WHERE connection_id = ?1", [id]).map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM sync_state WHERE connection_id = ?1", [id]).map_err(|e| self.err(e))?;
        let deleted = tx.execute("DELETE FROM connections WHERE id = ?1", [id]).map_err(|e| self.err(e))?;
        if deleted == 0 {
            return Err(StoreError::NoConnection(id.to_string()));
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The connection with its decrypted credential, ready for the host.
    pub fn connection(&self, id: &str) -> Result<Connection, StoreError> {
        let row = self
            .db()
            .query_row("SELECT provider, sealed_credentials, config FROM connections WHERE id = ?1", [id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let (provider, sealed, config) = row.ok_or_else(|| StoreError::NoConnection(id.to_string()))?;
        let corrupt = |message: String| StoreError::Corrupt { id: id.to_string(), message };
        let plain = self.key.open(id.as_bytes(), &sealed).map_err(|_| StoreError::WrongKey)?;
        let sealed: SealedCredentials = serde_json::from_slice(&plain).map_err(|e| corrupt(e.to_string()))?;
        let credentials = match sealed {
            SealedCredentials::Basic { username, password } => {
                Credentials::Basic { username, password: Secret::new(password) }
            }
            SealedCredentials::Oauth2 { access_token, refresh_token, expires_at } => Credentials::OAuth2 {
                access_token: Secret::new(access_token),
                refresh_token: refresh_token.map(Secret::new),
                expires_at,
            },
        };
        let config = serde_json::from_str(&config).map_err(|e| corrupt(e.to_string()))?;
        Ok(Connection { id: id.to_string(), provider, credentials, config })
    }

    pub fn connections(&self) -> Result<Vec<ConnectionSummary>, StoreError> {
        self.summaries(None)
    }

    pub fn connection_summary(&self, id: &str) -> Result<ConnectionSummary, StoreError> {
        self.summaries(Some(id))?.pop().ok_or_else(|| StoreError::NoConnection(id.to_string()))
    }

    fn summaries(&self, id: Option<&str>) -> Result<Vec<ConnectionSummary>, StoreError> {
        let db = self.db();
        let mut statement = db
            .prepare(
                "SELECT id, provider, auth_mode, username, config, created_at, updated_at, verified_at
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
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    fn seal_credentials(&self, id: &str, credentials: &Credentials) -> Vec<u8> {
        let sealed = match credentials {
            Credentials::Basic { username, password } => {
                SealedCredentials::Basic { username: username.clone(), password: password.expose().to_string() }
            }
            Credentials::OAuth2 { access_token, refresh_token, expires_at } => SealedCredentials::Oauth2 {
                access_token: access_token.expose().to_string(),
                refresh_token: refresh_token.as_ref().map(|t| t.expose().to_string()),
                expires_at: *expires_at,
            },
        };
        // Serialising plain strings cannot fail.
        let plain = serde_json::to_vec(&sealed).unwrap_or_default();
        self.key.seal(id.as_bytes(), &plain)
    }

    /// Marks a run as started and returns the checkpoint to start from
    /// (`None` when `full` or when the last run finished from scratch).
    pub fn begin_sync(
        &self,
        connection_id: &str,
        sync: &str,
        model: &str,
        full: bool,
    ) -> Result<Option<String>, StoreError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO sync_state (connection_id, sync, model, status, last_started_at) VALUES (?1, ?2, ?3, 'running', ?4)
             ON CONFLICT (connection_id, sync) DO UPDATE SET status = 'running', model = ?3, last_started_at = ?4, last_error = NULL",
            params![connection_id, sync, model, now() as i64],
        )
        .map_err(|e| self.err(e))?;
        if full {
            tx.execute(
                "UPDATE sync_state SET checkpoint = NULL WHERE connection_id = ?1 AND sync = ?2",
                params![connection_id, sync],
            )
            .map_err(|e| self.err(e))?;
        }
        let checkpoint = tx
            .query_row(
                "SELECT checkpoint FROM sync_state WHERE connection_id = ?1 AND sync = ?2",
                params![connection_id, sync],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(checkpoint)
    }

    /// Records how a run ended. The checkpoint is left as the last committed
    /// page set it.
    pub fn finish_sync(
        &self,
        connection_id: &str,
        sync: &str,
        outcome: Result<&SyncRun, &str>,
    ) -> Result<(), StoreError> {
        let (status, error) = match outcome {
            Ok(_) => ("done", None),
            Err(message) => ("failed", Some(message)),
        };
        self.db()
            .execute(
                "UPDATE sync_state SET status = ?3, last_error = ?4, last_finished_at = ?5 WHERE connection_id = ?1 AND sync = ?2",
                params![connection_id, sync, status, error, now() as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn sync_states(&self, connection_id: &str) -> Result<Vec<SyncState>, StoreError> {
        let db = self.db();
        let mut statement = db
            .prepare(
                "SELECT s.sync, s.model, s.checkpoint, s.status, s.pages, s.last_started_at, s.last_finished_at, s.last_error,
                        (SELECT COUNT(*) FROM records r WHERE r.connection_id = s.connection_id AND r.model = s.model)
                 FROM sync_state s WHERE s.connection_id = ?1 ORDER BY s.sync",
            )
            .map_err(|e| self.err(e))?;
        let rows = statement
            .query_map([connection_id], |r| {
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
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// A sink that commits each page's records and checkpoint together.
    pub fn page_sink<'s>(&'s self, connection_id: &'s str, sync: &'s str, model: &'s str) -> StorePageSink<'s> {
        StorePageSink { store: self, connection_id, sync, model }
    }

    /// Upserts records outside any sync (e.g. from a webhook): the same
    /// record delivered twice is stored once.
    pub fn upsert_records(&self, connection_id: &str, model: &str, records: &[SyncRecord]) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| self.err(e))?;
        self.upsert_in(&tx, connection_id, model, records)?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn upsert_in(
        &self,
        tx: &rusqlite::Transaction<'_>,
        connection_id: &str,
        model: &str,
        records: &[SyncRecord],
    ) -> Result<(), StoreError> {
        let now = now() as i64;
        {
            // Unchanged records are left alone, so `updated_at` means "changed".
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO records (connection_id, model, id, json, modified_at, first_seen_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                     ON CONFLICT (connection_id, model, id) DO UPDATE
                     SET json = excluded.json, modified_at = excluded.modified_at, updated_at = excluded.updated_at
                     WHERE records.json IS NOT excluded.json OR records.modified_at IS NOT excluded.modified_at",
                )
                .map_err(|e| self.err(e))?;
            for record in records {
                upsert
                    .execute(params![connection_id, model, record.id, record.json, record.modified_at, now])
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }

    fn commit_page(&self, connection_id: &str, sync: &str, model: &str, page: &SyncPage) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| self.err(e))?;
        self.upsert_in(&tx, connection_id, model, &page.records)?;
        tx.execute(
            "UPDATE sync_state SET checkpoint = ?3, pages = pages + 1 WHERE connection_id = ?1 AND sync = ?2",
            params![connection_id, sync, page.next_checkpoint],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Calls `each` with every stored record of `model` (JSON text), oldest
    /// first; `modified_after` (RFC 3339 or unix seconds) keeps those the
    /// provider says changed later, or that changed here later when the
    /// provider gives no time.
    pub fn for_each_record(
        &self,
        connection_id: &str,
        model: &str,
        modified_after: Option<&str>,
        mut each: impl FnMut(&str) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        let db = self.db();
        let (after_text, after_unix) = match modified_after {
            Some(t) => match t.parse::<i64>() {
                Ok(unix) => (None, Some(unix)),
                Err(_) => (Some(t.to_string()), None),
            },
            None => (None, None),
        };
        let mut statement = db
            .prepare(
                "SELECT json FROM records WHERE connection_id = ?1 AND model = ?2
                 AND (?3 IS NULL OR modified_at > ?3 OR (modified_at IS NULL AND updated_at > CAST(strftime('%s', ?3) AS INTEGER)))
                 AND (?4 IS NULL OR updated_at > ?4)
                 ORDER BY rowid",
            )
            .map_err(|e| self.err(e))?;
        let mut rows =
            statement.query(params![connection_id, model, after_text, after_unix]).map_err(|e| self.err(e))?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let json: String = row.get(0).map_err(|e| self.err(e))?;
            if each(&json).is_err() {
                break; // the reader went away (e.g. `| head`)
            }
            count += 1;
        }
        Ok(count)
    }

    /// Marks a connection's credential as checked just now.
    pub fn mark_verified(&self, id: &str) -> Result<(), StoreError> {
        self.db()
            .execute("UPDATE connections SET verified_at = ?2 WHERE id = ?1", params![id, now() as i64])
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// One tool call as the audit log keeps it: never the input itself (it may
/// hold personal data), only its SHA-256; never a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: u64,
    pub caller: String,
    pub connection_id: String,
    pub tool: String,
    pub input_sha256: String,
    /// `ok`, `error` or `refused`.
    pub status: String,
    pub duration_ms: u64,
    pub detail: Option<String>,
}

impl Store {
    /// The explicit decision on a tool, if an operator made one.
    pub fn tool_decision(&self, provider: &str, tool: &str) -> Result<Option<String>, StoreError> {
        self.db()
            .query_row(
                "SELECT status FROM tool_policy WHERE provider = ?1 AND tool = ?2",
                params![provider, tool],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_tool_decision(&self, provider: &str, tool: &str, approved: bool) -> Result<(), StoreError> {
        let status = if approved { "approved" } else { "denied" };
        self.db()
            .execute(
                "INSERT INTO tool_policy (provider, tool, status, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (provider, tool) DO UPDATE SET status = ?3, updated_at = ?4",
                params![provider, tool, status, now() as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
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
    }

    /// The newest `limit` entries, oldest first.
    pub fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
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
    }
}

/// Seconds since the Unix epoch (for audit entries).
pub fn unix_now() -> u64 {
    now()
}

pub struct StorePageSink<'s> {
    store: &'s Store,
    connection_id: &'s str,
    sync: &'s str,
    model: &'s str,
}

impl PageSink for StorePageSink<'_> {
    async fn accept(&mut self, page: &SyncPage) -> Result<(), String> {
        self.store.commit_page(self.connection_id, self.sync, self.model, page).map_err(|e| e.to_string())
    }
}

fn auth_mode_name(credentials: &Credentials) -> &'static str {
    match credentials {
        Credentials::Basic { .. } => "BASIC",
        Credentials::OAuth2 { .. } => "OAUTH2",
    }
}

fn username(credentials: &Credentials) -> Option<&str> {
    match credentials {
        Credentials::Basic { username, .. } => Some(username),
        Credentials::OAuth2 { .. } => None,
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
