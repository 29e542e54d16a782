//! `SyncRunStore`: sync runs under a lease: begin, commit page by page, finish, take over; their state and history.

use super::*;

#[async_trait::async_trait]
impl SyncRunStore for SqliteStore {
    async fn begin_sync(&self, lease: &SyncLease, model: &str, full: bool) -> Result<Option<String>, StoreError> {
        crate::sql::sync_runs::begin_sync(self, lease, model, full).await
    }

    async fn commit_page(&self, lease: &SyncLease, model: &str, page: &SyncPage) -> Result<(), StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let held = tx
                .execute(
                    "UPDATE sync_state SET checkpoint = ?4, pages = pages + 1, lease_expires_at = ?5
                     WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3",
                    params![
                        lease.connection_id,
                        lease.sync,
                        lease.owner,
                        page.next_checkpoint,
                        now_ms + lease.ttl.as_millis() as i64
                    ],
                )
                .map_err(|e| self.err(e))?;
            if held == 0 {
                return Err(StoreError::LeaseLost {
                    connection: lease.connection_id.clone(),
                    sync: lease.sync.clone(),
                });
            }
            self.upsert_in(&tx, &lease.connection_id, model, &page.records)?;
            tx.execute(
                "UPDATE sync_runs SET pages = pages + 1, records = records + ?4, last_beat_ms = ?5
                 WHERE connection_id = ?1 AND sync = ?2 AND owner = ?3 AND finished_at_ms IS NULL",
                params![lease.connection_id, lease.sync, lease.owner, page.records.len() as i64, now_ms],
            )
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn finish_sync(
        &self,
        lease: &SyncLease,
        outcome: RunOutcome<'_>,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        crate::sql::sync_runs::finish_sync(self, lease, outcome, event).await
    }

    async fn expire_lease(&self, connection_id: &str, sync: &str, dead_owner: &str) -> Result<bool, StoreError> {
        crate::sql::sync_runs::expire_lease(self, connection_id, sync, dead_owner).await
    }

    async fn mark_unseen_deleted(&self, lease: &SyncLease, model: &str) -> Result<u64, StoreError> {
        self.blocking(|| {
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let gone: Vec<i64> = tx
                .prepare_cached(
                    "SELECT rowid FROM records
                     WHERE connection_id = ?1 AND model = ?4 AND deleted_at IS NULL
                       AND COALESCE(seen_at_ms, 0) < (SELECT pass_started_at_ms FROM sync_state
                                                      WHERE connection_id = ?1 AND sync = ?2 AND lease_owner = ?3)",
                )
                .and_then(|mut s| {
                    s.query_map(params![lease.connection_id, lease.sync, lease.owner, model], |r| r.get(0))?.collect()
                })
                .map_err(|e| self.err(e))?;
            if gone.is_empty() {
                return Ok(0);
            }
            let first = next_changes(&tx, gone.len()).map_err(|e| self.err(e))?;
            let (now, now_ms) = (unix_now() as i64, terapi_domain::clock::unix_ms() as i64);
            {
                let mut mark = tx
                    .prepare_cached(
                        "UPDATE records SET deleted_at = ?2, updated_at = ?2, change_seq = ?3, changed_at_ms = ?4,
                             last_action = 'DELETED'
                         WHERE rowid = ?1",
                    )
                    .map_err(|e| self.err(e))?;
                for (i, rowid) in gone.iter().enumerate() {
                    mark.execute(params![rowid, now, first + i as i64, now_ms]).map_err(|e| self.err(e))?;
                }
            }
            tx.commit().map_err(|e| self.err(e))?;
            Ok(gone.len() as u64)
        })
    }

    async fn unseen_records(&self, lease: &SyncLease, model: &str) -> Result<UnseenRecords, StoreError> {
        crate::sql::sync_runs::unseen_records(self, lease, model).await
    }

    async fn live_leases(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        crate::sql::sync_runs::live_leases(self).await
    }

    async fn renew_lease(&self, lease: &SyncLease) -> Result<(), StoreError> {
        crate::sql::sync_runs::renew_lease(self, lease).await
    }

    async fn sync_runs(&self, connection_id: &str) -> Result<Vec<SyncRunRecord>, StoreError> {
        crate::sql::sync_runs::sync_runs(self, connection_id).await
    }

    async fn sync_states(&self, connection_id: &str) -> Result<Vec<SyncState>, StoreError> {
        crate::sql::sync_runs::sync_states(self, connection_id).await
    }
}
