//! `ConnectionStore`, once for both stores. Credentials are sealed with the
//! master key before they reach either database.

use std::collections::BTreeMap;

use terapi_domain::{Connection, Credentials};

use super::{Row, SqlStore, Tx, insert_event};
use crate::{ConnectionStore, ConnectionSummary, NewEvent, StoreError, auth_mode_name, sql_params, unix_now, username};

fn summary(r: &Row) -> Result<ConnectionSummary, StoreError> {
    let json = |i: usize| -> Result<Option<serde_json::Value>, StoreError> {
        Ok(r.opt_text(i)?.and_then(|t| serde_json::from_str(&t).ok()))
    };
    Ok(ConnectionSummary {
        id: r.text(0)?,
        provider: r.text(1)?,
        auth_mode: r.text(2)?,
        username: r.opt_text(3)?,
        config: serde_json::from_str(&r.text(4)?).unwrap_or_default(),
        created_at: r.uint(5)?,
        updated_at: r.uint(6)?,
        verified_at: r.opt_uint(7)?,
        end_user: json(8)?,
        tags: r.opt_text(9)?.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default(),
        metadata: json(10)?,
    })
}

macro_rules! summaries {
    ($where:literal) => {
        concat!(
            "SELECT id, provider, auth_mode, username, config, created_at, updated_at, verified_at, end_user, tags, \
             metadata FROM connections ",
            $where
        )
    };
}

fn no_connection_unless(changed: u64, id: &str) -> Result<(), StoreError> {
    if changed == 0 { Err(StoreError::NoConnection(id.to_string())) } else { Ok(()) }
}

async fn read_config(tx: &mut dyn Tx, id: &str) -> Result<BTreeMap<String, String>, StoreError> {
    let rows = tx.query("SELECT config FROM connections WHERE id = $1", sql_params![id]).await?;
    let row = rows.first().ok_or_else(|| StoreError::NoConnection(id.to_string()))?;
    serde_json::from_str(&row.text(0)?).map_err(|e| StoreError::Corrupt { id: id.to_string(), message: e.to_string() })
}

#[async_trait::async_trait]
impl<S: SqlStore> ConnectionStore for S {
    fn derived_secret(&self, purpose: &str) -> [u8; 32] {
        self.master_key().derive(purpose)
    }

    async fn create_connection(&self, connection: &Connection, event: Option<&NewEvent>) -> Result<(), StoreError> {
        let now = unix_now() as i64;
        let sealed = self.master_key().seal_credentials(&connection.id, &connection.credentials);
        let config = serde_json::to_string(&connection.config).unwrap_or_else(|_| "{}".into());
        self.transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                let inserted = tx
                    .execute(
                        "INSERT INTO connections (id, provider, auth_mode, username, sealed_credentials, config,
                                                  created_at, updated_at, verified_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7) ON CONFLICT (id) DO NOTHING",
                        sql_params![
                            &connection.id,
                            &connection.provider,
                            auth_mode_name(&connection.credentials),
                            username(&connection.credentials),
                            sealed.as_slice(),
                            &config,
                            now,
                        ],
                    )
                    .await?;
                if inserted == 0 {
                    return Err(StoreError::ConnectionExists(connection.id.clone()));
                }
                if let Some(event) = event {
                    insert_event(tx, event, None, None).await?;
                }
                Ok(())
            })
        }))
        .await
    }

    async fn rotate_credentials(
        &self,
        id: &str,
        credentials: &Credentials,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        let sealed = self.master_key().seal_credentials(id, credentials);
        self.transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                let changed = tx
                    .execute(
                        "UPDATE connections SET sealed_credentials = $2, auth_mode = $3, username = $4,
                             updated_at = $5, verified_at = $5
                         WHERE id = $1",
                        sql_params![
                            id,
                            sealed.as_slice(),
                            auth_mode_name(credentials),
                            username(credentials),
                            unix_now() as i64
                        ],
                    )
                    .await?;
                no_connection_unless(changed, id)?;
                if let Some(event) = event {
                    insert_event(tx, event, None, None).await?;
                }
                Ok(())
            })
        }))
        .await
    }

    async fn save_tokens(
        &self,
        id: &str,
        credentials: &Credentials,
        config: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let sealed = self.master_key().seal_credentials(id, credentials);
        // Read and merge in one transaction: a concurrent config change is
        // never lost to a refresh.
        self.transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                let mut merged = read_config(tx, id).await?;
                merged.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
                let merged = serde_json::to_string(&merged).unwrap_or_else(|_| "{}".into());
                let changed = tx
                    .execute(
                        "UPDATE connections SET sealed_credentials = $2, auth_mode = $3, username = $4, config = $5,
                             updated_at = $6, verified_at = $6
                         WHERE id = $1",
                        sql_params![
                            id,
                            sealed.as_slice(),
                            auth_mode_name(credentials),
                            username(credentials),
                            &merged,
                            unix_now() as i64
                        ],
                    )
                    .await?;
                no_connection_unless(changed, id)
            })
        }))
        .await
    }

    async fn delete_connection(&self, id: &str) -> Result<(), StoreError> {
        // PostgreSQL's foreign keys cascade; SQLite's schema predates them,
        // so its state is deleted by name. The same statements suit both.
        self.transaction(Box::new(move |tx, _| {
            Box::pin(async move {
                for table in ["records", "sync_state", "sync_runs"] {
                    tx.execute(&format!("DELETE FROM {table} WHERE connection_id = $1"), sql_params![id]).await?;
                }
                let deleted = tx.execute("DELETE FROM connections WHERE id = $1", sql_params![id]).await?;
                no_connection_unless(deleted, id)
            })
        }))
        .await
    }

    async fn connection(&self, id: &str) -> Result<Connection, StoreError> {
        let rows = self
            .query("SELECT provider, sealed_credentials, config FROM connections WHERE id = $1", sql_params![id])
            .await?;
        let row = rows.first().ok_or_else(|| StoreError::NoConnection(id.to_string()))?;
        let credentials = self.master_key().open_credentials(id, &row.bytes(1)?)?;
        let config = serde_json::from_str(&row.text(2)?)
            .map_err(|e| StoreError::Corrupt { id: id.to_string(), message: e.to_string() })?;
        Ok(Connection { id: id.to_string(), provider: row.text(0)?, credentials, config })
    }

    async fn connections(&self) -> Result<Vec<ConnectionSummary>, StoreError> {
        let rows = self.query(summaries!("ORDER BY id"), &[]).await?;
        rows.iter().map(summary).collect()
    }

    async fn connection_summary(&self, id: &str) -> Result<ConnectionSummary, StoreError> {
        let rows = self.query(summaries!("WHERE id = $1"), sql_params![id]).await?;
        rows.first().map(summary).transpose()?.ok_or_else(|| StoreError::NoConnection(id.to_string()))
    }

    async fn mark_verified(&self, id: &str) -> Result<(), StoreError> {
        self.execute("UPDATE connections SET verified_at = $2 WHERE id = $1", sql_params![id, unix_now() as i64])
            .await?;
        Ok(())
    }

    async fn set_end_user(&self, id: &str, end_user: Option<&str>, tags: &str) -> Result<(), StoreError> {
        let changed = self
            .execute(
                "UPDATE connections SET end_user = $2, tags = $3, updated_at = $4 WHERE id = $1",
                sql_params![id, end_user, tags, unix_now() as i64],
            )
            .await?;
        no_connection_unless(changed, id)
    }

    async fn set_metadata(&self, id: &str, metadata: Option<&str>) -> Result<(), StoreError> {
        let changed = self
            .execute(
                "UPDATE connections SET metadata = $2, updated_at = $3 WHERE id = $1",
                sql_params![id, metadata, unix_now() as i64],
            )
            .await?;
        no_connection_unless(changed, id)
    }
}
