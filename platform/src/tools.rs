//! Actions as governed tools (for MCP clients and other agents): each is
//! approved, pending or denied; read-only ones start approved, anything
//! that writes waits for an operator. Every call, refused ones included, is
//! audited with its caller, the SHA-256 of its input, status and duration;
//! never the input itself, never a credential.

use std::time::Instant;

use sha2::Digest as _;
use terapi_host::{ActionInfo, Session};
use terapi_store::AuditEntry;

use crate::{Platform, PlatformError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolStatus {
    Approved,
    Pending,
    Denied,
}

impl ToolStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolStatus::Approved => "approved",
            ToolStatus::Pending => "pending",
            ToolStatus::Denied => "denied",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ToolInfo {
    pub action: ActionInfo,
    pub status: ToolStatus,
    pub toolset: &'static str,
}

/// One call, as the caller describes it.
pub struct ToolCall<'a> {
    pub connection_id: &'a str,
    pub caller: &'a str,
    pub tool: &'a str,
    /// JSON input.
    pub input: &'a str,
}

/// The toolset a tool belongs to, for grouping.
pub fn toolset(tool: &str) -> &'static str {
    const SETS: &[(&str, &str)] = &[
        ("privacy", "data-privacy"),
        ("crm", "crm-"),
        ("stats", "stats-"),
        ("engage", "flow"),
        ("scorecards", "scorecard"),
        ("calls", "call"),
        ("users", "user"),
        ("permissions", "permission"),
        ("library", "library"),
        ("logs", "logs"),
    ];
    SETS.iter().find(|(_, needle)| tool.contains(needle)).map(|(set, _)| *set).unwrap_or("settings")
}

impl Platform {
    /// Every action of `provider`'s component with its status.
    pub async fn tools(&self, provider: &str) -> Result<Vec<ToolInfo>, PlatformError> {
        let description = self.describe(provider).await?;
        let mut tools = Vec::with_capacity(description.actions.len());
        for action in &description.actions {
            tools.push(ToolInfo {
                status: self.tool_status(provider, action).await?,
                toolset: toolset(&action.name),
                action: action.clone(),
            });
        }
        Ok(tools)
    }

    async fn tool_status(&self, provider: &str, action: &ActionInfo) -> Result<ToolStatus, PlatformError> {
        Ok(match self.store.tool_decision(provider, &action.name).await?.as_deref() {
            Some("approved") => ToolStatus::Approved,
            Some(_) => ToolStatus::Denied,
            None if action.read_only => ToolStatus::Approved,
            None => ToolStatus::Pending,
        })
    }

    /// Approves or denies tools; every name is checked before any is changed.
    pub async fn decide_tools(&self, provider: &str, tools: &[String], approve: bool) -> Result<(), PlatformError> {
        let description = self.describe(provider).await?;
        if let Some(unknown) = tools.iter().find(|t| !description.actions.iter().any(|a| &a.name == *t)) {
            return Err(PlatformError::NoAction(unknown.clone()));
        }
        for tool in tools {
            self.store.set_tool_decision(provider, tool, approve).await?;
        }
        Ok(())
    }

    /// Runs an approved tool on `session` (a session of `call.connection_id`)
    /// and audits the call, whatever its outcome.
    pub async fn call_tool(&self, session: &Session, call: ToolCall<'_>) -> Result<String, PlatformError> {
        let started = Instant::now();
        let provider = self.store.connection_summary(call.connection_id).await?.provider;
        let description = self.describe(&provider).await?;
        let approved = match description.actions.iter().find(|a| a.name == call.tool) {
            Some(action) => self.tool_status(&provider, action).await? == ToolStatus::Approved,
            None => false,
        };
        if !approved {
            self.audit(&call, "refused", started, Some("not an approved tool".into())).await;
            return Err(PlatformError::ToolRefused(call.tool.to_string()));
        }
        match session.run_action(call.tool, call.input).await {
            Ok(output) => {
                self.audit(&call, "ok", started, None).await;
                Ok(output)
            }
            Err(error) => {
                self.audit(&call, "error", started, Some(session.redact(&error.to_string()))).await;
                Err(error.into())
            }
        }
    }

    async fn audit(&self, call: &ToolCall<'_>, status: &str, started: Instant, detail: Option<String>) {
        let entry = AuditEntry {
            at: terapi_store::unix_now(),
            caller: call.caller.to_string(),
            connection_id: call.connection_id.to_string(),
            tool: call.tool.to_string(),
            input_sha256: sha2::Sha256::digest(call.input.as_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
            status: status.to_string(),
            duration_ms: started.elapsed().as_millis() as u64,
            detail,
        };
        if let Err(e) = self.store.record_audit(&entry).await {
            tracing::error!("the audit entry for `{}` could not be saved: {e}", call.tool);
        }
    }
}
