//! `RecordStore` and the record writes of a sync, once for both stores.
//! Two things differ by dialect, each for a reason: how the change order is
//! numbered (SQLite has one writer at a time and takes numbers from a
//! counter row; PostgreSQL takes them from a sequence, under a lock per
//! connection and model so that changes commit in the order of their
//! numbers and a cursor never skips one), and how a page is written
//! (PostgreSQL upserts it in one statement over arrays; SQLite, which has
//! no arrays, row by row in the same transaction).

use std::sync::LazyLock;

use terapi_domain::{SyncPage, SyncRecord};

use super::sync_runs::commit_page_state;
use super::{Dialect, Param, Row, SqlStore, Tx};
use crate::{
    LastAction, RecordPage, RecordQuery, RecordStore, StoreError, StoredRecord, SyncLease, sql_params, unix_now,
};

/// What a record upsert changes on a conflict, on both stores:
/// `updated_at`, the change number and time move only when the record
/// changed (or came back after being found deleted); `seen_at_ms` moves
/// every time, for deletion detection. A version older than the stored
/// one (by the provider's own time, `modified_at_ms`) changes nothing but
/// `seen_at_ms`, so a replayed webhook or a late page never rolls a record
/// back.
const RECORD_UPSERT_SET: &str = "SET updated_at = CASE WHEN (NOT COALESCE(excluded.modified_at_ms < records.modified_at_ms, FALSE) AND ((records.json IS DISTINCT FROM excluded.json AND records.pruned_at IS NULL) OR records.modified_at IS DISTINCT FROM excluded.modified_at OR records.deleted_at IS NOT NULL)) THEN excluded.updated_at ELSE records.updated_at END,
     change_seq = CASE WHEN (NOT COALESCE(excluded.modified_at_ms < records.modified_at_ms, FALSE) AND ((records.json IS DISTINCT FROM excluded.json AND records.pruned_at IS NULL) OR records.modified_at IS DISTINCT FROM excluded.modified_at OR records.deleted_at IS NOT NULL)) THEN excluded.change_seq ELSE records.change_seq END,
     changed_at_ms = CASE WHEN (NOT COALESCE(excluded.modified_at_ms < records.modified_at_ms, FALSE) AND ((records.json IS DISTINCT FROM excluded.json AND records.pruned_at IS NULL) OR records.modified_at IS DISTINCT FROM excluded.modified_at OR records.deleted_at IS NOT NULL)) THEN excluded.changed_at_ms ELSE records.changed_at_ms END,
     last_action = CASE WHEN (NOT COALESCE(excluded.modified_at_ms < records.modified_at_ms, FALSE) AND ((records.json IS DISTINCT FROM excluded.json AND records.pruned_at IS NULL) OR records.modified_at IS DISTINCT FROM excluded.modified_at OR records.deleted_at IS NOT NULL)) THEN 'UPDATED' ELSE records.last_action END,
     json = CASE WHEN COALESCE(excluded.modified_at_ms < records.modified_at_ms, FALSE) THEN records.json ELSE excluded.json END,
     modified_at = CASE WHEN COALESCE(excluded.modified_at_ms < records.modified_at_ms, FALSE) THEN records.modified_at ELSE excluded.modified_at END,
     modified_at_ms = CASE WHEN COALESCE(excluded.modified_at_ms < records.modified_at_ms, FALSE) THEN records.modified_at_ms ELSE excluded.modified_at_ms END,
     deleted_at = CASE WHEN COALESCE(excluded.modified_at_ms < records.modified_at_ms, FALSE) THEN records.deleted_at ELSE NULL END,
     pruned_at = CASE WHEN COALESCE(excluded.modified_at_ms < records.modified_at_ms, FALSE) THEN records.pruned_at ELSE NULL END,
     seen_at_ms = excluded.seen_at_ms";

static UPSERT_ONE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO records (connection_id, model, id, json, modified_at, modified_at_ms, first_seen_at, updated_at,
                              seen_at_ms, change_seq, changed_at_ms, last_action)
         VALUES ($1, $2, $3, $4, $5, $9, $6, $6, $7, $8, $7, 'ADDED')
         ON CONFLICT (connection_id, model, id) DO UPDATE {}",
        RECORD_UPSERT_SET
    )
});

static UPSERT_PAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO records (connection_id, model, id, json, modified_at, modified_at_ms, first_seen_at, updated_at,
                              seen_at_ms, change_seq, changed_at_ms, last_action)
         SELECT $1, $2, page.id, page.json, page.modified_at, page.modified_at_ms, $6, $6, $7,
                nextval('record_changes'), $7, 'ADDED'
         FROM unnest($3::text[], $4::text[], $5::text[], $8::bigint[])
              WITH ORDINALITY AS page (id, json, modified_at, modified_at_ms, n)
         ORDER BY page.n
         ON CONFLICT (connection_id, model, id) DO UPDATE {}",
        RECORD_UPSERT_SET
    )
});

/// Changes of one (connection, model) commit one at a time on PostgreSQL,
/// in the order they took their numbers.
async fn lock_changes(tx: &mut dyn Tx, connection_id: &str, model: &str) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 7372659))",
        sql_params![connection_id, model],
    )
    .await?;
    Ok(())
}

/// Takes `n` numbers of SQLite's change counter; the first of them.
async fn next_changes(tx: &mut dyn Tx, n: usize) -> Result<i64, StoreError> {
    let rows = tx
        .query(
            "UPDATE counters SET value = value + $1 WHERE name = 'record_changes' RETURNING value",
            sql_params![n as i64],
        )
        .await?;
    let last = rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(n as i64);
    Ok(last - n as i64 + 1)
}

/// Upserts `records` in the caller's transaction. Unchanged records are
/// left alone, so `updated_at` means "changed".
pub async fn upsert_page(
    tx: &mut dyn Tx,
    connection_id: &str,
    model: &str,
    records: &[SyncRecord],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let (now, now_ms) = (unix_now() as i64, terapi_domain::clock::unix_ms() as i64);
    match tx.dialect() {
        Dialect::Sqlite => {
            // Each record takes a number (one that goes unused if it did not change).
            let first = next_changes(tx, records.len()).await?;
            for (i, record) in records.iter().enumerate() {
                tx.execute(
                    &UPSERT_ONE,
                    sql_params![
                        connection_id,
                        model,
                        &record.id,
                        &record.json,
                        record.modified_at.as_deref(),
                        now,
                        now_ms,
                        first + i as i64,
                        crate::modified_at_ms(record),
                    ],
                )
                .await?;
            }
        }
        Dialect::Postgres => {
            // One statement can touch a row once: of an id given twice, the last wins.
            let mut last: std::collections::HashMap<&str, &SyncRecord> = std::collections::HashMap::new();
            let mut order = Vec::with_capacity(records.len());
            for record in records {
                if last.insert(record.id.as_str(), record).is_none() {
                    order.push(record.id.as_str());
                }
            }
            let page: Vec<&SyncRecord> = order.iter().map(|id| last[id]).collect();
            let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
            let jsons: Vec<&str> = page.iter().map(|r| r.json.as_str()).collect();
            let modified: Vec<Option<&str>> = page.iter().map(|r| r.modified_at.as_deref()).collect();
            let modified_ms: Vec<Option<i64>> = page.iter().map(|r| crate::modified_at_ms(r)).collect();
            lock_changes(tx, connection_id, model).await?;
            tx.execute(
                &UPSERT_PAGE,
                &[
                    Param::Text(connection_id),
                    Param::Text(model),
                    Param::TextList(&ids),
                    Param::TextList(&jsons),
                    Param::OptTextList(&modified),
                    Param::Int(now),
                    Param::Int(now_ms),
                    Param::OptIntList(&modified_ms),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

pub async fn commit_page<S: SqlStore + ?Sized>(
    store: &S,
    lease: &SyncLease,
    model: &str,
    page: &SyncPage,
) -> Result<(), StoreError> {
    store
        .transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                commit_page_state(tx, lease, page.next_checkpoint.as_deref(), page.records.len()).await?;
                upsert_page(tx, &lease.connection_id, model, &page.records).await
            })
        }))
        .await
}

/// What this pass has not seen since it started.
const UNSEEN: &str = "connection_id = $1 AND model = $4 AND deleted_at IS NULL
     AND COALESCE(seen_at_ms, 0) < (SELECT pass_started_at_ms FROM sync_state
                                    WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3)";

pub async fn mark_unseen_deleted<S: SqlStore + ?Sized>(
    store: &S,
    lease: &SyncLease,
    model: &str,
) -> Result<u64, StoreError> {
    store
        .transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                let now = unix_now() as i64;
                let who = sql_params![&lease.connection_id, &lease.sync, &lease.owner, model];
                match tx.dialect() {
                    Dialect::Postgres => {
                        lock_changes(tx, &lease.connection_id, model).await?;
                        tx.execute(
                            &format!(
                                "UPDATE records SET deleted_at = $5, updated_at = $5, change_seq = nextval('record_changes'),
                                     changed_at_ms = {{now_ms}}, last_action = 'DELETED'
                                 WHERE {UNSEEN}"
                            ),
                            &[who[0], who[1], who[2], who[3], Param::Int(now)],
                        )
                        .await
                    }
                    Dialect::Sqlite => {
                        let gone = tx.query(&format!("SELECT rowid FROM records WHERE {UNSEEN}"), who).await?;
                        if gone.is_empty() {
                            return Ok(0);
                        }
                        let first = next_changes(tx, gone.len()).await?;
                        for (i, row) in gone.iter().enumerate() {
                            tx.execute(
                                "UPDATE records SET deleted_at = $2, updated_at = $2, change_seq = $3,
                                     changed_at_ms = {now_ms}, last_action = 'DELETED'
                                 WHERE rowid = $1",
                                sql_params![row.int(0)?, now, first + i as i64],
                            )
                            .await?;
                        }
                        Ok(gone.len() as u64)
                    }
                }
            })
        }))
        .await
}

fn cursor(text: &str, what: &str) -> Result<i64, StoreError> {
    text.parse().map_err(|_| StoreError::BadQuery(what.into()))
}

/// A JSON list given as `$n`, as rows of values.
fn json_values(dialect: Dialect, param: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("SELECT value FROM json_each({param})"),
        Dialect::Postgres => format!("SELECT jsonb_array_elements_text(CAST(CAST({param} AS TEXT) AS jsonb))"),
    }
}

fn listing(dialect: Dialect) -> String {
    format!(
        "SELECT change_seq, id, json, first_seen_at, updated_at, deleted_at, changed_at_ms, last_action, pruned_at
         FROM records
         WHERE connection_id = $1 AND model = $2 AND change_seq > $3
         AND (CAST($4 AS BIGINT) IS NULL OR changed_at_ms >= $4)
         AND ($6 OR deleted_at IS NULL)
         AND (CAST($7 AS TEXT) IS NULL OR last_action IN ({}))
         AND (CAST($8 AS TEXT) IS NULL OR id IN ({}))
         ORDER BY change_seq LIMIT $5",
        json_values(dialect, "$7"),
        json_values(dialect, "$8")
    )
}

static LISTING: LazyLock<[String; 2]> = LazyLock::new(|| [listing(Dialect::Sqlite), listing(Dialect::Postgres)]);

fn stored(mut r: Row) -> Result<StoredRecord, StoreError> {
    Ok(StoredRecord {
        cursor: r.int(0)?.to_string(),
        id: r.take_text(1)?,
        json: r.take_text(2)?,
        first_seen_at: r.uint(3)?,
        updated_at: r.uint(4)?,
        deleted_at: r.opt_uint(5)?,
        changed_at_ms: r.uint(6)?,
        last_action: LastAction::parse(&r.take_text(7)?).unwrap_or(LastAction::Added),
        pruned_at: r.opt_uint(8)?,
    })
}

#[async_trait::async_trait]
impl<S: SqlStore> RecordStore for S {
    async fn upsert_records(&self, connection_id: &str, model: &str, records: &[SyncRecord]) -> Result<(), StoreError> {
        self.transaction(Box::new(move |tx, _| Box::pin(upsert_page(tx, connection_id, model, records)))).await
    }

    async fn records(&self, query: &RecordQuery) -> Result<RecordPage, StoreError> {
        let after = match &query.cursor {
            Some(text) => cursor(text, "the cursor is not one this store handed out; start again without it")?,
            None => 0,
        };
        let list = |words: Vec<String>| (!words.is_empty()).then(|| serde_json::to_string(&words).unwrap_or_default());
        let actions = list(query.actions.iter().map(|a| a.as_str().to_string()).collect());
        let ids = list(query.ids.clone());
        let limit = query.limit.clamp(1, 10_000);
        let sql = match self.dialect() {
            Dialect::Sqlite => &LISTING[0],
            Dialect::Postgres => &LISTING[1],
        };
        let rows = self
            .query(
                sql,
                sql_params![
                    &query.connection_id,
                    &query.model,
                    after,
                    query.modified_after_ms.map(|t| t as i64),
                    limit + 1,
                    query.include_deleted,
                    actions.as_ref(),
                    ids.as_ref(),
                ],
            )
            .await?;
        let more = rows.len() > limit as usize;
        let records = rows.into_iter().take(limit as usize).map(stored).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = more.then(|| records.last().map(|r| r.cursor.clone())).flatten();
        Ok(RecordPage { records, next_cursor })
    }

    async fn prune_records(
        &self,
        connection_id: &str,
        model: &str,
        until_cursor: &str,
        limit: u32,
    ) -> Result<(u64, bool), StoreError> {
        let until = cursor(until_cursor, "`until_cursor` is not a cursor this store handed out (a record's cursor)")?;
        self.transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                if tx.dialect() == Dialect::Postgres {
                    lock_changes(tx, connection_id, model).await?;
                }
                let pruned = tx
                    .execute(
                        "UPDATE records SET json = '{}', pruned_at = $4
                         WHERE (connection_id, model, id) IN
                               (SELECT connection_id, model, id FROM records
                                WHERE connection_id = $1 AND model = $2 AND change_seq <= $3 AND pruned_at IS NULL
                                ORDER BY change_seq LIMIT $5)",
                        sql_params![connection_id, model, until, unix_now() as i64, limit.clamp(1, 10_000)],
                    )
                    .await?;
                let more = tx
                    .query(
                        "SELECT EXISTS (SELECT 1 FROM records
                                        WHERE connection_id = $1 AND model = $2 AND change_seq <= $3
                                          AND pruned_at IS NULL)",
                        sql_params![connection_id, model, until],
                    )
                    .await?;
                Ok((pruned, more.first().map(|r| r.boolean(0)).transpose()?.unwrap_or(false)))
            })
        }))
        .await
    }
}
