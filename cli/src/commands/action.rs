use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow};
use terapi_host::{Method, OutboundRequest};

use crate::app::{self, App};
use crate::commands::connection_args::ConnectionArgs;

#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand)]
pub enum ActionCommand {
    /// The actions the component offers, one line each.
    List {
        /// Also print each action's input JSON Schema.
        #[arg(long)]
        schemas: bool,
        #[arg(long)]
        json: bool,
    },
    /// Run one action and print its JSON output.
    Run {
        /// Action name (see `terapi action list`).
        name: String,
        /// JSON input: text, @FILE, or - for stdin [default: {}].
        #[arg(long, short)]
        input: Option<String>,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

pub async fn verify(app: &App, args: ConnectionArgs) -> Result<ExitCode> {
    let platform = app.platform().await?;
    let (provider, verified) = match &args.connection {
        Some(id) => {
            let verified = platform.verify(id).await?;
            (platform.store().connection_summary(id).await?.provider, verified)
        }
        None => {
            let (session, _) = app::session(&platform, &args).await?;
            (args.credential.provider.clone(), session.verify().await?)
        }
    };
    println!("{provider}: {}", verified.summary);
    Ok(ExitCode::SUCCESS)
}

pub async fn run(app: &App, command: ActionCommand) -> Result<ExitCode> {
    let platform = app.platform().await?;
    match command {
        ActionCommand::List { schemas, json } => {
            let description = platform.describe(app.default_provider()).await?;
            if json {
                let actions: Vec<_> = description
                    .actions
                    .iter()
                    .map(|a| {
                        let schema = serde_json::from_str::<serde_json::Value>(&a.input_schema).unwrap_or_default();
                        serde_json::json!({"name": a.name, "read_only": a.read_only, "description": a.description,
                            "input_schema": schema})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&actions)?);
                return Ok(ExitCode::SUCCESS);
            }
            for action in &description.actions {
                let access = if action.read_only { "read" } else { "write" };
                println!("{:<30} {access:<5} {}", action.name, action.description);
                if schemas {
                    println!("{:<30} input: {}", "", action.input_schema);
                }
            }
        }
        ActionCommand::Run { name, input, connection } => {
            let input = match input {
                Some(text) => app::read_text_argument(&text).context("reading --input")?,
                None => "{}".to_string(),
            };
            let (session, _) = app::session(&platform, &connection).await?;
            let output = session.run_action(&name, &input).await?;
            println!("{}", pretty_json(&output));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ProxyArgs {
    /// GET, POST, PUT, PATCH or DELETE.
    pub method: String,
    /// Path relative to the provider's base URL, e.g. /v2/users.
    pub path: String,
    /// Query parameter (repeatable).
    #[arg(long = "query", short = 'q', value_name = "KEY=VALUE")]
    pub query: Vec<String>,
    /// Request header (repeatable); Authorization is set by terapi.
    #[arg(long = "header", short = 'H', value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// Request body: JSON text, @FILE, or - for stdin.
    #[arg(long, short = 'd')]
    pub data: Option<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

pub async fn proxy(app: &App, args: ProxyArgs) -> Result<ExitCode> {
    let method: Method = args.method.parse().map_err(|e: String| anyhow!(e))?;
    let request = OutboundRequest {
        method,
        path: args.path,
        query: args.query.iter().map(|q| app::split_pair(q, '=', "--query")).collect::<Result<_>>()?,
        headers: args.headers.iter().map(|h| app::split_pair(h, ':', "--header")).collect::<Result<_>>()?,
        body: args
            .data
            .map(|d| app::read_text_argument(&d).map(String::into_bytes))
            .transpose()
            .context("reading --data")?,
        // Only methods idempotent by definition are retried.
        idempotent: matches!(method, Method::Get | Method::Put | Method::Delete),
    };
    let platform = app.platform().await?;
    let (session, _) = app::session(&platform, &args.connection).await?;
    let response = session.proxy(request).await?;
    eprintln!("HTTP {}", response.status);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&response.body)?;
    if !response.body.ends_with(b"\n") {
        stdout.write_all(b"\n")?;
    }
    Ok(if response.status >= 400 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_string())
}
