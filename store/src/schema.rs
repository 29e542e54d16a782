//! Versioned schema migrations, run on open. `PRAGMA user_version` holds the
//! number of migrations applied; each runs once, in its own transaction.

const MIGRATIONS: &[&str] = &[
    // 1: connections, sync state, records.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
     CREATE TABLE connections (
         id TEXT PRIMARY KEY,
         provider TEXT NOT NULL,
         auth_mode TEXT NOT NULL,
         username TEXT,
         sealed_credentials BLOB NOT NULL,
         config TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         updated_at INTEGER NOT NULL,
         verified_at INTEGER
     );
     CREATE TABLE sync_state (
         connection_id TEXT NOT NULL REFERENCES connections (id),
         sync TEXT NOT NULL,
         model TEXT NOT NULL,
         checkpoint TEXT,
         status TEXT NOT NULL,
         pages INTEGER NOT NULL DEFAULT 0,
         last_started_at INTEGER,
         last_finished_at INTEGER,
         last_error TEXT,
         PRIMARY KEY (connection_id, sync)
     );
     CREATE TABLE records (
         connection_id TEXT NOT NULL REFERENCES connections (id),
         model TEXT NOT NULL,
         id TEXT NOT NULL,
         json TEXT NOT NULL,
         modified_at TEXT,
         first_seen_at INTEGER NOT NULL,
         updated_at INTEGER NOT NULL,
         PRIMARY KEY (connection_id, model, id)
     );
     CREATE INDEX records_by_update ON records (connection_id, model, updated_at);",
    // 2: governance of actions exposed as tools (MCP), and their audit trail.
    "CREATE TABLE tool_policy (
         provider TEXT NOT NULL,
         tool TEXT NOT NULL,
         status TEXT NOT NULL CHECK (status IN ('approved', 'denied')),
         updated_at INTEGER NOT NULL,
         PRIMARY KEY (provider, tool)
     );
     CREATE TABLE audit (
         id INTEGER PRIMARY KEY,
         at INTEGER NOT NULL,
         caller TEXT NOT NULL,
         connection_id TEXT NOT NULL,
         tool TEXT NOT NULL,
         input_sha256 TEXT NOT NULL,
         status TEXT NOT NULL,
         duration_ms INTEGER NOT NULL,
         detail TEXT
     );",
    // 3: leases on sync runs (one run at a time; a killed run lapses), due
    // syncs for workers, the history of runs, deletion detection for full
    // syncs (when each record was last seen, when it went missing), and
    // request budgets per provider tenant shared by every process.
    "ALTER TABLE sync_state ADD COLUMN lease_owner TEXT;
     ALTER TABLE sync_state ADD COLUMN lease_expires_at INTEGER;
     ALTER TABLE sync_state ADD COLUMN due_at INTEGER;
     ALTER TABLE sync_state ADD COLUMN pass_started_at_ms INTEGER;
     ALTER TABLE records ADD COLUMN seen_at_ms INTEGER;
     ALTER TABLE records ADD COLUMN deleted_at INTEGER;
     CREATE INDEX sync_state_due ON sync_state (due_at) WHERE due_at IS NOT NULL;
     CREATE TABLE sync_runs (
         id INTEGER PRIMARY KEY,
         connection_id TEXT NOT NULL,
         sync TEXT NOT NULL,
         owner TEXT NOT NULL,
         started_at_ms INTEGER NOT NULL,
         last_beat_ms INTEGER NOT NULL,
         finished_at_ms INTEGER,
         status TEXT NOT NULL,
         pages INTEGER NOT NULL DEFAULT 0,
         records INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX sync_runs_by_sync ON sync_runs (connection_id, sync, id);
     CREATE TABLE rate_budget (
         tenant TEXT PRIMARY KEY,
         tat_ms INTEGER NOT NULL,
         day INTEGER NOT NULL,
         used INTEGER NOT NULL
     );",
    // 4: the platform as a service: sync schedules (how often, paused),
    // hashed secret API keys, and Connect sessions (hashed tokens).
    "ALTER TABLE sync_state ADD COLUMN frequency_secs INTEGER;
     ALTER TABLE sync_state ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
     -- Listing walks a model in rowid order from a cursor: every SQLite
     -- index ends in the rowid, so this one serves it without a sort (the
     -- others lead with updated_at or id, and made each page scan the model).
     CREATE INDEX records_by_position ON records (connection_id, model);
     CREATE TABLE api_keys (
         sha256 TEXT PRIMARY KEY,
         id TEXT NOT NULL UNIQUE,
         label TEXT NOT NULL,
         created_at INTEGER NOT NULL
     );
     CREATE TABLE connect_sessions (
         token_sha256 TEXT PRIMARY KEY,
         end_user TEXT NOT NULL,
         allowed_integrations TEXT NOT NULL,
         expires_at_ms INTEGER NOT NULL,
         connection_id TEXT
     );",
    // 5: the origin a Connect session's page reports to.
    "ALTER TABLE connect_sessions ADD COLUMN allowed_origin TEXT;",
    // 6: the fleet: each sync's tenant (fair claiming), a run's start kept
    // across the slices it yields in, and the event outbox with its
    // delivery log.
    "ALTER TABLE sync_state ADD COLUMN tenant TEXT;
     ALTER TABLE sync_state ADD COLUMN run_started_at_ms INTEGER;
     ALTER TABLE sync_state ADD COLUMN run_resumed INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX sync_state_leased ON sync_state (tenant) WHERE lease_owner IS NOT NULL;
     CREATE TABLE events (
         seq INTEGER PRIMARY KEY,
         id TEXT NOT NULL UNIQUE,
         kind TEXT NOT NULL,
         connection_id TEXT NOT NULL,
         facts TEXT NOT NULL,
         created_at_ms INTEGER NOT NULL,
         status TEXT NOT NULL DEFAULT 'pending',
         attempts INTEGER NOT NULL DEFAULT 0,
         next_attempt_at_ms INTEGER NOT NULL,
         claimed_by TEXT,
         claim_expires_at_ms INTEGER,
         delivered_at_ms INTEGER,
         last_error TEXT,
         run_started_at_ms INTEGER,
         run_resumed INTEGER NOT NULL DEFAULT 0,
         added INTEGER,
         updated INTEGER,
         deleted INTEGER
     );
     CREATE INDEX events_pending ON events (next_attempt_at_ms) WHERE status = 'pending';
     CREATE INDEX events_by_age ON events (created_at_ms);
     CREATE TABLE event_deliveries (
         seq INTEGER PRIMARY KEY,
         event_id TEXT NOT NULL,
         attempt INTEGER NOT NULL,
         at_ms INTEGER NOT NULL,
         owner TEXT NOT NULL,
         url TEXT NOT NULL,
         status_code INTEGER,
         error TEXT,
         duration_ms INTEGER NOT NULL
     );
     CREATE INDEX event_deliveries_by_event ON event_deliveries (event_id, seq);",
    // 7: records in the order of their changes: every insert, change and
    // deletion takes the next number of one counter, so a cursor (a
    // record's number) resumes at exactly what changed after it; the time
    // of each change to the millisecond, and what it was.
    "ALTER TABLE records ADD COLUMN change_seq INTEGER;
     ALTER TABLE records ADD COLUMN changed_at_ms INTEGER;
     ALTER TABLE records ADD COLUMN last_action TEXT;
     UPDATE records SET change_seq = rowid, changed_at_ms = updated_at * 1000,
         last_action = CASE WHEN deleted_at IS NOT NULL THEN 'DELETED'
                            WHEN updated_at > first_seen_at THEN 'UPDATED' ELSE 'ADDED' END;
     CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
     INSERT INTO counters (name, value) SELECT 'record_changes', COALESCE(MAX(rowid), 0) FROM records;
     DROP INDEX records_by_position;
     DROP INDEX records_by_update;
     CREATE UNIQUE INDEX records_by_change ON records (connection_id, model, change_seq);
     CREATE INDEX records_by_change_time ON records (connection_id, model, changed_at_ms);",
    // 8: who a connection is for, the app's tags and metadata (JSON).
    "ALTER TABLE connections ADD COLUMN end_user TEXT;
     ALTER TABLE connections ADD COLUMN tags TEXT;
     ALTER TABLE connections ADD COLUMN metadata TEXT;
     ALTER TABLE records ADD COLUMN pruned_at INTEGER;
     ALTER TABLE connect_sessions ADD COLUMN reconnect_connection_id TEXT;
     CREATE TABLE async_actions (
         id TEXT PRIMARY KEY,
         connection_id TEXT NOT NULL,
         action TEXT NOT NULL,
         status TEXT NOT NULL,
         output TEXT,
         error TEXT,
         created_at_ms INTEGER NOT NULL,
         finished_at_ms INTEGER
     );",
    // 9: tool governance (per-connection policy, toolsets, access
    // profiles, MCP users) as compare-and-swap documents.
    "CREATE TABLE governance (
         kind TEXT NOT NULL,
         key TEXT NOT NULL,
         version INTEGER NOT NULL,
         body TEXT NOT NULL,
         updated_at INTEGER NOT NULL,
         PRIMARY KEY (kind, key)
     );",
    // 10: each record's provider time in ms, so an older version (a replayed
    // webhook, a late page) never replaces a newer one; ids seen once
    // (webhook deliveries) for as long as a replay could matter; short
    // named locks (one OAuth refresh per connection across processes).
    "ALTER TABLE records ADD COLUMN modified_at_ms INTEGER;
     CREATE TABLE seen_once (
         scope TEXT NOT NULL,
         id TEXT NOT NULL,
         expires_at_ms INTEGER NOT NULL,
         PRIMARY KEY (scope, id)
     );
     CREATE TABLE locks (
         name TEXT PRIMARY KEY,
         owner TEXT NOT NULL,
         expires_at_ms INTEGER NOT NULL
     );",
];

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

pub fn version(db: &rusqlite::Connection) -> rusqlite::Result<u32> {
    db.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).map(|v| v as u32)
}

/// Applies the migrations after `applied`, inside the caller's write
/// transaction (so two processes opening a fresh store cannot both run them).
pub fn migrate(tx: &rusqlite::Transaction<'_>, applied: u32) -> rusqlite::Result<()> {
    for sql in MIGRATIONS.iter().skip(applied as usize) {
        tx.execute_batch(sql)?;
    }
    if applied < LATEST {
        tx.pragma_update(None, "user_version", i64::from(LATEST))?;
    }
    Ok(())
}
