//! `CoordinationStore`: coordination between the processes on one store: named locks and once-only claims.

use super::*;

#[async_trait::async_trait]
impl CoordinationStore for PostgresStore {
    async fn claim_once(&self, scope: &str, id: &str, keep_until_ms: u64) -> Result<bool, StoreError> {
        let now_ms = terapi_domain::clock::unix_ms() as i64;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        tx.execute(terapi_store::SQL_PRUNE_SEEN_ONCE, &[&scope, &now_ms]).await.map_err(|e| self.err(e))?;
        let new = tx
            .execute(terapi_store::SQL_CLAIM_ONCE, &[&scope, &id, &(keep_until_ms as i64)])
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(new == 1)
    }

    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now_ms = terapi_domain::clock::unix_ms() as i64;
        let client = self.client().await?;
        let taken = client
            .execute(terapi_store::SQL_TRY_LOCK, &[&name, &owner, &(now_ms + ttl.as_millis() as i64), &now_ms])
            .await
            .map_err(|e| self.err(e))?;
        Ok(taken == 1)
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.execute(terapi_store::SQL_UNLOCK, &[&name, &owner]).await.map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn live_locks(&self, prefix: &str) -> Result<u64, StoreError> {
        let now_ms = terapi_domain::clock::unix_ms() as i64;
        let pattern = terapi_store::like_prefix(prefix);
        let client = self.client().await?;
        let row = client
            .query_one(terapi_store::SQL_COUNT_LIVE_LOCKS, &[&pattern, &now_ms])
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}
