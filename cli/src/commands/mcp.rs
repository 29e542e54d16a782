//! `terapi mcp serve`: the component's actions as governed MCP tools.
//!
//! Tools are discovered from the component's `action` list (no hand-kept
//! list). Only approved tools are listed or callable; the policy and the
//! audit of every call are the platform's (`Platform::tools`,
//! `Platform::call_tool`). This module is the MCP transport around them.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use terapi_host::Session;
use terapi_platform::{Platform, PlatformError, ToolCall, ToolStatus};

use crate::McpCommand;
use crate::app::App;

pub async fn run(app: &App, command: McpCommand) -> Result<ExitCode> {
    use rmcp::ServiceExt as _;
    let McpCommand::Serve { connection, caller, http } = command;
    if let Some(address) = http.filter(|a| !a.ip().is_loopback()) {
        bail!(
            "--http {address}: the MCP endpoint acts with the connection's credential and has no \
             authentication of its own, so it listens on loopback only; use 127.0.0.1:PORT or [::1]:PORT"
        );
    }
    let platform = Arc::new(app.platform().await?);
    let provider = platform.store().connection_summary(&connection).await?.provider;
    // One session for the server's life, so a token it refreshes (and
    // saves) is the one the next call uses.
    let session = platform.session(&connection).await?;
    let server = ToolServer { platform, session, connection: connection.into(), provider: provider.into(), caller };
    if let Some(address) = http {
        let listener =
            tokio::net::TcpListener::bind(address).await.with_context(|| format!("listening on {address}"))?;
        eprintln!("MCP (streamable HTTP) at http://{}/mcp", listener.local_addr()?);
        axum::serve(listener, http_router(server)).await.context("the MCP HTTP server stopped")?;
        return Ok(ExitCode::SUCCESS);
    }
    // stdout is the protocol channel from here on; logs go to stderr.
    let running = server.serve(rmcp::transport::stdio()).await.context("starting the MCP server")?;
    running.waiting().await.context("the MCP server stopped")?;
    Ok(ExitCode::SUCCESS)
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

/// `get-call-transcripts` → `Get call transcripts`.
fn title(name: &str) -> String {
    let spaced = name.replace('-', " ");
    let mut chars = spaced.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn internal(error: PlatformError) -> McpError {
    McpError::internal_error(error.to_string(), None)
}

impl ServerHandler for ToolServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("terapi", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Gong ({}) through terapi. Only tools an operator approved are listed.",
                self.provider
            ))
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
                // Clients show the read-only flag (and may skip confirmation
                // for reads); it comes from the component, not the name.
                let annotations = ToolAnnotations::with_title(title(&t.action.name)).read_only(t.action.read_only);
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
        let tool = request.name.to_string();
        let input = serde_json::to_string(&request.arguments.unwrap_or_default()).unwrap_or_else(|_| "{}".into());
        let caller = context
            .peer
            .peer_info()
            .map(|info| info.client_info.name.clone())
            .filter(|name| !name.is_empty())
            .or_else(|| self.caller.clone())
            .unwrap_or_else(|| "unknown".into());
        let call = ToolCall { connection_id: &self.connection, caller: &caller, tool: &tool, input: &input };
        let result = match self.platform.call_tool(&self.session, call).await {
            Ok(output) => {
                let mut result = CallToolResult::success(vec![ContentBlock::text(output.clone())]);
                result.structured_content = serde_json::from_str(&output).ok();
                result
            }
            Err(refused @ PlatformError::ToolRefused(_)) => {
                return Err(McpError::invalid_params(refused.to_string(), None));
            }
            Err(error) => CallToolResult::error(vec![ContentBlock::text(self.session.redact(&error.to_string()))]),
        };
        Ok(result.into())
    }
}
