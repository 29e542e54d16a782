//! A component's actions as governed MCP tools, for any host of the
//! platform (`terapi mcp serve` is one).
//!
//! Tools are discovered from the component's `action` list (no hand-kept
//! list). Only approved tools are listed or callable, and clients are told
//! when that changes; the policy and the audit of every call are the
//! platform's (`Platform::tools`, `Platform::call_tool`). `stdio` and `http`
//! are the two transports, `jsonrpc` the checks both make before rmcp sees
//! a message.

mod http;
mod jsonrpc;
mod stdio;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, SubscriptionFilter, Tool, ToolAnnotations,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use terapi_host::Session;
use terapi_platform::{Platform, PlatformError, ToolCall, ToolStatus};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the tool policy is read again for approvals made by another
/// process (`terapi tool approve` beside a running server).
const POLICY_POLL: Duration = Duration::from_secs(1);
/// How long calls cut off by the client's going get to record their audit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum McpServeError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("the MCP transport failed: {0}")]
    Transport(String),
}

/// Cheap to clone: the HTTP transport makes one handler per MCP session,
/// and they all share one platform and one host session.
#[derive(Clone)]
pub struct ToolServer {
    platform: Arc<Platform>,
    session: Session,
    connection: Arc<str>,
    provider: Arc<str>,
    /// Who the caller is when the client does not say (`--caller`).
    caller: Option<String>,
    /// The approved tools, kept current by the platform.
    approved: watch::Receiver<BTreeSet<String>>,
    /// Cancelled when the stdio client has gone.
    client_gone: CancellationToken,
    /// Calls in flight, waited for at shutdown.
    calls: TaskTracker,
}

/// `get-call-transcripts` → `Get call transcripts`.
fn title(name: &str) -> String {
    let spaced = name.replace('-', " ");
    let mut chars = spaced.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn internal(error: PlatformError) -> McpError {
    McpError::internal_error(error.to_string(), None)
}

/// A client-given name as the audit log keeps it: printable, 100 characters
/// at most (it is shown in a terminal by `audit list`).
fn printable_name(name: &str) -> Option<String> {
    let clean: String = name.chars().filter(|c| !c.is_control()).take(100).collect();
    let clean = clean.trim();
    (!clean.is_empty()).then(|| clean.to_string())
}

impl ToolServer {
    /// A server of `connection`'s tools. `caller` names the caller in the
    /// audit log when the client does not (MCP's `clientInfo`).
    pub async fn new(
        platform: Arc<Platform>,
        connection: &str,
        caller: Option<String>,
    ) -> Result<ToolServer, McpServeError> {
        let provider = platform.store().connection_summary(connection).await.map_err(PlatformError::from)?.provider;
        // One session for the server's life, so a token it refreshes (and
        // saves) is the one the next call uses.
        let session = platform.session(connection).await?;
        let approved = platform.watch_approved_tools(&provider, POLICY_POLL).await?;
        Ok(ToolServer {
            platform,
            session,
            connection: connection.into(),
            provider: provider.into(),
            caller,
            approved,
            client_gone: CancellationToken::new(),
            calls: TaskTracker::new(),
        })
    }

    /// Serves MCP over stdin/stdout until the client closes stdin. Calls
    /// still running then are stopped, and each records its audit entry
    /// before this returns.
    pub async fn serve_stdio(self) -> Result<(), McpServeError> {
        self.serve_stdio_until(std::future::pending()).await
    }

    /// `serve_stdio` until the client leaves or `stop` resolves (SIGTERM):
    /// either way running calls are stopped and audited before it returns.
    pub async fn serve_stdio_until(self, stop: impl Future<Output = ()>) -> Result<(), McpServeError> {
        let (client_gone, calls) = (self.client_gone.clone(), self.calls.clone());
        let served = tokio::select! {
            served = stdio::serve(self, client_gone.clone()) => served,
            () = stop => Ok(()),
        };
        client_gone.cancel();
        calls.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, calls.wait()).await.is_err() {
            tracing::warn!("calls still running {SHUTDOWN_GRACE:?} after the client left were dropped unaudited");
        }
        served
    }

    /// MCP's streamable HTTP at `/mcp`, for `axum::serve`. It has no
    /// authentication of its own: bind it to loopback.
    pub fn http_router(self) -> axum::Router {
        http::router(self)
    }
    /// Who is calling: the client's `clientInfo.name`, which MCP 2026-07-28
    /// sends in every request's `_meta` and earlier versions once, in
    /// `initialize`; else `--caller`.
    fn caller_of(&self, context: &RequestContext<RoleServer>) -> String {
        let from_request = context.meta.client_info().map(|info| info.name);
        let from_initialize = context.peer.peer_info().map(|info| info.client_info.name.clone());
        [from_request, from_initialize, self.caller.clone()]
            .into_iter()
            .flatten()
            .find_map(|name| printable_name(&name))
            .unwrap_or_else(|| "unknown".into())
    }

    /// Waits for the next change to the approved tools; `false` when the
    /// server is going away.
    async fn tools_changed(&self, approved: &mut watch::Receiver<BTreeSet<String>>) -> bool {
        tokio::select! {
            changed = approved.changed() => changed.is_ok(),
            _ = self.client_gone.cancelled() => false,
        }
    }
}

impl ServerHandler for ToolServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("terapi", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Gong ({}) through terapi. Only tools an operator approved are listed; the list changes \
                 when an operator approves or denies one.",
                self.provider
            ))
    }

    /// Sessions of protocol versions with `initialize` hear of tool
    /// approvals and denials by `notifications/tools/list_changed`.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let server = self.clone();
        tokio::spawn(async move {
            let mut approved = server.approved.clone();
            approved.mark_unchanged();
            while server.tools_changed(&mut approved).await {
                if context.peer.notify_tool_list_changed().await.is_err() {
                    break; // the session is gone
                }
            }
        });
    }

    /// MCP 2026-07-28 has no `initialize`: a client asks for the same
    /// notification with `subscriptions/listen`.
    fn accepted_subscription_filter(&self, _requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(SubscriptionFilter::builder().tools_list_changed().build())
    }

    async fn listen(&self, subscription: SubscriptionContext) -> Result<(), McpError> {
        let mut approved = self.approved.clone();
        approved.mark_unchanged();
        loop {
            tokio::select! {
                changed = self.tools_changed(&mut approved) => {
                    if !changed || subscription.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
                _ = subscription.cancelled() => return Ok(()),
            }
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let tools = self
            .platform
            .tools(&self.provider)
            .await
            .map_err(internal)?
            .into_iter()
            .filter(|t| t.status == ToolStatus::Approved)
            .map(|t| {
                let schema = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&t.action.input_schema)
                    .unwrap_or_default();
                // From the component's read-only flag, not the name. A
                // write is taken as destructive (MCP's default) since the
                // component does not say otherwise; every tool reaches
                // Gong, outside this server.
                let read_only = t.action.read_only;
                let annotations = ToolAnnotations::with_title(title(&t.action.name))
                    .read_only(read_only)
                    .destructive(!read_only)
                    .idempotent(read_only)
                    .open_world(true);
                Tool::new(t.action.name.clone(), format!("[{}] {}", t.toolset, t.action.description), Arc::new(schema))
                    .annotate(annotations)
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let _in_flight = self.calls.token();
        let tool = request.name.to_string();
        let input = serde_json::to_string(&request.arguments.unwrap_or_default()).unwrap_or_else(|_| "{}".into());
        let caller = self.caller_of(&context);
        let call = ToolCall { connection_id: &self.connection, caller: &caller, tool: &tool, input: &input };
        let client_gone = self.client_gone.clone();
        let cancelled = async move {
            tokio::select! {
                _ = context.ct.cancelled() => "the client cancelled it",
                _ = client_gone.cancelled() => "the client went away",
            }
        };
        let result = match self.platform.call_tool(&self.session, call, cancelled).await {
            Ok(output) => {
                let mut result = CallToolResult::success(vec![ContentBlock::text(output.clone())]);
                result.structured_content = serde_json::from_str(&output).ok();
                result
            }
            Err(refused @ PlatformError::ToolRefused(_)) => {
                return Err(McpError::invalid_params(refused.to_string(), None));
            }
            // Nobody reads this answer (rmcp drops answers to cancelled
            // requests); the audit has the call.
            Err(cancelled @ PlatformError::ToolCancelled { .. }) => {
                return Err(McpError::internal_error(cancelled.to_string(), None));
            }
            Err(error) => CallToolResult::error(vec![ContentBlock::text(self.session.redact(&error.to_string()))]),
        };
        Ok(result.into())
    }
}
