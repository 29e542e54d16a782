//! `GovernanceStore`: tool decisions, governance documents (policies, toolsets, profiles, MCP users) and the audit log.

use super::*;

#[async_trait::async_trait]
impl GovernanceStore for PostgresStore {
    async fn tool_decisions(&self, provider: &str) -> Result<BTreeMap<String, bool>, StoreError> {
        let rows = self.query("SELECT tool, status FROM tool_policy WHERE provider = $1", &[&provider]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get::<_, &str>(1) == "approved")).collect())
    }

    async fn set_tool_decision(&self, provider: &str, tool: &str, approved: bool) -> Result<(), StoreError> {
        let status = if approved { "approved" } else { "denied" };
        self.execute(
            "INSERT INTO tool_policy (provider, tool, status, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (provider, tool) DO UPDATE SET status = $3, updated_at = $4",
            &[&provider, &tool, &status, &(unix_now() as i64)],
        )
        .await?;
        Ok(())
    }

    async fn governance_docs(&self, kind: &str) -> Result<Vec<GovernanceDoc>, StoreError> {
        let rows =
            self.query("SELECT key, version, body FROM governance WHERE kind = $1 ORDER BY key", &[&kind]).await?;
        Ok(rows.iter().map(|r| GovernanceDoc { key: r.get(0), version: r.get(1), body: r.get(2) }).collect())
    }

    async fn governance_doc(&self, kind: &str, key: &str) -> Result<Option<GovernanceDoc>, StoreError> {
        let rows = self
            .query("SELECT key, version, body FROM governance WHERE kind = $1 AND key = $2", &[&kind, &key])
            .await?;
        Ok(rows.first().map(|r| GovernanceDoc { key: r.get(0), version: r.get(1), body: r.get(2) }))
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
                &[&kind, &key, &body, &now],
            )
            .await?
        } else {
            self.execute(
                "UPDATE governance SET version = version + 1, body = $3, updated_at = $4
                 WHERE kind = $1 AND key = $2 AND version = $5",
                &[&kind, &key, &body, &now, &expected_version],
            )
            .await?
        };
        Ok(written == 1)
    }

    async fn governance_version(&self) -> Result<i64, StoreError> {
        let rows = self.query("SELECT coalesce(sum(version), 0)::BIGINT FROM governance", &[]).await?;
        Ok(rows.first().map(|r| r.get(0)).unwrap_or(0))
    }

    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO audit (at, caller, connection_id, tool, input_sha256, status, duration_ms, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &(entry.at as i64),
                &entry.caller,
                &entry.connection_id,
                &entry.tool,
                &entry.input_sha256,
                &entry.status,
                &(entry.duration_ms as i64),
                &entry.detail,
            ],
        )
        .await?;
        Ok(())
    }

    async fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = self
            .query(
                "SELECT at, caller, connection_id, tool, input_sha256, status, duration_ms, detail FROM
                 (SELECT * FROM audit ORDER BY id DESC LIMIT $1) newest ORDER BY id",
                &[&i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                at: r.get::<_, i64>(0) as u64,
                caller: r.get(1),
                connection_id: r.get(2),
                tool: r.get(3),
                input_sha256: r.get(4),
                status: r.get(5),
                duration_ms: r.get::<_, i64>(6) as u64,
                detail: r.get(7),
            })
            .collect())
    }
}
