//! `ScheduleStore`: when syncs are due, and workers claiming them fairly across tenants.

use super::*;

#[async_trait::async_trait]
impl ScheduleStore for SqliteStore {
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
}
