//! `AsyncActionStore`: actions run in the background, and their results.

use super::*;

#[async_trait::async_trait]
impl AsyncActionStore for PostgresStore {
    async fn create_async_action(&self, action: &AsyncAction) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO async_actions (id, connection_id, action, status, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
            &[&action.id, &action.connection_id, &action.action, &action.status, &(action.created_at_ms as i64)],
        )
        .await?;
        Ok(())
    }

    async fn finish_async_action(
        &self,
        id: &str,
        result: Result<&str, &str>,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        let (status, output, error) = match result {
            Ok(output) => ("done", Some(output), None),
            Err(error) => ("failed", None, Some(error)),
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        tx.execute(
            &format!(
                "UPDATE async_actions SET status = $2, output = $3, error = $4, finished_at_ms = {NOW_MS}
                 WHERE id = $1 AND status = 'pending'"
            ),
            &[&id, &status, &output, &error],
        )
        .await
        .map_err(|e| self.err(e))?;
        if let Some(event) = event {
            insert_event(&tx, event, None, None).await.map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn async_action(&self, id: &str) -> Result<Option<AsyncAction>, StoreError> {
        let rows = self
            .query(
                "SELECT id, connection_id, action, status, output, error, created_at_ms, finished_at_ms
                 FROM async_actions WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(rows.first().map(|r| AsyncAction {
            id: r.get(0),
            connection_id: r.get(1),
            action: r.get(2),
            status: r.get(3),
            output: r.get(4),
            error: r.get(5),
            created_at_ms: r.get::<_, i64>(6) as u64,
            finished_at_ms: r.get::<_, Option<i64>>(7).map(|t| t as u64),
        }))
    }
}
