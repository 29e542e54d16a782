//! `ConnectSessionStore`, once for both stores.

use super::SqlStore;
use crate::{ConnectSession, ConnectSessionStore, StoreError, sql_params};

#[async_trait::async_trait]
impl<S: SqlStore> ConnectSessionStore for S {
    async fn create_connect_session(&self, session: &ConnectSession) -> Result<(), StoreError> {
        let allowed = serde_json::to_string(&session.allowed_integrations).unwrap_or_else(|_| "[]".into());
        self.transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                // Sessions live minutes; the expired ones are swept as new ones come.
                tx.execute("DELETE FROM connect_sessions WHERE expires_at_ms < {now_ms} - 86400000", &[]).await?;
                tx.execute(
                    "INSERT INTO connect_sessions
                         (token_sha256, end_user, allowed_integrations, expires_at_ms, connection_id, allowed_origin,
                          reconnect_connection_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    sql_params![
                        &session.token_sha256,
                        &session.owner,
                        &allowed,
                        session.expires_at_ms as i64,
                        session.connection_id.as_deref(),
                        session.allowed_origin.as_deref(),
                        session.reconnect_connection_id.as_deref(),
                    ],
                )
                .await?;
                Ok(())
            })
        }))
        .await
    }

    async fn connect_session(&self, token_sha256: &str) -> Result<Option<ConnectSession>, StoreError> {
        let row = super::query_opt(
            self,
            "SELECT end_user, allowed_integrations, expires_at_ms, connection_id, allowed_origin,
                    reconnect_connection_id
             FROM connect_sessions WHERE token_sha256 = $1",
            sql_params![token_sha256],
        )
        .await?;
        row.map(|r| {
            Ok(ConnectSession {
                token_sha256: token_sha256.to_string(),
                owner: r.text(0)?,
                allowed_integrations: serde_json::from_str(&r.text(1)?).unwrap_or_default(),
                expires_at_ms: r.uint(2)?,
                connection_id: r.opt_text(3)?,
                allowed_origin: r.opt_text(4)?,
                reconnect_connection_id: r.opt_text(5)?,
            })
        })
        .transpose()
    }

    async fn claim_connect_session(
        &self,
        token_sha256: &str,
        connection_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let changed = self
            .execute(
                "UPDATE connect_sessions SET connection_id = $2
                 WHERE token_sha256 = $1 AND connection_id IS NULL AND expires_at_ms >= $3",
                sql_params![token_sha256, connection_id, now_ms as i64],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn release_connect_session(&self, token_sha256: &str, connection_id: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE connect_sessions SET connection_id = NULL WHERE token_sha256 = $1 AND connection_id = $2",
            sql_params![token_sha256, connection_id],
        )
        .await?;
        Ok(())
    }
}
