//! `ScheduleStore`, once for both stores. The claim is the one statement
//! that differs: PostgreSQL's skips rows another worker is claiming (`FOR
//! UPDATE SKIP LOCKED`), so concurrent workers never take one sync twice;
//! SQLite has one writer at a time, so its plain statement is the claim.

use std::time::Duration;

use super::{Dialect, SqlStore};
use crate::{RecordChanges, ScheduleStore, StoreError, SyncQueue, TenantLoad, sql_params};

/// Due, and no live lease holds it.
const WAITING: &str = "due_at <= now.ms AND (lease_owner IS NULL OR lease_expires_at <= now.ms)";

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The counts [`CHANGES_SINCE`] reads.
pub(crate) fn changes_from(rows: &[super::Row]) -> Result<RecordChanges, StoreError> {
    let row = rows.first();
    Ok(RecordChanges {
        added: row.map_or(Ok(0), |r| r.uint(0))?,
        updated: row.map_or(Ok(0), |r| r.uint(1))?,
        deleted: row.map_or(Ok(0), |r| r.uint(2))?,
    })
}

/// How records of a model changed, by their last change: `$1` connection,
/// `$2` model, `$3` since (unix ms).
pub(crate) const CHANGES_SINCE: &str = "SELECT COUNT(*) FILTER (WHERE last_action = 'ADDED'),
            COUNT(*) FILTER (WHERE last_action = 'UPDATED'), COUNT(*) FILTER (WHERE last_action = 'DELETED')
     FROM records WHERE connection_id = $1 AND model = $2 AND changed_at_ms >= $3";

#[async_trait::async_trait]
impl<S: SqlStore> ScheduleStore for S {
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
             ON CONFLICT (connection_id, sync) DO UPDATE SET model = excluded.model, due_at = excluded.due_at,
                 checkpoint = CASE WHEN $5 THEN NULL ELSE sync_state.checkpoint END",
            sql_params![connection_id, sync, model, due_at_ms as i64, reset],
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
             ON CONFLICT (connection_id, sync) DO UPDATE SET model = excluded.model, due_at = excluded.due_at,
                 frequency_secs = excluded.frequency_secs, paused = excluded.paused",
            sql_params![connection_id, sync, model, due_at_ms.map(|t| t as i64), frequency_secs as i64, paused],
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
        changes_from(&self.query(CHANGES_SINCE, sql_params![connection_id, model, since_ms as i64]).await?)
    }

    async fn claim_due_sync(
        &self,
        owner: &str,
        ttl: Duration,
        skip_tenants: &[String],
    ) -> Result<Option<(String, String)>, StoreError> {
        let skip = serde_json::to_string(skip_tenants).unwrap_or_else(|_| "[]".into());
        let sql = match self.dialect() {
            Dialect::Postgres => format!(
                "WITH now AS (SELECT {{now_ms}} AS ms),
                 due AS (SELECT connection_id, sync FROM sync_state, now
                         WHERE {WAITING}
                           AND (tenant IS NULL OR tenant NOT IN (SELECT jsonb_array_elements_text(CAST(CAST($3 AS TEXT) AS jsonb))))
                         ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED)
                 UPDATE sync_state s SET lease_owner = $1, lease_expires_at = (SELECT ms FROM now) + $2
                 FROM due WHERE s.connection_id = due.connection_id AND s.sync = due.sync
                 RETURNING s.connection_id, s.sync"
            ),
            Dialect::Sqlite => format!(
                "WITH now AS (SELECT {{now_ms}} AS ms)
                 UPDATE sync_state SET lease_owner = $1, lease_expires_at = (SELECT ms FROM now) + $2
                 WHERE rowid = (SELECT rowid FROM sync_state, now
                                WHERE {WAITING}
                                  AND (tenant IS NULL OR tenant NOT IN (SELECT value FROM json_each($3)))
                                ORDER BY due_at LIMIT 1)
                 RETURNING connection_id, sync"
            ),
        };
        let rows = self.query(&sql, sql_params![owner, ms(ttl), &skip]).await?;
        rows.first().map(|r| Ok((r.text(0)?, r.text(1)?))).transpose()
    }

    async fn set_sync_tenant(&self, connection_id: &str, tenant: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE sync_state SET tenant = $2 WHERE connection_id = $1 AND tenant IS DISTINCT FROM $2",
            sql_params![connection_id, tenant],
        )
        .await?;
        Ok(())
    }

    async fn tenant_load(&self, backlog_ms: u64) -> Result<TenantLoad, StoreError> {
        let running = self
            .query(
                "SELECT tenant, COUNT(*) FROM sync_state
                 WHERE lease_owner IS NOT NULL AND lease_expires_at > {now_ms} AND tenant IS NOT NULL
                 GROUP BY tenant",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok((r.text(0)?, r.uint(1)? as u32)))
            .collect::<Result<_, StoreError>>()?;
        let busy = self
            .query("SELECT tenant FROM rate_budget WHERE tat_ms > {now_ms} + $1", sql_params![backlog_ms as i64])
            .await?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<_, _>>()?;
        let waiting = self
            .query(&format!("WITH now AS (SELECT {{now_ms}} AS ms) SELECT tenant, COUNT(*) FROM sync_state, now WHERE {WAITING} GROUP BY tenant"), &[])
            .await?
            .iter()
            .map(|r| Ok((r.opt_text(0)?, r.uint(1)? as u32)))
            .collect::<Result<_, StoreError>>()?;
        Ok(TenantLoad { running, busy, waiting })
    }

    async fn waiting_syncs(&self) -> Result<u64, StoreError> {
        let rows = self
            .query(
                &format!("WITH now AS (SELECT {{now_ms}} AS ms) SELECT COUNT(*) FROM sync_state, now WHERE {WAITING}"),
                &[],
            )
            .await?;
        rows.first().map_or(Ok(0), |r| r.uint(0))
    }

    async fn sync_queue(&self) -> Result<SyncQueue, StoreError> {
        let rows = self
            .query(
                &format!(
                    "WITH now AS (SELECT {{now_ms}} AS ms)
                     SELECT COUNT(*) FILTER (WHERE {WAITING}),
                            COUNT(*) FILTER (WHERE lease_owner IS NOT NULL AND lease_expires_at > now.ms),
                            COALESCE(now.ms - MIN(due_at) FILTER (WHERE {WAITING}), 0)
                     FROM sync_state, now GROUP BY now.ms"
                ),
                &[],
            )
            .await?;
        Ok(match rows.first() {
            Some(r) => SyncQueue { waiting: r.uint(0)?, running: r.uint(1)?, lag_ms: r.uint(2)? },
            None => SyncQueue::default(),
        })
    }

    async fn due_now(&self) -> Result<u64, StoreError> {
        let rows = self.query("SELECT COUNT(*) FROM sync_state WHERE due_at <= {now_ms}", &[]).await?;
        rows.first().map_or(Ok(0), |r| r.uint(0))
    }
}
