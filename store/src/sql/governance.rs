//! `GovernanceStore`, once for both stores.

use std::collections::BTreeMap;

use super::{Row, SqlStore};
use crate::{AuditEntry, GovernanceDoc, GovernanceStore, StoreError, sql_params, unix_now};

fn doc(r: &Row) -> Result<GovernanceDoc, StoreError> {
    Ok(GovernanceDoc { key: r.text(0)?, version: r.int(1)?, body: r.text(2)? })
}

#[async_trait::async_trait]
impl<S: SqlStore> GovernanceStore for S {
    async fn tool_decisions(&self, provider: &str) -> Result<BTreeMap<String, bool>, StoreError> {
        let rows =
            self.query("SELECT tool, status FROM tool_policy WHERE provider = $1", sql_params![provider]).await?;
        rows.iter().map(|r| Ok((r.text(0)?, r.text(1)? == "approved"))).collect()
    }

    async fn set_tool_decision(&self, provider: &str, tool: &str, approved: bool) -> Result<(), StoreError> {
        let status = if approved { "approved" } else { "denied" };
        self.execute(
            "INSERT INTO tool_policy (provider, tool, status, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (provider, tool) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
            sql_params![provider, tool, status, unix_now() as i64],
        )
        .await?;
        Ok(())
    }

    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO audit (at, caller, connection_id, tool, input_sha256, status, duration_ms, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            sql_params![
                entry.at as i64,
                &entry.caller,
                &entry.connection_id,
                &entry.tool,
                &entry.input_sha256,
                &entry.status,
                entry.duration_ms as i64,
                entry.detail.as_deref(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn governance_docs(&self, kind: &str) -> Result<Vec<GovernanceDoc>, StoreError> {
        let rows = self
            .query("SELECT key, version, body FROM governance WHERE kind = $1 ORDER BY key", sql_params![kind])
            .await?;
        rows.iter().map(doc).collect()
    }

    async fn governance_doc(&self, kind: &str, key: &str) -> Result<Option<GovernanceDoc>, StoreError> {
        super::query_opt(
            self,
            "SELECT key, version, body FROM governance WHERE kind = $1 AND key = $2",
            sql_params![kind, key],
        )
        .await?
        .map(|r| doc(&r))
        .transpose()
    }

    async fn put_governance_doc(
        &self,
        kind: &str,
        key: &str,
        expected_version: i64,
        body: &str,
    ) -> Result<bool, StoreError> {
        let now = unix_now() as i64;
        let written = if expected_version == 0 {
            self.execute(
                "INSERT INTO governance (kind, key, version, body, updated_at) VALUES ($1, $2, 1, $3, $4)
                 ON CONFLICT (kind, key) DO NOTHING",
                sql_params![kind, key, body, now],
            )
            .await?
        } else {
            self.execute(
                "UPDATE governance SET version = version + 1, body = $3, updated_at = $4
                 WHERE kind = $1 AND key = $2 AND version = $5",
                sql_params![kind, key, body, now, expected_version],
            )
            .await?
        };
        Ok(written == 1)
    }

    async fn governance_version(&self) -> Result<i64, StoreError> {
        let rows = self.query("SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM governance", &[]).await?;
        rows.first().map_or(Ok(0), |r| r.int(0))
    }

    async fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = self
            .query(
                "SELECT at, caller, connection_id, tool, input_sha256, status, duration_ms, detail FROM
                 (SELECT * FROM audit ORDER BY id DESC LIMIT $1) newest ORDER BY id",
                sql_params![limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: r.uint(0)?,
                    caller: r.text(1)?,
                    connection_id: r.text(2)?,
                    tool: r.text(3)?,
                    input_sha256: r.text(4)?,
                    status: r.text(5)?,
                    duration_ms: r.uint(6)?,
                    detail: r.opt_text(7)?,
                })
            })
            .collect()
    }
}
