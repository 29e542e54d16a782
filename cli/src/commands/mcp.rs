//! `terapi mcp serve`: the connection's tools over MCP (`terapi-mcp`).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use terapi_mcp::ToolServer;

use crate::McpCommand;
use crate::app::App;

pub async fn run(app: &App, command: McpCommand) -> Result<ExitCode> {
    let McpCommand::Serve { connection, caller, http } = command;
    if let Some(address) = http.filter(|a| !a.ip().is_loopback()) {
        bail!(
            "--http {address}: the MCP endpoint acts with the connection's credential and has no \
             authentication of its own, so it listens on loopback only; use 127.0.0.1:PORT or [::1]:PORT"
        );
    }
    let platform = Arc::new(app.platform().await?);
    let server = ToolServer::new(platform, &connection, caller).await?;
    if let Some(address) = http {
        let listener =
            tokio::net::TcpListener::bind(address).await.with_context(|| format!("listening on {address}"))?;
        eprintln!("MCP (streamable HTTP) at http://{}/mcp", listener.local_addr()?);
        let stop = crate::signals::stop_on_signal("MCP: stopping");
        axum::serve(listener, server.http_router())
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .context("the MCP HTTP server stopped")?;
        return Ok(ExitCode::SUCCESS);
    }
    // stdout is the protocol channel from here on; logs go to stderr.
    let stop = crate::signals::stop_on_signal("MCP: stopping the running calls");
    server.serve_stdio_until(stop.cancelled_owned()).await.context("the MCP server stopped")?;
    Ok(ExitCode::SUCCESS)
}
