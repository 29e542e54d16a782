//! `terapi mcp serve`: the component's actions as governed MCP tools.
//!
//! Tools are discovered from the component's `action` list at start (no
//! hand-kept list). Each is `approved`, `denied` or `pending`; only approved
//! tools are listed or callable. Every call, refused ones included, goes to
//! the audit log with its caller, the SHA-256 of its input, status and
//! duration; never the credential. Calls go through the same host as every
//! other command: rate limits, retries and egress rules included.

use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use sha2::Digest as _;
use terapi_host::{ActionInfo, Connection, Session};
use terapi_store::{AuditEntry, Store};

/// Read-only tools are approved unless an operator denies them; anything
/// that writes (uploads, assigns, erases) waits for `terapi tool approve`.
pub fn default_approved(tool: &str) -> bool {
    tool.starts_with("get-")
        || tool.starts_with("list-")
        || tool == "crm-get-entities"
        || tool == "crm-get-entity-schema"
}

/// The toolset a tool belongs to, for grouping in `tool list`.
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

pub fn status(store: &Store, provider: &str, tool: &str) -> Result<&'static str, terapi_store::StoreError> {
    Ok(match store.tool_decision(provider, tool)?.as_deref() {
        Some("approved") => "approved",
        Some(_) => "denied",
        None if default_approved(tool) => "approved",
        None => "pending",
    })
}

/// Cheap to clone: the HTTP transport makes one handler per MCP session,
/// and they all share one host session, store and tool list.
#[derive(Clone)]
pub struct ToolServer {
    /// One session for the server's life, so a token it refreshes (and
    /// saves) is the one the next call uses, and every call shares the
    /// connection's rate budget.
    session: Arc<Session<'static>>,
    connection: Arc<Connection>,
    store: Arc<Store>,
    actions: Arc<[ActionInfo]>,
    /// Who the caller is when the client does not say (`--caller`).
    caller: Option<String>,
}

/// MCP's streamable HTTP transport at `/mcp`. rmcp's own checks stay on:
/// `Host` must be a loopback name, which stops DNS-rebinding pages in a
/// browser from reaching the tools.
pub fn http_router(server: ToolServer) -> axum::Router {
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    axum::Router::new().nest_service("/mcp", service)
}

impl ToolServer {
    pub fn new(
        session: Session<'static>,
        connection: Connection,
        store: Arc<Store>,
        actions: Vec<ActionInfo>,
        caller: Option<String>,
    ) -> ToolServer {
        ToolServer {
            session: Arc::new(session),
            connection: Arc::new(connection),
            store,
            actions: actions.into(),
            caller,
        }
    }

    fn approved(&self, tool: &str) -> bool {
        status(&self.store, &self.connection.provider, tool).is_ok_and(|s| s == "approved")
    }

    fn audit(&self, caller: &str, tool: &str, input: &str, status: &str, started: Instant, detail: Option<String>) {
        let entry = AuditEntry {
            at: terapi_store::unix_now(),
            caller: caller.to_string(),
            connection_id: self.connection.id.clone(),
            tool: tool.to_string(),
            input_sha256: sha2::Sha256::digest(input.as_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
            status: status.to_string(),
            duration_ms: started.elapsed().as_millis() as u64,
            detail,
        };
        if let Err(e) = self.store.record_audit(&entry) {
            tracing::error!("the audit entry for `{tool}` could not be saved: {e}");
        }
    }
}

impl ServerHandler for ToolServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("terapi", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Gong ({}) through terapi. Only tools an operator approved are listed.",
                self.connection.provider
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let tools = self
            .actions
            .iter()
            .filter(|a| self.approved(&a.name))
            .map(|a| {
                let schema = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&a.input_schema)
                    .unwrap_or_default();
                Tool::new(a.name.clone(), format!("[{}] {}", toolset(&a.name), a.description), Arc::new(schema))
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let started = Instant::now();
        let tool = request.name.to_string();
        let input = serde_json::to_string(&request.arguments.unwrap_or_default()).unwrap_or_else(|_| "{}".into());
        let caller = context
            .peer
            .peer_info()
            .map(|info| info.client_info.name.clone())
            .filter(|name| !name.is_empty())
            .or_else(|| self.caller.clone())
            .unwrap_or_else(|| "unknown".into());
        if !self.actions.iter().any(|a| a.name == tool) || !self.approved(&tool) {
            self.audit(&caller, &tool, &input, "refused", started, Some("not an approved tool".into()));
            return Err(McpError::invalid_params(
                format!(
                    "no approved tool named `{tool}`; an operator can approve it with `terapi tool approve {tool}`"
                ),
                None,
            ));
        }
        let result = match self.session.run_action(&tool, &input).await {
            Ok(output) => {
                self.audit(&caller, &tool, &input, "ok", started, None);
                let mut result = CallToolResult::success(vec![ContentBlock::text(output.clone())]);
                result.structured_content = serde_json::from_str(&output).ok();
                result
            }
            Err(error) => {
                let message = error.to_string();
                self.audit(&caller, &tool, &input, "error", started, Some(message.clone()));
                CallToolResult::error(vec![ContentBlock::text(message)])
            }
        };
        Ok(result.into())
    }
}
