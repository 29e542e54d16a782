//! `CoordinationStore`: coordination between the processes on one store: named locks and once-only claims.

use super::*;

#[async_trait::async_trait]
impl CoordinationStore for SqliteStore {
    async fn claim_once(&self, scope: &str, id: &str, keep_until_ms: u64) -> Result<bool, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            tx.execute(crate::SQL_PRUNE_SEEN_ONCE.replace('$', "?").as_str(), params![scope, now_ms])
                .map_err(|e| self.err(e))?;
            let new = tx
                .execute(crate::SQL_CLAIM_ONCE.replace('$', "?").as_str(), params![scope, id, keep_until_ms as i64])
                .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
            Ok(new == 1)
        })
    }

    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let taken = self
                .db()
                .execute(
                    crate::SQL_TRY_LOCK.replace('$', "?").as_str(),
                    params![name, owner, now_ms + ttl.as_millis() as i64, now_ms],
                )
                .map_err(|e| self.err(e))?;
            Ok(taken == 1)
        })
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.blocking(|| {
            self.db()
                .execute(crate::SQL_UNLOCK.replace('$', "?").as_str(), params![name, owner])
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn live_locks(&self, prefix: &str) -> Result<u64, StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let pattern = crate::like_prefix(prefix);
            self.db()
                .query_row(&crate::SQL_COUNT_LIVE_LOCKS.replace('$', "?"), params![pattern, now_ms], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(|e| self.err(e))
        })
    }
}
