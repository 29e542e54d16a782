//! `SyncRunStore`: sync runs under a lease: begin, commit page by page, finish, take over; their state and history.

use super::*;

#[async_trait::async_trait]
impl SyncRunStore for PostgresStore {
    async fn begin_sync(&self, lease: &SyncLease, model: &str, full: bool) -> Result<Option<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        // The row, locked, so two runs deciding at once see each other.
        tx.execute(
            "INSERT INTO sync_state (connection_id, sync, model, status) VALUES ($1, $2, $3, 'queued')
             ON CONFLICT (connection_id, sync) DO NOTHING",
            &[&lease.connection_id, &lease.sync, &model],
        )
        .await
        .map_err(|e| self.err(e))?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT lease_owner, lease_expires_at, {NOW_MS} FROM sync_state
                     WHERE connection_id = $1 AND sync = $2 FOR UPDATE"
                ),
                &[&lease.connection_id, &lease.sync],
            )
            .await
            .map_err(|e| self.err(e))?;
        let (owner, until, now): (Option<String>, Option<i64>, i64) = (row.get(0), row.get(1), row.get(2));
        if lease.claimed && owner.as_deref() != Some(lease.owner.as_str()) {
            return Err(Self::lease_lost(lease));
        }
        if let (Some(owner), Some(until)) = (owner, until)
            && owner != lease.owner
            && until > now
        {
            return Err(StoreError::SyncRunning {
                connection: lease.connection_id.clone(),
                sync: lease.sync.clone(),
                owner,
                until: terapi_store::time::rfc3339((until / 1000) as u64),
            });
        }
        let checkpoint: Option<String> = tx
            .query_one(
                "UPDATE sync_state SET status = 'running', model = $3, last_started_at = $4::bigint / 1000,
                     last_error = NULL, lease_owner = $5, lease_expires_at = $4::bigint + $6::bigint,
                     checkpoint = CASE WHEN $7 THEN NULL ELSE checkpoint END,
                     run_started_at_ms = CASE WHEN NOT $7 AND run_started_at_ms IS NOT NULL
                                                   AND status IN ('yielded', 'running', 'interrupted')
                                              THEN run_started_at_ms ELSE $4::bigint END,
                     run_resumed = CASE WHEN NOT $7 AND run_started_at_ms IS NOT NULL
                                             AND status IN ('yielded', 'running', 'interrupted')
                                        THEN run_resumed ELSE NOT $7 AND checkpoint IS NOT NULL END
                 WHERE connection_id = $1 AND sync = $2 RETURNING checkpoint",
                &[&lease.connection_id, &lease.sync, &model, &now, &lease.owner, &ms(lease.ttl), &full],
            )
            .await
            .map_err(|e| self.err(e))?
            .get(0);
        tx.execute(
            "INSERT INTO sync_runs (connection_id, sync, owner, started_at_ms, last_beat_ms, status)
             VALUES ($1, $2, $3, $4, $4, 'running')",
            &[&lease.connection_id, &lease.sync, &lease.owner, &now],
        )
        .await
        .map_err(|e| self.err(e))?;
        // A pass from the beginning starts now; a resumed one keeps its start.
        tx.execute(
            "UPDATE sync_state SET pass_started_at_ms = $3
             WHERE connection_id = $1 AND sync = $2 AND (checkpoint IS NULL OR pass_started_at_ms IS NULL)",
            &[&lease.connection_id, &lease.sync, &now],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(checkpoint)
    }

    async fn commit_page(&self, lease: &SyncLease, model: &str, page: &SyncPage) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let held = tx
            .execute(
                &format!(
                    "UPDATE sync_state SET checkpoint = $4, pages = pages + 1, lease_expires_at = {NOW_MS} + $5
                     WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3"
                ),
                &[&lease.connection_id, &lease.sync, &lease.owner, &page.next_checkpoint, &ms(lease.ttl)],
            )
            .await
            .map_err(|e| self.err(e))?;
        if held == 0 {
            return Err(Self::lease_lost(lease));
        }
        upsert_records(&tx, &lease.connection_id, model, &page.records).await.map_err(|e| self.err(e))?;
        tx.execute(
            &format!(
                "UPDATE sync_runs SET pages = pages + 1, records = records + $4, last_beat_ms = {NOW_MS}
                 WHERE connection_id = $1 AND sync = $2 AND owner = $3 AND finished_at_ms IS NULL"
            ),
            &[&lease.connection_id, &lease.sync, &lease.owner, &(page.records.len() as i64)],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn finish_sync(
        &self,
        lease: &SyncLease,
        outcome: RunOutcome<'_>,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        let (status, error) = (outcome.status(), outcome.message());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let run = tx
            .query_opt(
                &format!(
                    "SELECT model, COALESCE(run_started_at_ms, {NOW_MS}), run_resumed FROM sync_state
                     WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3 FOR UPDATE"
                ),
                &[&lease.connection_id, &lease.sync, &lease.owner],
            )
            .await
            .map_err(|e| self.err(e))?;
        let held = run.is_some();
        if let (Some(event), Some(run)) = (event, run) {
            let (model, started, resumed): (String, i64, bool) = (run.get(0), run.get(1), run.get(2));
            let changes = match outcome {
                RunOutcome::Done | RunOutcome::Warned(_) => {
                    Some(changes_since(&tx, &lease.connection_id, &model, started).await.map_err(|e| self.err(e))?)
                }
                _ => None,
            };
            insert_event(&tx, event, Some((started, resumed)), changes).await.map_err(|e| self.err(e))?;
        }
        tx.execute(
            &format!(
                "UPDATE sync_state SET status = $4, last_error = $5, last_finished_at = {NOW_MS} / 1000,
                     lease_owner = NULL, lease_expires_at = NULL,
                     due_at = CASE WHEN paused AND $4 <> 'yielded' THEN NULL
                                   WHEN $4 = 'done' THEN {NOW_MS} + frequency_secs * 1000
                                   WHEN $4 = 'yielded' THEN {NOW_MS}
                                   WHEN due_at IS NULL AND frequency_secs IS NULL THEN NULL
                                   WHEN $4 = 'interrupted' THEN {NOW_MS}
                                   ELSE {NOW_MS} + LEAST($6, COALESCE(frequency_secs * 1000, $6)) END
                 WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3"
            ),
            &[&lease.connection_id, &lease.sync, &lease.owner, &status, &error, &(RETRY_FAILED_AFTER_MS as i64)],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.execute(
            &format!(
                "UPDATE sync_runs SET status = CASE WHEN $5 THEN $4 ELSE 'lost' END,
                     finished_at_ms = CASE WHEN $5 THEN {NOW_MS} ELSE last_beat_ms END,
                     last_beat_ms = CASE WHEN $5 THEN {NOW_MS} ELSE last_beat_ms END
                 WHERE connection_id = $1 AND sync = $2 AND owner = $3 AND finished_at_ms IS NULL"
            ),
            &[&lease.connection_id, &lease.sync, &lease.owner, &status, &held],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn expire_lease(&self, connection_id: &str, sync: &str, dead_owner: &str) -> Result<bool, StoreError> {
        let changed = self
            .execute(
                "UPDATE sync_state SET lease_expires_at = 0 WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3",
                &[&connection_id, &sync, &dead_owner],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn mark_unseen_deleted(&self, lease: &SyncLease, model: &str) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        lock_changes(&tx, &lease.connection_id, model).await.map_err(|e| self.err(e))?;
        let marked = tx
            .execute(
                &format!(
                    "UPDATE records SET deleted_at = $5, updated_at = $5, change_seq = nextval('record_changes'),
                         changed_at_ms = {NOW_MS}, last_action = 'DELETED'
                     WHERE connection_id = $1 AND model = $4 AND deleted_at IS NULL
                       AND COALESCE(seen_at_ms, 0) < (SELECT pass_started_at_ms FROM sync_state
                                                      WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3)"
                ),
                &[&lease.connection_id, &lease.sync, &lease.owner, &model, &(unix_now() as i64)],
            )
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(marked)
    }

    async fn unseen_records(&self, lease: &SyncLease, model: &str) -> Result<UnseenRecords, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT SUM(CASE WHEN COALESCE(seen_at_ms, 0) < (SELECT pass_started_at_ms FROM sync_state
                                      WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3) THEN 1 ELSE 0 END),
                        COUNT(*)
                 FROM records WHERE connection_id = $1 AND model = $4 AND deleted_at IS NULL",
                &[&lease.connection_id, &lease.sync, &lease.owner, &model],
            )
            .await
            .map_err(|e| self.err(e))?;
        let unseen: Option<i64> = row.get(0);
        let live: i64 = row.get(1);
        Ok(UnseenRecords { unseen: unseen.unwrap_or(0) as u64, live: live as u64 })
    }

    async fn live_leases(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let now_ms = terapi_domain::clock::unix_ms() as i64;
        let client = self.client().await?;
        let rows = client.query(terapi_store::SQL_LIVE_LEASES, &[&now_ms]).await.map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    async fn renew_lease(&self, lease: &SyncLease) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let held = tx
            .execute(
                &format!(
                    "UPDATE sync_state SET lease_expires_at = {NOW_MS} + $4
                     WHERE connection_id = $1 AND sync = $2 AND lease_owner = $3"
                ),
                &[&lease.connection_id, &lease.sync, &lease.owner, &ms(lease.ttl)],
            )
            .await
            .map_err(|e| self.err(e))?;
        if held == 0 {
            return Err(Self::lease_lost(lease));
        }
        tx.execute(
            &format!(
                "UPDATE sync_runs SET last_beat_ms = {NOW_MS}
                 WHERE connection_id = $1 AND sync = $2 AND owner = $3 AND finished_at_ms IS NULL"
            ),
            &[&lease.connection_id, &lease.sync, &lease.owner],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn sync_states(&self, connection_id: &str) -> Result<Vec<SyncState>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT s.sync, s.model, s.checkpoint,
                            CASE WHEN s.status = 'running' AND (s.lease_expires_at IS NULL OR s.lease_expires_at <= {NOW_MS})
                                 THEN 'interrupted' ELSE s.status END,
                            s.pages, s.last_started_at, s.last_finished_at, s.last_error,
                            (SELECT COUNT(*) FROM records r WHERE r.connection_id = s.connection_id AND r.model = s.model
                                                              AND r.deleted_at IS NULL),
                            s.frequency_secs, s.paused, s.due_at
                     FROM sync_state s WHERE s.connection_id = $1 ORDER BY s.sync"
                ),
                &[&connection_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SyncState {
                connection_id: connection_id.to_string(),
                sync: r.get(0),
                model: r.get(1),
                checkpoint: r.get(2),
                status: r.get(3),
                pages: r.get::<_, i64>(4) as u64,
                last_started_at: r.get::<_, Option<i64>>(5).map(|t| t as u64),
                last_finished_at: r.get::<_, Option<i64>>(6).map(|t| t as u64),
                last_error: r.get(7),
                records: r.get::<_, i64>(8) as u64,
                frequency_secs: r.get::<_, Option<i64>>(9).map(|t| t as u64),
                paused: r.get(10),
                due_at_ms: r.get::<_, Option<i64>>(11).map(|t| t as u64),
            })
            .collect())
    }

    async fn sync_runs(&self, connection_id: &str) -> Result<Vec<SyncRunRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT connection_id, sync, owner, started_at_ms, last_beat_ms, finished_at_ms, status, pages, records
                 FROM sync_runs WHERE connection_id = $1 ORDER BY id",
                &[&connection_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SyncRunRecord {
                connection_id: r.get(0),
                sync: r.get(1),
                owner: r.get(2),
                started_at_ms: r.get::<_, i64>(3) as u64,
                last_beat_ms: r.get::<_, i64>(4) as u64,
                finished_at_ms: r.get::<_, Option<i64>>(5).map(|t| t as u64),
                status: r.get(6),
                pages: r.get::<_, i64>(7) as u64,
                records: r.get::<_, i64>(8) as u64,
            })
            .collect())
    }
}
