//! Versioned migrations. `schema_version` holds how many were applied; the
//! caller holds an advisory lock, so hosts starting together apply each once.

use terapi_store::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: the same tables as the SQLite store, with ON DELETE CASCADE so a
    // connection takes its state with it, and a sequence for record cursors.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
     CREATE TABLE connections (
         id TEXT PRIMARY KEY,
         provider TEXT NOT NULL,
         auth_mode TEXT NOT NULL,
         username TEXT,
         sealed_credentials BYTEA NOT NULL,
         config TEXT NOT NULL,
         created_at BIGINT NOT NULL,
         updated_at BIGINT NOT NULL,
         verified_at BIGINT
     );
     CREATE TABLE sync_state (
         connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
         sync TEXT NOT NULL,
         model TEXT NOT NULL,
         checkpoint TEXT,
         status TEXT NOT NULL,
         pages BIGINT NOT NULL DEFAULT 0,
         last_started_at BIGINT,
         last_finished_at BIGINT,
         last_error TEXT,
         lease_owner TEXT,
         lease_expires_at BIGINT,
         due_at BIGINT,
         pass_started_at_ms BIGINT,
         PRIMARY KEY (connection_id, sync)
     );
     CREATE INDEX sync_state_due ON sync_state (due_at) WHERE due_at IS NOT NULL;
     CREATE TABLE sync_runs (
         id BIGSERIAL PRIMARY KEY,
         connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
         sync TEXT NOT NULL,
         owner TEXT NOT NULL,
         started_at_ms BIGINT NOT NULL,
         last_beat_ms BIGINT NOT NULL,
         finished_at_ms BIGINT,
         status TEXT NOT NULL,
         pages BIGINT NOT NULL DEFAULT 0,
         records BIGINT NOT NULL DEFAULT 0
     );
     CREATE INDEX sync_runs_by_sync ON sync_runs (connection_id, sync, id);
     CREATE TABLE records (
         seq BIGSERIAL NOT NULL,
         connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
         model TEXT NOT NULL,
         id TEXT NOT NULL,
         json TEXT NOT NULL,
         modified_at TEXT,
         first_seen_at BIGINT NOT NULL,
         updated_at BIGINT NOT NULL,
         seen_at_ms BIGINT,
         deleted_at BIGINT,
         PRIMARY KEY (connection_id, model, id)
     );
     CREATE INDEX records_by_seq ON records (connection_id, model, seq);
     CREATE TABLE tool_policy (
         provider TEXT NOT NULL,
         tool TEXT NOT NULL,
         status TEXT NOT NULL CHECK (status IN ('approved', 'denied')),
         updated_at BIGINT NOT NULL,
         PRIMARY KEY (provider, tool)
     );
     CREATE TABLE audit (
         id BIGSERIAL PRIMARY KEY,
         at BIGINT NOT NULL,
         caller TEXT NOT NULL,
         connection_id TEXT NOT NULL,
         tool TEXT NOT NULL,
         input_sha256 TEXT NOT NULL,
         status TEXT NOT NULL,
         duration_ms BIGINT NOT NULL,
         detail TEXT
     );
     CREATE TABLE rate_budget (
         tenant TEXT PRIMARY KEY,
         tat_ms BIGINT NOT NULL,
         day BIGINT NOT NULL,
         used BIGINT NOT NULL
     );",
    // 2: the platform as a service: sync schedules (how often, paused),
    // hashed secret API keys, and Connect sessions (hashed tokens).
    "ALTER TABLE sync_state ADD COLUMN frequency_secs BIGINT;
     ALTER TABLE sync_state ADD COLUMN paused BOOLEAN NOT NULL DEFAULT FALSE;
     CREATE TABLE api_keys (
         sha256 TEXT PRIMARY KEY,
         id TEXT NOT NULL UNIQUE,
         label TEXT NOT NULL,
         created_at BIGINT NOT NULL
     );
     CREATE TABLE connect_sessions (
         token_sha256 TEXT PRIMARY KEY,
         end_user TEXT NOT NULL,
         allowed_integrations TEXT NOT NULL,
         expires_at_ms BIGINT NOT NULL,
         connection_id TEXT
     );",
    // 3: the origin a Connect session's page reports to.
    "ALTER TABLE connect_sessions ADD COLUMN allowed_origin TEXT;",
    // 4: the fleet: each sync's tenant (fair claiming), a run's start kept
    // across the slices it yields in, and the event outbox (claimed with
    // SKIP LOCKED by any process) with its delivery log.
    "ALTER TABLE sync_state ADD COLUMN tenant TEXT;
     ALTER TABLE sync_state ADD COLUMN run_started_at_ms BIGINT;
     ALTER TABLE sync_state ADD COLUMN run_resumed BOOLEAN NOT NULL DEFAULT FALSE;
     CREATE INDEX sync_state_leased ON sync_state (tenant) WHERE lease_owner IS NOT NULL;
     CREATE TABLE events (
         seq BIGSERIAL PRIMARY KEY,
         id TEXT NOT NULL UNIQUE,
         kind TEXT NOT NULL,
         connection_id TEXT NOT NULL,
         facts TEXT NOT NULL,
         created_at_ms BIGINT NOT NULL,
         status TEXT NOT NULL DEFAULT 'pending',
         attempts INTEGER NOT NULL DEFAULT 0,
         next_attempt_at_ms BIGINT NOT NULL,
         claimed_by TEXT,
         claim_expires_at_ms BIGINT,
         delivered_at_ms BIGINT,
         last_error TEXT,
         run_started_at_ms BIGINT,
         run_resumed BOOLEAN NOT NULL DEFAULT FALSE,
         added BIGINT,
         updated BIGINT,
         deleted BIGINT
     );
     CREATE INDEX events_pending ON events (next_attempt_at_ms) WHERE status = 'pending';
     CREATE INDEX events_by_age ON events (created_at_ms);
     CREATE TABLE event_deliveries (
         seq BIGSERIAL PRIMARY KEY,
         event_id TEXT NOT NULL,
         attempt BIGINT NOT NULL,
         at_ms BIGINT NOT NULL,
         owner TEXT NOT NULL,
         url TEXT NOT NULL,
         status_code INTEGER,
         error TEXT,
         duration_ms BIGINT NOT NULL
     );
     CREATE INDEX event_deliveries_by_event ON event_deliveries (event_id, seq);",
    // 5: records in the order of their changes (one sequence for every
    // insert, change and deletion; a cursor is a record's number), with the
    // time of each change to the millisecond and what it was.
    "ALTER TABLE records ADD COLUMN change_seq BIGINT, ADD COLUMN changed_at_ms BIGINT, ADD COLUMN last_action TEXT;
     UPDATE records SET change_seq = seq, changed_at_ms = updated_at * 1000,
         last_action = CASE WHEN deleted_at IS NOT NULL THEN 'DELETED'
                            WHEN updated_at > first_seen_at THEN 'UPDATED' ELSE 'ADDED' END;
     CREATE SEQUENCE record_changes;
     SELECT setval('record_changes', COALESCE((SELECT MAX(seq) FROM records), 0) + 1, false);
     DROP INDEX IF EXISTS records_by_seq;
     CREATE UNIQUE INDEX records_by_change ON records (connection_id, model, change_seq);
     CREATE INDEX records_by_change_time ON records (connection_id, model, changed_at_ms);",
    // 6: who a connection is for, the app's tags and metadata (JSON).
    "ALTER TABLE connections ADD COLUMN end_user TEXT, ADD COLUMN tags TEXT, ADD COLUMN metadata TEXT;
     ALTER TABLE records ADD COLUMN pruned_at BIGINT;
     ALTER TABLE connect_sessions ADD COLUMN reconnect_connection_id TEXT;
     CREATE TABLE async_actions (
         id TEXT PRIMARY KEY,
         connection_id TEXT NOT NULL,
         action TEXT NOT NULL,
         status TEXT NOT NULL,
         output TEXT,
         error TEXT,
         created_at_ms BIGINT NOT NULL,
         finished_at_ms BIGINT
     );",
    // 7: tool governance as compare-and-swap documents (see the SQLite
    // schema).
    "CREATE TABLE governance (
         kind TEXT NOT NULL,
         key TEXT NOT NULL,
         version BIGINT NOT NULL,
         body TEXT NOT NULL,
         updated_at BIGINT NOT NULL,
         PRIMARY KEY (kind, key)
     );",
    // 8: record times in ms for ordering, ids seen once, named locks (see
    // the SQLite schema's 10).
    "ALTER TABLE records ADD COLUMN modified_at_ms BIGINT;
     CREATE TABLE seen_once (
         scope TEXT NOT NULL,
         id TEXT NOT NULL,
         expires_at_ms BIGINT NOT NULL,
         PRIMARY KEY (scope, id)
     );
     CREATE TABLE locks (
         name TEXT PRIMARY KEY,
         owner TEXT NOT NULL,
         expires_at_ms BIGINT NOT NULL
     );",
    // 9: `records.seq`, the cursor before records were listed in change
    // order (5), is read by nothing since; SQLite never had it, and the
    // schema-drift test holds the two schemas to the same columns.
    "ALTER TABLE records DROP COLUMN seq;",
];

pub async fn migrate(tx: &deadpool_postgres::Transaction<'_>, shown: &str) -> Result<(), StoreError> {
    let error = |e: tokio_postgres::Error| StoreError::Database { path: shown.into(), message: e.to_string() };
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)").await.map_err(error)?;
    let applied: Option<i32> =
        tx.query_opt("SELECT version FROM schema_version", &[]).await.map_err(error)?.map(|r| r.get(0));
    let applied = applied.unwrap_or(0) as usize;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::NewerSchema {
            path: shown.into(),
            found: applied as u32,
            known: MIGRATIONS.len() as u32,
        });
    }
    for sql in &MIGRATIONS[applied..] {
        tx.batch_execute(sql).await.map_err(error)?;
    }
    if applied < MIGRATIONS.len() {
        tx.execute("DELETE FROM schema_version", &[]).await.map_err(error)?;
        tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&(MIGRATIONS.len() as i32)])
            .await
            .map_err(error)?;
    }
    Ok(())
}
