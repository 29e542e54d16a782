//! `ConnectSessionStore`: connect sessions: the links an end user saves a connection through.

use super::*;

#[async_trait::async_trait]
impl ConnectSessionStore for PostgresStore {
    async fn create_connect_session(&self, session: &ConnectSession) -> Result<(), StoreError> {
        // Sessions live minutes; the expired ones are swept as new ones come.
        self.execute(&format!("DELETE FROM connect_sessions WHERE expires_at_ms < {NOW_MS} - 86400000"), &[]).await?;
        let allowed = serde_json::to_string(&session.allowed_integrations).unwrap_or_else(|_| "[]".into());
        self.execute(
            "INSERT INTO connect_sessions
                 (token_sha256, end_user, allowed_integrations, expires_at_ms, connection_id, allowed_origin,
                  reconnect_connection_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &session.token_sha256,
                &session.owner,
                &allowed,
                &(session.expires_at_ms as i64),
                &session.connection_id,
                &session.allowed_origin,
                &session.reconnect_connection_id,
            ],
        )
        .await?;
        Ok(())
    }

    async fn connect_session(&self, token_sha256: &str) -> Result<Option<ConnectSession>, StoreError> {
        let rows = self
            .query(
                "SELECT end_user, allowed_integrations, expires_at_ms, connection_id, allowed_origin,
                        reconnect_connection_id
                 FROM connect_sessions WHERE token_sha256 = $1",
                &[&token_sha256],
            )
            .await?;
        Ok(rows.first().map(|r| ConnectSession {
            token_sha256: token_sha256.to_string(),
            owner: r.get(0),
            allowed_integrations: serde_json::from_str(r.get::<_, &str>(1)).unwrap_or_default(),
            expires_at_ms: r.get::<_, i64>(2) as u64,
            connection_id: r.get(3),
            allowed_origin: r.get(4),
            reconnect_connection_id: r.get(5),
        }))
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
                &[&token_sha256, &connection_id, &(now_ms as i64)],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn release_connect_session(&self, token_sha256: &str, connection_id: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE connect_sessions SET connection_id = NULL WHERE token_sha256 = $1 AND connection_id = $2",
            &[&token_sha256, &connection_id],
        )
        .await?;
        Ok(())
    }
}
