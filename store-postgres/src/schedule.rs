//! `ScheduleStore`: when syncs are due, and workers claiming them fairly across tenants.

use super::*;

#[async_trait::async_trait]
impl ScheduleStore for PostgresStore {
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
}
