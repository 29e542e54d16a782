//! `ApiKeyStore`: secret API keys for `terapi serve`, kept as SHA-256.

use super::*;

#[async_trait::async_trait]
impl ApiKeyStore for PostgresStore {
    async fn create_api_key(&self, sha256: &str, label: &str) -> Result<ApiKeyInfo, StoreError> {
        let info =
            ApiKeyInfo { id: terapi_store::api_key_id(sha256), label: label.to_string(), created_at: unix_now() };
        self.execute(
            "INSERT INTO api_keys (sha256, id, label, created_at) VALUES ($1, $2, $3, $4)",
            &[&sha256, &info.id, &info.label, &(info.created_at as i64)],
        )
        .await?;
        Ok(info)
    }

    async fn api_key_exists(&self, sha256: &str) -> Result<bool, StoreError> {
        Ok(!self.query("SELECT 1 FROM api_keys WHERE sha256 = $1", &[&sha256]).await?.is_empty())
    }

    async fn api_key_sha256(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.query("SELECT sha256 FROM api_keys WHERE id = $1", &[&id]).await?.first().map(|r| r.get(0)))
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let rows = self.query("SELECT id, label, created_at FROM api_keys ORDER BY created_at, id", &[]).await?;
        Ok(rows
            .iter()
            .map(|r| ApiKeyInfo { id: r.get(0), label: r.get(1), created_at: r.get::<_, i64>(2) as u64 })
            .collect())
    }

    async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM api_keys WHERE id = $1", &[&id]).await? > 0)
    }
}
