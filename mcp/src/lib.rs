//! A component's actions as governed MCP tools, for any host of the
//! platform (`terapi mcp serve` is one).
//!
//! Tools are discovered from the component's `action` list (no hand-kept
//! list). A caller is listed, and may call, only the tools approved on the
//! connection that their access profiles bind (everything approved, for
//! someone at the machine itself), and clients are told when that changes;
//! the governance and the audit of every call are the platform's
//! (`Platform::visible_tools`, `Platform::call_tool`). `stdio` and `http`
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
use terapi_platform::{Caller, Platform, PlatformError, ToolCall};
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

/// Whom a request of `terapi serve`'s `/mcp` is for: the user its bearer
/// token authenticated and the connection its URL names. The HTTP layer
/// puts it in the request's extensions before rmcp sees the request.
#[derive(Debug, Clone)]
pub struct McpTarget {
    pub connection: String,
    pub user: String,
}

enum Scope {
    /// `terapi mcp serve`: one connection, served to someone at this
    /// machine, who sees every approved tool unless `user` narrows it to
    /// what that user's profiles bind.
    Local { connection: String, caller: Option<String>, user: Option<String> },
    /// `terapi serve`: each request's `McpTarget`.
    Served,
}

/// Cheap to clone: the HTTP transport makes one handler per MCP session,
/// and they all share one platform.
#[derive(Clone)]
pub struct ToolServer {
    platform: Arc<Platform>,
    scope: Arc<Scope>,
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
    /// A server of `connection`'s tools to someone at this machine.
    /// `caller` names them in the audit log when the client does not (MCP's
    /// `clientInfo`); `user` serves them only what that user may see.
    /// Reads no credential and calls no provider: a connection whose
    /// credential is wrong still lists its tools.
    pub async fn new(
        platform: Arc<Platform>,
        connection: &str,
        caller: Option<String>,
        user: Option<String>,
    ) -> Result<ToolServer, McpServeError> {
        platform.store().connection_summary(connection).await.map_err(PlatformError::from)?;
        if let Some(user) = &user
            && !platform.mcp_users().await?.iter().any(|u| &u.name == user)
        {
            return Err(PlatformError::Governance {
                problem: terapi_platform::GovernanceProblem::NotFound,
                message: format!("no user named `{user}`; `terapi mcp user list` shows them"),
            }
            .into());
        }
        Ok(ToolServer::with_scope(platform, Scope::Local { connection: connection.into(), caller, user }))
    }

    /// The server `terapi serve` mounts: each request says its connection
    /// and user (`McpTarget`), see `served_router`.
    pub fn served(platform: Arc<Platform>) -> ToolServer {
        ToolServer::with_scope(platform, Scope::Served)
    }

    fn with_scope(platform: Arc<Platform>, scope: Scope) -> ToolServer {
        ToolServer {
            platform,
            scope: Arc::new(scope),
            client_gone: CancellationToken::new(),
            calls: TaskTracker::new(),
        }
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

    /// MCP's streamable HTTP at `/mcp` for a local server (`new`), for
    /// `axum::serve`. It has no authentication of its own: bind it to
    /// loopback.
    pub fn http_router(self) -> axum::Router {
        http::router(self)
    }

    /// The MCP streamable HTTP service of a `served` server, to mount behind
    /// a layer that authenticates each request and inserts its `McpTarget`.
    pub fn served_service<S: Clone + Send + Sync + 'static>(self) -> axum::routing::MethodRouter<S> {
        http::served_service(self)
    }

    /// The connection and caller of one request.
    fn target(
        &self,
        extensions: &rmcp::model::Extensions,
        client_name: Option<String>,
    ) -> Result<(String, Caller), McpError> {
        match self.scope.as_ref() {
            Scope::Local { connection, caller, user } => {
                let caller = match user {
                    Some(user) => Caller::User(user.clone()),
                    None => Caller::Local(
                        [client_name, caller.clone()]
                            .into_iter()
                            .flatten()
                            .find_map(|name| printable_name(&name))
                            .unwrap_or_else(|| "unknown".into()),
                    ),
                };
                Ok((connection.clone(), caller))
            }
            Scope::Served => extensions
                .get::<axum::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<McpTarget>())
                .map(|target| (target.connection.clone(), Caller::User(target.user.clone())))
                .ok_or_else(|| McpError::internal_error("the request reached MCP unauthenticated", None)),
        }
    }

    /// Who is calling: the client's `clientInfo.name`, which MCP 2026-07-28
    /// sends in every request's `_meta` and earlier versions once, in
    /// `initialize`.
    fn client_name(context: &RequestContext<RoleServer>) -> Option<String> {
        let from_request = context.meta.client_info().map(|info| info.name);
        from_request.or_else(|| context.peer.peer_info().map(|info| info.client_info.name.clone()))
    }

    /// The names the target of a request sees, kept current.
    async fn watch(&self, extensions: &rmcp::model::Extensions) -> Result<watch::Receiver<BTreeSet<String>>, McpError> {
        let (connection, caller) = self.target(extensions, None)?;
        self.platform.watch_visible_tools(&connection, &caller, POLICY_POLL).await.map_err(internal)
    }

    /// Waits for the next change to the visible tools; `false` when the
    /// server is going away.
    async fn tools_changed(&self, visible: &mut watch::Receiver<BTreeSet<String>>) -> bool {
        tokio::select! {
            changed = visible.changed() => changed.is_ok(),
            _ = self.client_gone.cancelled() => false,
        }
    }
}

impl ServerHandler for ToolServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("terapi", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Provider tools through terapi. Only tools an operator approved on this connection, in the toolsets \
                 your access profile binds, are listed; the list changes when an operator changes either.",
            )
    }

    /// Sessions of protocol versions with `initialize` hear of tool
    /// approvals and denials by `notifications/tools/list_changed`.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let server = self.clone();
        tokio::spawn(async move {
            let mut visible = match server.watch(&context.extensions).await {
                Ok(visible) => visible,
                Err(e) => return tracing::warn!("this MCP session will not hear of tool changes: {}", e.message),
            };
            while server.tools_changed(&mut visible).await {
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
        let mut visible = self.watch(&subscription.request_context().extensions).await?;
        loop {
            tokio::select! {
                changed = self.tools_changed(&mut visible) => {
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
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let (connection, caller) = self.target(&context.extensions, None)?;
        let tools = self
            .platform
            .visible_tools(&connection, &caller)
            .await
            .map_err(internal)?
            .into_iter()
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
                Tool::new(t.action.name.clone(), t.action.description.clone(), Arc::new(schema)).annotate(annotations)
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
        let (connection, caller) = self.target(&context.extensions, Self::client_name(&context))?;
        // A session per call, from the store: it has the credential as it
        // is now (rotated, or refreshed by another process).
        let session = self.platform.session(&connection).await.map_err(internal)?;
        let call = ToolCall { connection_id: &connection, caller: &caller, tool: &tool, input: &input };
        let client_gone = self.client_gone.clone();
        let cancelled = async move {
            tokio::select! {
                _ = context.ct.cancelled() => "the client cancelled it",
                _ = client_gone.cancelled() => "the client went away",
            }
        };
        let result = match self.platform.call_tool(&session, call, cancelled).await {
            Ok(output) => {
                let mut result = CallToolResult::success(vec![ContentBlock::text(output.clone())]);
                result.structured_content = serde_json::from_str(&output).ok();
                result
            }
            Err(refused @ PlatformError::ToolRefused { .. }) => {
                return Err(McpError::invalid_params(refused.to_string(), None));
            }
            // Nobody reads this answer (rmcp drops answers to cancelled
            // requests); the audit has the call.
            Err(cancelled @ PlatformError::ToolCancelled { .. }) => {
                return Err(McpError::internal_error(cancelled.to_string(), None));
            }
            Err(error) => CallToolResult::error(vec![ContentBlock::text(session.redact(&error.to_string()))]),
        };
        Ok(result.into())
    }
}
