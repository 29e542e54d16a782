//! Actions as governed tools (for MCP clients and other agents): each is
//! approved, pending or denied; read-only ones start approved, anything
//! that writes waits for an operator. Every call, refused and cut-off ones
//! included, is audited with its caller, the SHA-256 of its input, status
//! and duration; never the input itself, never a credential, and no error
//! text that could repeat the input (an id in a path, an email in Gong's
//! answer): the audit keeps what kind of failure it was.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::Digest as _;
use terapi_host::{ActionInfo, EgressError, Error as HostError, ProviderFailure, Session};
use terapi_store::AuditEntry;
use tokio::sync::watch;

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

fn tool_status(decisions: &BTreeMap<String, bool>, action: &ActionInfo) -> ToolStatus {
    match decisions.get(&action.name) {
        Some(true) => ToolStatus::Approved,
        Some(false) => ToolStatus::Denied,
        None if action.read_only => ToolStatus::Approved,
        None => ToolStatus::Pending,
    }
}

/// What the audit keeps of a failed call: the kind of failure, and the HTTP
/// status where there is one. Not the message: provider answers and some
/// error texts repeat what the caller sent (an id in a path, an email).
fn audit_detail(error: &HostError) -> String {
    match error {
        HostError::Provider(failure) => match failure {
            ProviderFailure::Unauthorized(_) => "unauthorized".into(),
            ProviderFailure::InvalidInput(_) => "invalid input".into(),
            ProviderFailure::NotFound(_) => "not found".into(),
            ProviderFailure::NotAvailable(_) => "not available for this account".into(),
            ProviderFailure::Remote { status, .. } => format!("the provider answered HTTP {status}"),
            ProviderFailure::Http(e) => egress_detail(e).into(),
            ProviderFailure::BadResponse(_) => "unexpected answer from the provider".into(),
            ProviderFailure::Unknown(_) => "unknown action".into(),
            ProviderFailure::NotSupported(_) => "not supported".into(),
        },
        HostError::Http(e) => egress_detail(e).into(),
        HostError::Guest(terapi_host::GuestFailure::Crashed(_)) => "the provider component crashed".into(),
        // Limits and setup errors name no input.
        other => other.to_string(),
    }
}

fn egress_detail(error: &EgressError) -> &'static str {
    match error {
        EgressError::Refused(_) => "request refused by the host",
        EgressError::RateLimited(_) => "rate limited",
        EgressError::Timeout(_) => "timed out",
        EgressError::Transport(_) => "network error",
        EgressError::TooLarge(_) => "response too large",
        EgressError::Reauthorize(_) => "the connection must be re-authorized",
    }
}

/// Audits a call that never finished: its future was dropped (the caller
/// stopped waiting) before it could say how it ended.
struct AuditIfDropped {
    entry: Option<(Arc<dyn terapi_store::Store>, AuditEntry, Instant)>,
}

impl Drop for AuditIfDropped {
    fn drop(&mut self) {
        let Some((store, mut entry, started)) = self.entry.take() else { return };
        entry.duration_ms = started.elapsed().as_millis() as u64;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.record_audit(&entry).await {
                    tracing::error!("the audit entry for `{}` could not be saved: {e}", entry.tool);
                }
            });
        }
    }
}

impl Platform {
    /// Every action of `provider`'s component with its status.
    pub async fn tools(&self, provider: &str) -> Result<Vec<ToolInfo>, PlatformError> {
        let description = self.describe(provider).await?;
        let decisions = self.store.tool_decisions(provider).await?;
        Ok(description
            .actions
            .iter()
            .map(|action| ToolInfo {
                status: tool_status(&decisions, action),
                toolset: toolset(&action.name),
                action: action.clone(),
            })
            .collect())
    }

    /// The names of `provider`'s approved tools (read every second by each
    /// watcher: one query, and no copy of the actions' schemas).
    pub async fn approved_tools(&self, provider: &str) -> Result<BTreeSet<String>, PlatformError> {
        let description = self.describe(provider).await?;
        let decisions = self.store.tool_decisions(provider).await?;
        Ok(description
            .actions
            .iter()
            .filter(|action| tool_status(&decisions, action) == ToolStatus::Approved)
            .map(|action| action.name.clone())
            .collect())
    }

    /// `provider`'s approved tools, kept current: the receiver changes when
    /// an operator approves or denies a tool, in this process (at once) or
    /// in another on the same store (within `every`). The watch stops when
    /// every receiver is gone.
    pub async fn watch_approved_tools(
        self: &Arc<Self>,
        provider: &str,
        every: Duration,
    ) -> Result<watch::Receiver<BTreeSet<String>>, PlatformError> {
        // Subscribed before the first read, so no decision falls between.
        let mut decided = self.tools_decided.subscribe();
        let (sender, receiver) = watch::channel(self.approved_tools(provider).await?);
        let platform = Arc::clone(self);
        let provider = provider.to_string();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = decided.changed() => {}
                    _ = sender.closed() => return,
                }
                match platform.approved_tools(&provider).await {
                    Ok(now) => {
                        sender.send_if_modified(|known| (*known != now).then(|| *known = now).is_some());
                    }
                    Err(e) => tracing::warn!("reading the tool policy of `{provider}` failed (will retry): {e}"),
                }
            }
        });
        Ok(receiver)
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
        self.tools_decided.send_modify(|generation| *generation += 1);
        Ok(())
    }

    /// Runs an approved tool on `session` (a session of `call.connection_id`)
    /// and audits the call, whatever its outcome. When `cancelled` completes
    /// first (the client cancelled, or went away), the call is stopped where
    /// it is (its instance and any request in flight are dropped) and
    /// audited as `cancelled` with the reason `cancelled` gives; pass
    /// `std::future::pending()` for a call nobody cancels. A call whose
    /// future is dropped unfinished is audited as `cancelled` too.
    pub async fn call_tool(
        &self,
        session: &Session,
        call: ToolCall<'_>,
        cancelled: impl Future<Output = &'static str>,
    ) -> Result<String, PlatformError> {
        let started = Instant::now();
        let provider = self.store.connection_summary(call.connection_id).await?.provider;
        let description = self.describe(&provider).await?;
        let decisions = self.store.tool_decisions(&provider).await?;
        let approved = description
            .actions
            .iter()
            .find(|a| a.name == call.tool)
            .is_some_and(|action| tool_status(&decisions, action) == ToolStatus::Approved);
        if !approved {
            self.audit(call.entry("refused", started, Some("not an approved tool".into()))).await;
            return Err(PlatformError::ToolRefused(call.tool.to_string()));
        }
        let mut if_dropped = AuditIfDropped {
            entry: Some((
                self.store.clone(),
                call.entry("cancelled", started, Some("the caller stopped waiting".into())),
                started,
            )),
        };
        let outcome = tokio::select! {
            outcome = session.run_action(call.tool, call.input) => Ok(outcome),
            reason = cancelled => Err(reason),
        };
        if_dropped.entry = None;
        match outcome {
            Ok(Ok(output)) => {
                self.audit(call.entry("ok", started, None)).await;
                Ok(output)
            }
            Ok(Err(error)) => {
                self.audit(call.entry("error", started, Some(audit_detail(&error)))).await;
                Err(error.into())
            }
            Err(reason) => {
                self.audit(call.entry("cancelled", started, Some(reason.to_string()))).await;
                Err(PlatformError::ToolCancelled { tool: call.tool.to_string(), reason })
            }
        }
    }

    async fn audit(&self, entry: AuditEntry) {
        if let Err(e) = self.store.record_audit(&entry).await {
            tracing::error!("the audit entry for `{}` could not be saved: {e}", entry.tool);
        }
    }
}

impl ToolCall<'_> {
    fn entry(&self, status: &str, started: Instant, detail: Option<String>) -> AuditEntry {
        AuditEntry {
            at: terapi_store::unix_now(),
            caller: self.caller.to_string(),
            connection_id: self.connection_id.to_string(),
            tool: self.tool.to_string(),
            input_sha256: sha2::Sha256::digest(self.input.as_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
            status: status.to_string(),
            duration_ms: started.elapsed().as_millis() as u64,
            detail,
        }
    }
}
