//! `ApiKeyStore`, once for both stores.

use super::SqlStore;
use crate::{ApiKeyInfo, ApiKeyStore, StoreError, sql_params, unix_now};

#[async_trait::async_trait]
impl<S: SqlStore> ApiKeyStore for S {
    async fn create_api_key(&self, sha256: &str, label: &str) -> Result<ApiKeyInfo, StoreError> {
        let info = ApiKeyInfo { id: crate::api_key_id(sha256), label: label.to_string(), created_at: unix_now() };
        self.execute(
            "INSERT INTO api_keys (sha256, id, label, created_at) VALUES ($1, $2, $3, $4)",
            sql_params![sha256, &info.id, &info.label, info.created_at as i64],
        )
        .await?;
        Ok(info)
    }

    async fn api_key_exists(&self, sha256: &str) -> Result<bool, StoreError> {
        Ok(!self.query("SELECT 1 FROM api_keys WHERE sha256 = $1", sql_params![sha256]).await?.is_empty())
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let rows = self.query("SELECT id, label, created_at FROM api_keys ORDER BY created_at, id", &[]).await?;
        rows.iter().map(|r| Ok(ApiKeyInfo { id: r.text(0)?, label: r.text(1)?, created_at: r.uint(2)? })).collect()
    }

    async fn api_key_sha256(&self, id: &str) -> Result<Option<String>, StoreError> {
        super::query_opt(self, "SELECT sha256 FROM api_keys WHERE id = $1", sql_params![id])
            .await?
            .map(|r| r.text(0))
            .transpose()
    }

    async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM api_keys WHERE id = $1", sql_params![id]).await? > 0)
    }
}
