//! `SyncRunStore`'s statements, once for both stores: leases, runs and
//! their state. Each store's `SyncRunStore` calls these; only what writes
//! records (a page, the deletions of a pass) stays in the store, because
//! the change order is numbered differently (a counter row on SQLite, a
//! sequence under an advisory lock on PostgreSQL). `{for_update}` locks
//! the sync's row on PostgreSQL; a SQLite transaction holds the write lock
//! from its start.

use super::{Row, SqlStore, Tx, insert_event};
use crate::sql::schedule::{CHANGES_SINCE, changes_from};
use crate::{
    NewEvent, RETRY_FAILED_AFTER_MS, RunOutcome, StoreError, SyncLease, SyncRunRecord, SyncState, UnseenRecords,
    sql_params,
};

fn ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub fn lease_lost(lease: &SyncLease) -> StoreError {
    StoreError::LeaseLost { connection: lease.connection_id.clone(), sync: lease.sync.clone() }
}

pub async fn begin_sync<S: SqlStore + ?Sized>(
    store: &S,
    lease: &SyncLease,
    model: &str,
    full: bool,
) -> Result<Option<String>, StoreError> {
    store
        .transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO sync_state (connection_id, sync, model, status) VALUES ($1, $2, $3, 'queued')
                     ON CONFLICT (connection_id, sync) DO NOTHING",
                    sql_params![&lease.connection_id, &lease.sync, model],
                )
                .await?;
                // The row, locked, so two runs deciding at once see each other.
                let rows = tx
                    .query(
                        "SELECT lease_owner, lease_expires_at, {now_ms} FROM sync_state
                         WHERE connection_id = $1 AND sync = $2 {for_update}",
                        sql_params![&lease.connection_id, &lease.sync],
                    )
                    .await?;
                let row = rows.first().ok_or_else(|| lease_lost(lease))?;
                let (owner, until, now) = (row.opt_text(0)?, row.opt_int(1)?, row.int(2)?);
                if lease.claimed && owner.as_deref() != Some(lease.owner.as_str()) {
                    return Err(lease_lost(lease));
                }
                if let (Some(owner), Some(until)) = (owner, until)
                    && owner != lease.owner
                    && until > now
                {
                    return Err(StoreError::SyncRunning {
                        connection: lease.connection_id.clone(),
                        sync: lease.sync.clone(),
                        owner,
                        until: crate::time::rfc3339((until / 1000) as u64),
                    });
                }
                let rows = tx
                    .query(
                        "UPDATE sync_state SET status = 'running', model = $3, last_started_at = CAST($4 AS BIGINT) / 1000,
                             last_error = NULL, lease_owner = $5, lease_expires_at = CAST($4 AS BIGINT) + CAST($6 AS BIGINT),
                             checkpoint = CASE WHEN $7 THEN NULL ELSE checkpoint END,
                             run_started_at_ms = CASE WHEN NOT $7 AND run_started_at_ms IS NOT NULL
                                                           AND status IN ('yielded', 'running', 'interrupted')
                                                      THEN run_started_at_ms ELSE CAST($4 AS BIGINT) END,
                             run_resumed = CASE WHEN NOT $7 AND run_started_at_ms IS NOT NULL
                                                     AND status IN ('yielded', 'running', 'interrupted')
                                                THEN run_resumed ELSE NOT $7 AND checkpoint IS NOT NULL END
                         WHERE connection_id = $1 AND sync = $2 RETURNING checkpoint",
                        sql_params![&lease.connection_id, &lease.sync, model, now, &lease.owner, ms(lease.ttl), full],
                    )
                    .await?;
                let checkpoint = rows.first().map(|r| r.opt_text(0)).transpose()?.flatten();
                tx.execute(
                    "INSERT INTO sync_runs (connection_id, sync, owner, started_at_ms, last_beat_ms, status)
                     VALUES ($1, $2, $3, $4, $4, 'running')",
                    sql_params![&lease.connection_id, &lease.sync, &lease.owner, now],
                )
                .await?;
                // A pass from the beginning starts now; a resumed one keeps its start.
                tx.execute(
                    "UPDATE sync_state SET pass_started_at_ms = $3
                     WHERE connection_id = $1 AND sync = $2 AND (checkpoint IS NULL OR pass_started_at_ms IS NULL)",
                    sql_params![&lease.connection_id, &lease.sync, now],
                )
                .await?;
                Ok(checkpoint)
            })
        }))
        .await
}

/// A page's bookkeeping in the caller's transaction: the checkpoint, the
/// lease renewed, the run's counts. `LeaseLost` if the lease is not held.
pub async fn commit_page_state(
    tx: &mut dyn Tx,
    lease: &SyncLease,
    next_checkpoint: Option<&str>,
    records: usize,
) -> Result<(), StoreError> {
    let held = tx
        .execute(
            "UPDATE sync_state SET checkpoint = $4, pages = pages + 1, lease_expires_at = {now_ms} + $5
             WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3",
            sql_params![&lease.connection_id, &lease.sync, &lease.owner, next_checkpoint, ms(lease.ttl)],
        )
        .await?;
    if held == 0 {
        return Err(lease_lost(lease));
    }
    tx.execute(
        "UPDATE sync_runs SET pages = pages + 1, records = records + $4, last_beat_ms = {now_ms}
         WHERE connection_id = $1 AND sync = $2 AND owner = $3 AND finished_at_ms IS NULL",
        sql_params![&lease.connection_id, &lease.sync, &lease.owner, records as i64],
    )
    .await?;
    Ok(())
}

pub async fn finish_sync<S: SqlStore + ?Sized>(
    store: &S,
    lease: &SyncLease,
    outcome: RunOutcome<'_>,
    event: Option<&NewEvent>,
) -> Result<(), StoreError> {
    let (status, error) = (outcome.status(), outcome.message());
    store
        .transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        "SELECT model, COALESCE(run_started_at_ms, {now_ms}), run_resumed FROM sync_state
                         WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3 {for_update}",
                        sql_params![&lease.connection_id, &lease.sync, &lease.owner],
                    )
                    .await?;
                let held = !rows.is_empty();
                if let (Some(event), Some(run)) = (event, rows.first()) {
                    let (model, started, resumed) = (run.text(0)?, run.int(1)?, run.boolean(2)?);
                    let changes = match outcome {
                        RunOutcome::Done | RunOutcome::Warned(_) => Some(changes_from(
                            &tx.query(CHANGES_SINCE, sql_params![&lease.connection_id, &model, started]).await?,
                        )?),
                        _ => None,
                    };
                    insert_event(tx, event, Some((started, resumed)), changes).await?;
                }
                tx.execute(
                    "UPDATE sync_state SET status = $4, last_error = $5, last_finished_at = {now_ms} / 1000,
                         lease_owner = NULL, lease_expires_at = NULL,
                         due_at = CASE WHEN paused AND $4 <> 'yielded' THEN NULL
                                       WHEN $4 = 'done' THEN {now_ms} + frequency_secs * 1000
                                       WHEN $4 = 'yielded' THEN {now_ms}
                                       WHEN due_at IS NULL AND frequency_secs IS NULL THEN NULL
                                       WHEN $4 = 'interrupted' THEN {now_ms}
                                       ELSE {now_ms} + CASE WHEN frequency_secs * 1000 < $6
                                                            THEN frequency_secs * 1000 ELSE $6 END END
                     WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3",
                    sql_params![
                        &lease.connection_id,
                        &lease.sync,
                        &lease.owner,
                        status,
                        error,
                        RETRY_FAILED_AFTER_MS as i64
                    ],
                )
                .await?;
                // A run that lost its lease (paused past it, and taken over)
                // ended, as far as anyone could tell, at its last sign of life.
                tx.execute(
                    "UPDATE sync_runs SET status = CASE WHEN $5 THEN $4 ELSE 'lost' END,
                         finished_at_ms = CASE WHEN $5 THEN {now_ms} ELSE last_beat_ms END,
                         last_beat_ms = CASE WHEN $5 THEN {now_ms} ELSE last_beat_ms END
                     WHERE connection_id = $1 AND sync = $2 AND owner = $3 AND finished_at_ms IS NULL",
                    sql_params![&lease.connection_id, &lease.sync, &lease.owner, status, held],
                )
                .await?;
                Ok(())
            })
        }))
        .await
}

pub async fn expire_lease<S: SqlStore + ?Sized>(
    store: &S,
    connection_id: &str,
    sync: &str,
    dead_owner: &str,
) -> Result<bool, StoreError> {
    let changed = store
        .execute(
            "UPDATE sync_state SET lease_expires_at = 0 WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3",
            sql_params![connection_id, sync, dead_owner],
        )
        .await?;
    Ok(changed == 1)
}

pub async fn unseen_records<S: SqlStore + ?Sized>(
    store: &S,
    lease: &SyncLease,
    model: &str,
) -> Result<UnseenRecords, StoreError> {
    let rows = store
        .query(
            "SELECT SUM(CASE WHEN COALESCE(seen_at_ms, 0) < (SELECT pass_started_at_ms FROM sync_state
                                  WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3) THEN 1 ELSE 0 END),
                    COUNT(*)
             FROM records WHERE connection_id = $1 AND model = $4 AND deleted_at IS NULL",
            sql_params![&lease.connection_id, &lease.sync, &lease.owner, model],
        )
        .await?;
    Ok(match rows.first() {
        Some(r) => UnseenRecords { unseen: r.opt_uint(0)?.unwrap_or(0), live: r.uint(1)? },
        None => UnseenRecords::default(),
    })
}

pub async fn renew_lease<S: SqlStore + ?Sized>(store: &S, lease: &SyncLease) -> Result<(), StoreError> {
    store
        .transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                let held = tx
                    .execute(
                        "UPDATE sync_state SET lease_expires_at = {now_ms} + $4
                         WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3",
                        sql_params![&lease.connection_id, &lease.sync, &lease.owner, ms(lease.ttl)],
                    )
                    .await?;
                if held == 0 {
                    return Err(lease_lost(lease));
                }
                tx.execute(
                    "UPDATE sync_runs SET last_beat_ms = {now_ms}
                     WHERE connection_id = $1 AND sync = $2 AND owner = $3 AND finished_at_ms IS NULL",
                    sql_params![&lease.connection_id, &lease.sync, &lease.owner],
                )
                .await?;
                Ok(())
            })
        }))
        .await
}

pub async fn live_leases<S: SqlStore + ?Sized>(store: &S) -> Result<Vec<(String, String, String)>, StoreError> {
    let rows = store
        .query(
            "SELECT connection_id, sync, lease_owner FROM sync_state
             WHERE lease_owner IS NOT NULL AND lease_expires_at > {now_ms}",
            &[],
        )
        .await?;
    rows.iter().map(|r| Ok((r.text(0)?, r.text(1)?, r.text(2)?))).collect()
}

pub async fn sync_states<S: SqlStore + ?Sized>(store: &S, connection_id: &str) -> Result<Vec<SyncState>, StoreError> {
    let rows = store
        .query(
            "SELECT s.sync, s.model, s.checkpoint,
                    CASE WHEN s.status = 'running' AND (s.lease_expires_at IS NULL OR s.lease_expires_at <= {now_ms})
                         THEN 'interrupted' ELSE s.status END,
                    s.pages, s.last_started_at, s.last_finished_at, s.last_error,
                    (SELECT COUNT(*) FROM records r WHERE r.connection_id = s.connection_id AND r.model = s.model
                                                      AND r.deleted_at IS NULL),
                    s.frequency_secs, s.paused, s.due_at
             FROM sync_state s WHERE s.connection_id = $1 ORDER BY s.sync",
            sql_params![connection_id],
        )
        .await?;
    rows.iter()
        .map(|r: &Row| {
            Ok(SyncState {
                connection_id: connection_id.to_string(),
                sync: r.text(0)?,
                model: r.text(1)?,
                checkpoint: r.opt_text(2)?,
                status: r.text(3)?,
                pages: r.uint(4)?,
                last_started_at: r.opt_uint(5)?,
                last_finished_at: r.opt_uint(6)?,
                last_error: r.opt_text(7)?,
                records: r.uint(8)?,
                frequency_secs: r.opt_uint(9)?,
                paused: r.boolean(10)?,
                due_at_ms: r.opt_uint(11)?,
            })
        })
        .collect()
}

pub async fn sync_runs<S: SqlStore + ?Sized>(store: &S, connection_id: &str) -> Result<Vec<SyncRunRecord>, StoreError> {
    let rows = store
        .query(
            "SELECT connection_id, sync, owner, started_at_ms, last_beat_ms, finished_at_ms, status, pages, records
             FROM sync_runs WHERE connection_id = $1 ORDER BY id",
            sql_params![connection_id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SyncRunRecord {
                connection_id: r.text(0)?,
                sync: r.text(1)?,
                owner: r.text(2)?,
                started_at_ms: r.uint(3)?,
                last_beat_ms: r.uint(4)?,
                finished_at_ms: r.opt_uint(5)?,
                status: r.text(6)?,
                pages: r.uint(7)?,
                records: r.uint(8)?,
            })
        })
        .collect()
}

#[async_trait::async_trait]
impl<S: SqlStore> crate::SyncRunStore for S {
    async fn begin_sync(&self, lease: &SyncLease, model: &str, full: bool) -> Result<Option<String>, StoreError> {
        begin_sync(self, lease, model, full).await
    }

    async fn commit_page(
        &self,
        lease: &SyncLease,
        model: &str,
        page: &terapi_domain::SyncPage,
    ) -> Result<(), StoreError> {
        super::records::commit_page(self, lease, model, page).await
    }

    async fn finish_sync(
        &self,
        lease: &SyncLease,
        outcome: RunOutcome<'_>,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        finish_sync(self, lease, outcome, event).await
    }

    async fn expire_lease(&self, connection_id: &str, sync: &str, dead_owner: &str) -> Result<bool, StoreError> {
        expire_lease(self, connection_id, sync, dead_owner).await
    }

    async fn mark_unseen_deleted(&self, lease: &SyncLease, model: &str) -> Result<u64, StoreError> {
        super::records::mark_unseen_deleted(self, lease, model).await
    }

    async fn unseen_records(&self, lease: &SyncLease, model: &str) -> Result<UnseenRecords, StoreError> {
        unseen_records(self, lease, model).await
    }

    async fn renew_lease(&self, lease: &SyncLease) -> Result<(), StoreError> {
        renew_lease(self, lease).await
    }

    async fn live_leases(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        live_leases(self).await
    }

    async fn sync_states(&self, connection_id: &str) -> Result<Vec<SyncState>, StoreError> {
        sync_states(self, connection_id).await
    }

    async fn sync_runs(&self, connection_id: &str) -> Result<Vec<SyncRunRecord>, StoreError> {
        sync_runs(self, connection_id).await
    }
}
