//! `CoordinationStore`, once for both stores. Lock and claim expiries are
//! on the process clock, as the callers' `keep_until_ms` already is.

use std::time::Duration;

use super::SqlStore;
use crate::{CoordinationStore, StoreError, sql_params};

#[async_trait::async_trait]
impl<S: SqlStore> CoordinationStore for S {
    async fn claim_once(&self, scope: &str, id: &str, keep_until_ms: u64) -> Result<bool, StoreError> {
        let now_ms = terapi_domain::clock::unix_ms() as i64;
        self.transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                tx.execute("DELETE FROM seen_once WHERE scope = $1 AND expires_at_ms < $2", sql_params![scope, now_ms])
                    .await?;
                let new = tx
                    .execute(
                        "INSERT INTO seen_once (scope, id, expires_at_ms) VALUES ($1, $2, $3)
                         ON CONFLICT (scope, id) DO NOTHING",
                        sql_params![scope, id, keep_until_ms as i64],
                    )
                    .await?;
                Ok(new == 1)
            })
        }))
        .await
    }

    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now_ms = terapi_domain::clock::unix_ms() as i64;
        let taken = self
            .execute(
                "INSERT INTO locks (name, owner, expires_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at_ms = excluded.expires_at_ms
                 WHERE locks.expires_at_ms < $4 OR locks.owner = excluded.owner",
                sql_params![name, owner, now_ms + ttl.as_millis() as i64, now_ms],
            )
            .await?;
        Ok(taken == 1)
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM locks WHERE name = $1 AND owner = $2", sql_params![name, owner]).await?;
        Ok(())
    }

    async fn live_locks(&self, prefix: &str) -> Result<u64, StoreError> {
        let now_ms = terapi_domain::clock::unix_ms() as i64;
        let pattern = like_prefix(prefix);
        let rows = self
            .query(
                "SELECT COUNT(*) FROM locks WHERE name LIKE $1 ESCAPE '\\' AND expires_at_ms > $2",
                sql_params![&pattern, now_ms],
            )
            .await?;
        rows.first().map_or(Ok(0), |r| r.uint(0))
    }
}

/// A `LIKE … ESCAPE '\'` pattern for names starting with `prefix`.
fn like_prefix(prefix: &str) -> String {
    format!("{}%", prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}
