//! `SyncRunStore`: sync runs under a lease: begin, commit page by page, finish, take over; their state and history.

use super::*;

#[async_trait::async_trait]
impl SyncRunStore for PostgresStore {
    async fn begin_sync(&self, lease: &SyncLease, model: &str, full: bool) -> Result<Option<String>, StoreError> {
        terapi_store::sql::sync_runs::begin_sync(self, lease, model, full).await
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
        terapi_store::sql::sync_runs::finish_sync(self, lease, outcome, event).await
    }

    async fn expire_lease(&self, connection_id: &str, sync: &str, dead_owner: &str) -> Result<bool, StoreError> {
        terapi_store::sql::sync_runs::expire_lease(self, connection_id, sync, dead_owner).await
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
        terapi_store::sql::sync_runs::unseen_records(self, lease, model).await
    }

    async fn live_leases(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        terapi_store::sql::sync_runs::live_leases(self).await
    }

    async fn renew_lease(&self, lease: &SyncLease) -> Result<(), StoreError> {
        terapi_store::sql::sync_runs::renew_lease(self, lease).await
    }

    async fn sync_states(&self, connection_id: &str) -> Result<Vec<SyncState>, StoreError> {
        terapi_store::sql::sync_runs::sync_states(self, connection_id).await
    }

    async fn sync_runs(&self, connection_id: &str) -> Result<Vec<SyncRunRecord>, StoreError> {
        terapi_store::sql::sync_runs::sync_runs(self, connection_id).await
    }
}
