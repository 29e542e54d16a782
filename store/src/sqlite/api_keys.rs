//! `ApiKeyStore`: secret API keys for `terapi serve`, kept as SHA-256.

use super::*;

#[async_trait::async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, sha256: &str, label: &str) -> Result<ApiKeyInfo, StoreError> {
        self.blocking(|| {
            let info = ApiKeyInfo { id: crate::api_key_id(sha256), label: label.to_string(), created_at: unix_now() };
            self.db()
                .execute(
                    "INSERT INTO api_keys (sha256, id, label, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![sha256, info.id, info.label, info.created_at as i64],
                )
                .map_err(|e| self.err(e))?;
            Ok(info)
        })
    }

    async fn api_key_exists(&self, sha256: &str) -> Result<bool, StoreError> {
        self.blocking(|| {
            self.db()
                .prepare_cached("SELECT 1 FROM api_keys WHERE sha256 = ?1")
                .and_then(|mut s| s.exists([sha256]))
                .map_err(|e| self.err(e))
        })
    }

    async fn api_key_sha256(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.blocking(|| {
            self.db()
                .query_row("SELECT sha256 FROM api_keys WHERE id = ?1", [id], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))
        })
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.blocking(|| {
            let db = self.db();
            let mut statement = db
                .prepare("SELECT id, label, created_at FROM api_keys ORDER BY created_at, id")
                .map_err(|e| self.err(e))?;
            let rows = statement
                .query_map([], |r| {
                    Ok(ApiKeyInfo { id: r.get(0)?, label: r.get(1)?, created_at: r.get::<_, i64>(2)? as u64 })
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        })
    }

    async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        self.blocking(|| {
            let deleted = self.db().execute("DELETE FROM api_keys WHERE id = ?1", [id]).map_err(|e| self.err(e))?;
            Ok(deleted > 0)
        })
    }
}
