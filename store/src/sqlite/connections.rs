//! `ConnectionStore`: connections and their sealed credentials, and the secrets derived from the master key.

use super::*;

#[async_trait::async_trait]
impl ConnectionStore for SqliteStore {
    fn derived_secret(&self, purpose: &str) -> [u8; 32] {
        self.key.derive(purpose)
    }

    async fn create_connection(&self, connection: &Connection, event: Option<&NewEvent>) -> Result<(), StoreError> {
        self.blocking(|| {
            let now = unix_now();
            let sealed = self.key.seal_credentials(&connection.id, &connection.credentials);
            let config = serde_json::to_string(&connection.config).unwrap_or_else(|_| "{}".into());
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let inserted = tx
                .execute(
                    "INSERT INTO connections (id, provider, auth_mode, username, sealed_credentials, config, created_at, updated_at, verified_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7) ON CONFLICT (id) DO NOTHING",
                    params![
                        connection.id,
                        connection.provider,
                        auth_mode_name(&connection.credentials),
                        username(&connection.credentials),
                        sealed,
                        config,
                        now as i64
                    ],
                )
                .map_err(|e| self.err(e))?;
            if inserted == 0 {
                return Err(StoreError::ConnectionExists(connection.id.clone()));
            }
            if let Some(event) = event {
                insert_event(&tx, event, terapi_domain::clock::unix_ms() as i64, None, None).map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn rotate_credentials(
        &self,
        id: &str,
        credentials: &Credentials,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        self.blocking(|| {
            let sealed = self.key.seal_credentials(id, credentials);
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            let changed = tx
                .execute(
                    "UPDATE connections SET sealed_credentials = ?2, auth_mode = ?3, username = ?4, updated_at = ?5, verified_at = ?5 WHERE id = ?1",
                    params![id, sealed, auth_mode_name(credentials), username(credentials), unix_now() as i64],
                )
                .map_err(|e| self.err(e))?;
            if changed == 0 {
                return Err(StoreError::NoConnection(id.to_string()));
            }
            if let Some(event) = event {
                insert_event(&tx, event, terapi_domain::clock::unix_ms() as i64, None, None).map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn save_tokens(
        &self,
        id: &str,
        credentials: &Credentials,
        config: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.blocking(|| {
            let mut connection = self.read_connection(id)?;
            connection.config.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
            let merged = serde_json::to_string(&connection.config).unwrap_or_else(|_| "{}".into());
            let sealed = self.key.seal_credentials(id, credentials);
            let changed = self
                .db()
                .execute(
                    "UPDATE connections SET sealed_credentials = ?2, auth_mode = ?3, username = ?4, config = ?5,
                     updated_at = ?6, verified_at = ?6 WHERE id = ?1",
                    params![id, sealed, auth_mode_name(credentials), username(credentials), merged, unix_now() as i64],
                )
                .map_err(|e| self.err(e))?;
            if changed == 0 {
                return Err(StoreError::NoConnection(id.to_string()));
            }
            Ok(())
        })
    }

    async fn delete_connection(&self, id: &str) -> Result<(), StoreError> {
        self.blocking(|| {
            let mut db = self.db();
            let tx = db.transaction().map_err(|e| self.err(e))?;
            tx.execute("DELETE FROM records WHERE connection_id = ?1", [id]).map_err(|e| self.err(e))?;
            tx.execute("DELETE FROM sync_state WHERE connection_id = ?1", [id]).map_err(|e| self.err(e))?;
            tx.execute("DELETE FROM sync_runs WHERE connection_id = ?1", [id]).map_err(|e| self.err(e))?;
            let deleted = tx.execute("DELETE FROM connections WHERE id = ?1", [id]).map_err(|e| self.err(e))?;
            if deleted == 0 {
                return Err(StoreError::NoConnection(id.to_string()));
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }

    async fn connection(&self, id: &str) -> Result<Connection, StoreError> {
        self.blocking(|| self.read_connection(id))
    }

    async fn connections(&self) -> Result<Vec<ConnectionSummary>, StoreError> {
        self.blocking(|| self.summaries(None))
    }

    async fn connection_summary(&self, id: &str) -> Result<ConnectionSummary, StoreError> {
        self.blocking(|| self.summaries(Some(id))?.pop().ok_or_else(|| StoreError::NoConnection(id.to_string())))
    }

    async fn mark_verified(&self, id: &str) -> Result<(), StoreError> {
        self.blocking(|| {
            self.db()
                .execute("UPDATE connections SET verified_at = ?2 WHERE id = ?1", params![id, unix_now() as i64])
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn set_end_user(&self, id: &str, end_user: Option<&str>, tags: &str) -> Result<(), StoreError> {
        self.blocking(|| {
            let changed = self
                .db()
                .execute(
                    "UPDATE connections SET end_user = ?2, tags = ?3, updated_at = ?4 WHERE id = ?1",
                    params![id, end_user, tags, unix_now() as i64],
                )
                .map_err(|e| self.err(e))?;
            if changed == 0 {
                return Err(StoreError::NoConnection(id.to_string()));
            }
            Ok(())
        })
    }

    async fn set_metadata(&self, id: &str, metadata: Option<&str>) -> Result<(), StoreError> {
        self.blocking(|| {
            let changed = self
                .db()
                .execute(
                    "UPDATE connections SET metadata = ?2, updated_at = ?3 WHERE id = ?1",
                    params![id, metadata, unix_now() as i64],
                )
                .map_err(|e| self.err(e))?;
            if changed == 0 {
                return Err(StoreError::NoConnection(id.to_string()));
            }
            Ok(())
        })
    }
}
