//! `GovernanceStore`: tool decisions, governance documents (policies, toolsets, profiles, MCP users) and the audit log.

use super::*;

#[async_trait::async_trait]
impl GovernanceStore for SqliteStore {
    async fn tool_decisions(&self, provider: &str) -> Result<BTreeMap<String, bool>, StoreError> {
        self.blocking(|| {
            let db = self.db();
            let mut statement = db
                .prepare_cached("SELECT tool, status FROM tool_policy WHERE provider = ?1")
                .map_err(|e| self.err(e))?;
            let rows = statement
                .query_map(params![provider], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)? == "approved")))
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        })
    }

    async fn set_tool_decision(&self, provider: &str, tool: &str, approved: bool) -> Result<(), StoreError> {
        self.blocking(|| {
            let status = if approved { "approved" } else { "denied" };
            self.db()
                .execute(
                    "INSERT INTO tool_policy (provider, tool, status, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (provider, tool) DO UPDATE SET status = ?3, updated_at = ?4",
                    params![provider, tool, status, unix_now() as i64],
                )
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.blocking(|| {
            self.db()
                .execute(
                    "INSERT INTO audit (at, caller, connection_id, tool, input_sha256, status, duration_ms, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        entry.at as i64,
                        entry.caller,
                        entry.connection_id,
                        entry.tool,
                        entry.input_sha256,
                        entry.status,
                        entry.duration_ms as i64,
                        entry.detail
                    ],
                )
                .map_err(|e| self.err(e))?;
            Ok(())
        })
    }

    async fn governance_docs(&self, kind: &str) -> Result<Vec<GovernanceDoc>, StoreError> {
        self.blocking(|| {
            let db = self.db();
            let mut statement = db
                .prepare_cached("SELECT key, version, body FROM governance WHERE kind = ?1 ORDER BY key")
                .map_err(|e| self.err(e))?;
            let rows = statement
                .query_map(params![kind], |r| Ok(GovernanceDoc { key: r.get(0)?, version: r.get(1)?, body: r.get(2)? }))
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        })
    }

    async fn governance_doc(&self, kind: &str, key: &str) -> Result<Option<GovernanceDoc>, StoreError> {
        self.blocking(|| {
            self.db()
                .query_row(
                    "SELECT key, version, body FROM governance WHERE kind = ?1 AND key = ?2",
                    params![kind, key],
                    |r| Ok(GovernanceDoc { key: r.get(0)?, version: r.get(1)?, body: r.get(2)? }),
                )
                .optional()
                .map_err(|e| self.err(e))
        })
    }

    async fn put_governance_doc(
        &self,
        kind: &str,
        key: &str,
        expected_version: i64,
        body: &str,
    ) -> Result<bool, StoreError> {
        self.blocking(|| {
            let now = unix_now() as i64;
            let written = if expected_version == 0 {
                self.db().execute(
                    "INSERT INTO governance (kind, key, version, body, updated_at) VALUES (?1, ?2, 1, ?3, ?4)
                     ON CONFLICT (kind, key) DO NOTHING",
                    params![kind, key, body, now],
                )
            } else {
                self.db().execute(
                    "UPDATE governance SET version = version + 1, body = ?3, updated_at = ?4
                     WHERE kind = ?1 AND key = ?2 AND version = ?5",
                    params![kind, key, body, now, expected_version],
                )
            };
            Ok(written.map_err(|e| self.err(e))? == 1)
        })
    }

    async fn governance_version(&self) -> Result<i64, StoreError> {
        self.blocking(|| {
            self.db()
                .query_row("SELECT coalesce(sum(version), 0) FROM governance", [], |r| r.get(0))
                .map_err(|e| self.err(e))
        })
    }

    async fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.blocking(|| {
            let db = self.db();
            let mut statement = db
                .prepare(
                    "SELECT at, caller, connection_id, tool, input_sha256, status, duration_ms, detail FROM
                     (SELECT * FROM audit ORDER BY id DESC LIMIT ?1) ORDER BY id",
                )
                .map_err(|e| self.err(e))?;
            let rows = statement
                .query_map([limit], |r| {
                    Ok(AuditEntry {
                        at: r.get::<_, i64>(0)? as u64,
                        caller: r.get(1)?,
                        connection_id: r.get(2)?,
                        tool: r.get(3)?,
                        input_sha256: r.get(4)?,
                        status: r.get(5)?,
                        duration_ms: r.get::<_, i64>(6)? as u64,
                        detail: r.get(7)?,
                    })
                })
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        })
    }
}
