//! Calls of governed tools (for MCP clients and other agents; who may call
//! what is `governance`). Every call, refused and cut-off ones included, is audited with its caller, the SHA-256 of its input, status
//! and duration; never the input itself, never a credential, and no error
//! text that could repeat the input (an id in a path, an email in Gong's
//! answer): the audit keeps what kind of failure it was.

use std::sync::Arc;
use std::time::Instant;

use terapi_host::{EgressError, Error as HostError, ProviderFailure, Session};
use terapi_store::AuditEntry;

use crate::governance::Caller;
use crate::{Platform, PlatformError};

/// One call, as the caller describes it.
pub struct ToolCall<'a> {
    pub connection_id: &'a str,
    pub caller: &'a Caller,
    pub tool: &'a str,
    /// JSON input.
    pub input: &'a str,
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
        if let Err(refusal) = self.check_tool_call(call.connection_id, call.caller, call.tool).await? {
            self.audit(call.entry("refused", started, Some(refusal.audit_detail().into()))).await;
            return Err(PlatformError::ToolRefused {
                tool: call.tool.to_string(),
                connection: call.connection_id.to_string(),
                refusal,
            });
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
            caller: self.caller.audit_name(),
            connection_id: self.connection_id.to_string(),
            tool: self.tool.to_string(),
            input_sha256: terapi_domain::digest::sha256_hex(self.input),
            status: status.to_string(),
            duration_ms: started.elapsed().as_millis() as u64,
            detail,
        }
    }
}
