//! `AsyncActionStore`: actions run in the background, and their results.

use super::*;

#[async_trait::async_trait]
impl AsyncActionStore for SqliteStore {
    async fn create_async_action(&self, action: &AsyncAction) -> Result<(), StoreError> {
        self.blocking(|| {
            self.db()
                .execute(
                    "INSERT INTO async_actions (id, connection_id, action, status, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![action.id, action.connection_id, action.action, action.status, action.created_at_ms as i64],
                )
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn finish_async_action(
        &self,
        id: &str,
        result: Result<&str, &str>,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        self.blocking(|| {
            let now_ms = terapi_domain::clock::unix_ms() as i64;
            let (status, output, error) = match result {
                Ok(output) => ("done", Some(output), None),
                Err(error) => ("failed", None, Some(error)),
            };
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            tx.execute(
                "UPDATE async_actions SET status = ?2, output = ?3, error = ?4, finished_at_ms = ?5
                 WHERE id = ?1 AND status = 'pending'",
                params![id, status, output, error, now_ms],
            )
            .map_err(|e| self.err(e))?;
            if let Some(event) = event {
                insert_event(&tx, event, now_ms, None, None).map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn async_action(&self, id: &str) -> Result<Option<AsyncAction>, StoreError> {
        self.blocking(|| {
            self.db()
                .query_row(
                    "SELECT id, connection_id, action, status, output, error, created_at_ms, finished_at_ms
                     FROM async_actions WHERE id = ?1",
                    [id],
                    |r| {
                        Ok(AsyncAction {
                            id: r.get(0)?,
                            connection_id: r.get(1)?,
                            action: r.get(2)?,
                            status: r.get(3)?,
                            output: r.get(4)?,
                            error: r.get(5)?,
                            created_at_ms: r.get::<_, i64>(6)? as u64,
                            finished_at_ms: r.get::<_, Option<i64>>(7)?.map(|t| t as u64),
                        })
                    },
                )
                .optional()
                .map_err(|e| self.err(e))
        })
    }
}
