//! `AsyncActionStore`, once for both stores.

use super::{SqlStore, insert_event};
use crate::{AsyncAction, AsyncActionStore, NewEvent, StoreError, sql_params};

#[async_trait::async_trait]
impl<S: SqlStore> AsyncActionStore for S {
    async fn create_async_action(&self, action: &AsyncAction) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO async_actions (id, connection_id, action, status, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
            sql_params![&action.id, &action.connection_id, &action.action, &action.status, action.created_at_ms as i64],
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
        self.transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                tx.execute(
                    "UPDATE async_actions SET status = $2, output = $3, error = $4, finished_at_ms = {now_ms}
                     WHERE id = $1 AND status = 'pending'",
                    sql_params![id, status, output, error],
                )
                .await?;
                if let Some(event) = event {
                    insert_event(tx, event, None, None).await?;
                }
                Ok(())
            })
        }))
        .await
    }

    async fn async_action(&self, id: &str) -> Result<Option<AsyncAction>, StoreError> {
        let row = super::query_opt(
            self,
            "SELECT id, connection_id, action, status, output, error, created_at_ms, finished_at_ms
             FROM async_actions WHERE id = $1",
            sql_params![id],
        )
        .await?;
        row.map(|r| {
            Ok(AsyncAction {
                id: r.text(0)?,
                connection_id: r.text(1)?,
                action: r.text(2)?,
                status: r.text(3)?,
                output: r.opt_text(4)?,
                error: r.opt_text(5)?,
                created_at_ms: r.uint(6)?,
                finished_at_ms: r.opt_uint(7)?,
            })
        })
        .transpose()
    }
}
