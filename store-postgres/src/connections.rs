//! `ConnectionStore`: connections and their sealed credentials, and the secrets derived from the master key.

use super::*;

#[async_trait::async_trait]
impl ConnectionStore for PostgresStore {
    fn derived_secret(&self, purpose: &str) -> [u8; 32] {
        self.key.derive(purpose)
    }

    async fn create_connection(&self, connection: &Connection, event: Option<&NewEvent>) -> Result<(), StoreError> {
        let now = unix_now() as i64;
        let sealed = self.key.seal_credentials(&connection.id, &connection.credentials);
        let config = serde_json::to_string(&connection.config).unwrap_or_else(|_| "{}".into());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let inserted = tx
            .execute(
                "INSERT INTO connections (id, provider, auth_mode, username, sealed_credentials, config, created_at, updated_at, verified_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7) ON CONFLICT (id) DO NOTHING",
                &[
                    &connection.id,
                    &connection.provider,
                    &auth_mode_name(&connection.credentials),
                    &username(&connection.credentials),
                    &sealed,
                    &config,
                    &now,
                ],
            )
            .await
            .map_err(|e| self.err(e))?;
        if inserted == 0 {
            return Err(StoreError::ConnectionExists(connection.id.clone()));
        }
        if let Some(event) = event {
            insert_event(&tx, event, None, None).await.map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn rotate_credentials(
        &self,
        id: &str,
        credentials: &Credentials,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        let sealed = self.key.seal_credentials(id, credentials);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let changed = tx
            .execute(
                "UPDATE connections SET sealed_credentials = $2, auth_mode = $3, username = $4, updated_at = $5, verified_at = $5
                 WHERE id = $1",
                &[&id, &sealed, &auth_mode_name(credentials), &username(credentials), &(unix_now() as i64)],
            )
            .await
            .map_err(|e| self.err(e))?;
        if changed == 0 {
            return Err(StoreError::NoConnection(id.to_string()));
        }
        if let Some(event) = event {
            insert_event(&tx, event, None, None).await.map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn save_tokens(
        &self,
        id: &str,
        credentials: &Credentials,
        config: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection(id).await?;
        connection.config.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
        let merged = serde_json::to_string(&connection.config).unwrap_or_else(|_| "{}".into());
        let sealed = self.key.seal_credentials(id, credentials);
        let changed = self
            .execute(
                "UPDATE connections SET sealed_credentials = $2, auth_mode = $3, username = $4, config = $5,
                 updated_at = $6, verified_at = $6 WHERE id = $1",
                &[&id, &sealed, &auth_mode_name(credentials), &username(credentials), &merged, &(unix_now() as i64)],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NoConnection(id.to_string()));
        }
        Ok(())
    }

    async fn delete_connection(&self, id: &str) -> Result<(), StoreError> {
        // Sync state, runs and records go with it (ON DELETE CASCADE).
        if self.execute("DELETE FROM connections WHERE id = $1", &[&id]).await? == 0 {
            return Err(StoreError::NoConnection(id.to_string()));
        }
        Ok(())
    }

    async fn connection(&self, id: &str) -> Result<Connection, StoreError> {
        let rows =
            self.query("SELECT provider, sealed_credentials, config FROM connections WHERE id = $1", &[&id]).await?;
        let row = rows.first().ok_or_else(|| StoreError::NoConnection(id.to_string()))?;
        let sealed: Vec<u8> = row.get(1);
        let credentials = self.key.open_credentials(id, &sealed)?;
        let config = serde_json::from_str(row.get::<_, &str>(2))
            .map_err(|e| StoreError::Corrupt { id: id.to_string(), message: e.to_string() })?;
        Ok(Connection { id: id.to_string(), provider: row.get(0), credentials, config })
    }

    async fn connections(&self) -> Result<Vec<ConnectionSummary>, StoreError> {
        self.summaries(None).await
    }

    async fn connection_summary(&self, id: &str) -> Result<ConnectionSummary, StoreError> {
        self.summaries(Some(id)).await?.pop().ok_or_else(|| StoreError::NoConnection(id.to_string()))
    }

    async fn mark_verified(&self, id: &str) -> Result<(), StoreError> {
        self.execute("UPDATE connections SET verified_at = $2 WHERE id = $1", &[&id, &(unix_now() as i64)]).await?;
        Ok(())
    }

    async fn set_end_user(&self, id: &str, end_user: Option<&str>, tags: &str) -> Result<(), StoreError> {
        let changed = self
            .execute(
                "UPDATE connections SET end_user = $2, tags = $3, updated_at = $4 WHERE id = $1",
                &[&id, &end_user, &tags, &(unix_now() as i64)],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NoConnection(id.to_string()));
        }
        Ok(())
    }

    async fn set_metadata(&self, id: &str, metadata: Option<&str>) -> Result<(), StoreError> {
        let changed = self
            .execute(
                "UPDATE connections SET metadata = $2, updated_at = $3 WHERE id = $1",
                &[&id, &metadata, &(unix_now() as i64)],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NoConnection(id.to_string()));
        }
        Ok(())
    }
}
