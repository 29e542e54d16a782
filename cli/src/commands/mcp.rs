//! `terapi mcp serve`: the connection's tools over MCP (`terapi-mcp`).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use terapi_mcp::ToolServer;

use crate::app::App;

#[derive(clap::Subcommand)]
pub enum McpCommand {
    /// Speak MCP over stdio (register this command in an MCP client's config).
    Serve {
        /// The saved connection the tools act on (default: the only one).
        #[command(flatten)]
        connection: crate::commands::connection_args::ConnectionArg,
        /// Caller name for the audit log when the client does not give one.
        #[arg(long)]
        caller: Option<String>,
        /// Serve only what this user's access profiles bind (default: every
        /// tool approved on the connection, for someone at this machine).
        #[arg(long)]
        user: Option<String>,
        /// Speak MCP's streamable HTTP at http://ADDR/mcp instead of stdio.
        /// Loopback only (port 0: any free port; printed on start): the
        /// endpoint has no authentication of its own.
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
    },
    /// Users of `terapi serve`'s /mcp, each with a bearer token.
    User {
        #[command(subcommand)]
        command: McpUserCommand,
    },
}

#[derive(clap::Subcommand)]
pub enum McpUserCommand {
    /// A new user; prints their bearer token for `terapi serve`'s /mcp (once).
    Add {
        name: String,
        /// The token stops working after this many days [default: when
        /// rotated or the user is removed].
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
    },
    /// A new token for a user (the old one stops working at once).
    Token {
        name: String,
        /// The new token stops working after this many days.
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a user: their token stops working, profiles forget them.
    Remove { name: String },
}

pub async fn run(app: &App, command: McpCommand) -> Result<ExitCode> {
    let (connection, caller, user, http) = match command {
        McpCommand::Serve { connection, caller, user, http } => (connection, caller, user, http),
        McpCommand::User { command } => return users(app, command).await,
    };
    if let Some(address) = http.filter(|a| !a.ip().is_loopback()) {
        bail!(
            "--http {address}: the MCP endpoint acts with the connection's credential and has no \
             authentication of its own, so it listens on loopback only; use 127.0.0.1:PORT or [::1]:PORT"
        );
    }
    let platform = Arc::new(app.platform().await?);
    let connection = connection.resolve(platform.store().as_ref()).await?;
    let server = ToolServer::new(platform, &connection, caller, user).await?;
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

async fn users(app: &App, command: McpUserCommand) -> Result<ExitCode> {
    let platform = app.platform().await?;
    match command {
        McpUserCommand::Add { name, expires_in_days } => {
            let token = platform.create_mcp_user(&name, days(expires_in_days)).await?;
            eprintln!(
                "user {name}: created. Their bearer token for `terapi serve`'s /mcp (shown once; only its hash is kept):"
            );
            println!("{token}");
        }
        McpUserCommand::Token { name, expires_in_days } => {
            let token = platform.rotate_mcp_user_token(&name, days(expires_in_days)).await?;
            eprintln!("user {name}: new token (the old one no longer works; shown once):");
            println!("{token}");
        }
        McpUserCommand::List { json } => {
            let users = platform.mcp_users().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                for user in users {
                    let expiry = match user.token_expires_at {
                        Some(at) => format!(" token expires {}", crate::app::when(Some(at))),
                        None => String::new(),
                    };
                    println!(
                        "{:<20} {} profiles: {}{expiry}",
                        user.name,
                        crate::app::when(Some(user.created_at)),
                        user.profiles.join(",")
                    );
                }
            }
        }
        McpUserCommand::Remove { name } => {
            platform.delete_mcp_user(&name).await?;
            eprintln!("user {name}: removed; their token no longer works");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn days(days: Option<u32>) -> Option<std::time::Duration> {
    days.map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400))
}
