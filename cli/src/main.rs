//! `terapi`: the platform (terapi-platform) from the command line, with the
//! Gong provider bundled. This file is the command line itself: arguments
//! and dispatch. What each command does is in `commands/`, and the work
//! behind it in the platform crate.

mod app;
mod authorize;
mod commands;
mod signals;
mod sinks;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use app::{GlobalArgs, LogFormat};
use commands::action::ActionCommand;
use commands::connection::ConnectionCommand;
use commands::connection_args::ConnectionArgs;
use commands::mcp::McpCommand;
use commands::providers::ProvidersCommand;
use commands::records::RecordsCommand;
use commands::serve::{KeyCommand, MasterKeyCommand, ServeArgs};
use commands::sync::{RunsCommand, SyncCommand};
use commands::tool::{AuditCommand, ProfileCommand, ToolCommand, ToolsetCommand};
use commands::webhooks::WebhooksCommand;

#[derive(Parser)]
#[command(
    name = "terapi",
    version,
    about = "Run integration provider components (Gong bundled) in a sandbox against your connections",
    long_about = "Run integration provider components (Gong bundled) in a sandbox against your connections.\n\n\
        The component never sees your credential: terapi resolves the provider's base URL, injects the \
        credential and performs every HTTP request itself.\n\n\
        Give credentials through the environment (GONG_ACCESS_KEY, GONG_ACCESS_KEY_SECRET, or \
        GONG_ACCESS_TOKEN for gong-oauth) rather than flags, which other users of the machine can see."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The providers in providers.yaml.
    Providers {
        #[command(subcommand)]
        command: ProvidersCommand,
    },
    /// Check a credential against the provider with one cheap call.
    Verify(ConnectionArgs),
    /// Save, list, show, rotate or delete connections (kept in the data dir).
    Connection {
        #[command(subcommand)]
        command: ConnectionCommand,
    },
    /// Read records saved by syncs of a saved connection.
    Records {
        #[command(subcommand)]
        command: RecordsCommand,
    },
    /// Serve the component's approved actions to AI clients as MCP tools.
    Mcp {
        #[command(subcommand)]
        command: McpCommand,
    },
    /// Receive the provider's webhooks (Gong Automation Rules) into the store.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Approve or deny tools per connection, and set its default classification.
    Tool {
        #[command(subcommand)]
        command: ToolCommand,
    },
    /// Named, editable sets of tools, which access profiles bind to users.
    Toolset {
        #[command(subcommand)]
        command: ToolsetCommand,
    },
    /// Access profiles: which users may use which toolsets on which connections.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// The audit log of MCP tool calls.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Serve Nango's public API (records, syncs, actions, proxy,
    /// connections, Connect), run scheduled syncs and send change webhooks.
    Serve(ServeArgs),
    /// Secret API keys for `terapi serve` (stored hashed; shown once).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// List or run syncs.
    Sync {
        #[command(subcommand)]
        command: SyncCommand,
    },
    /// Make a new master key for TERAPI_MASTER_KEY (every process of a fleet
    /// on one PostgreSQL store needs the same one); printed once.
    MasterKey {
        #[command(subcommand)]
        command: MasterKeyCommand,
    },
    /// Shell completions: `terapi completions bash > /etc/bash_completion.d/terapi`.
    Completions {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(["bash", "zsh", "fish", "elvish", "powershell"]))]
        shell: String,
    },
    /// The history of sync runs: when, by whom, pages, records, duration, outcome.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Run due syncs (see `sync schedule`) until stopped: start several,
    /// on one machine or many sharing a --database-url.
    Worker(commands::sync::WorkerArgs),
    /// List or run actions.
    Action {
        #[command(subcommand)]
        command: ActionCommand,
    },
    /// Send a raw request through the provider; prints the response body.
    Proxy(commands::action::ProxyArgs),
}

// Parsed once per process; boxing the big variant would buy nothing.
// Parsed once per process; boxing the big variant would buy nothing.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let service = matches!(cli.command, Command::Serve(_) | Command::Worker(_));
    init_logging(cli.global.verbose + u8::from(service), cli.global.log_format);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit_code(&error))
        }
    }
}

/// Exit codes a script can act on (README, "Exit codes"): 1 any other
/// failure, 2 usage (clap's), 3 the provider refused the credential, 4 rate
/// limited or out of budget, 5 the store failed, 130 interrupted.
fn exit_code(error: &anyhow::Error) -> u8 {
    use terapi_host::{EgressError, Error as HostError, ProviderFailure};
    use terapi_platform::PlatformError;
    let egress = |e: &EgressError| match e {
        EgressError::Reauthorize(_) => Some(3),
        EgressError::RateLimited(_) => Some(4),
        _ => None,
    };
    let host = |e: &HostError| match e {
        HostError::Provider(ProviderFailure::Unauthorized(_)) => Some(3),
        HostError::Provider(ProviderFailure::Http(h)) | HostError::Http(h) => egress(h),
        _ => None,
    };
    for cause in error.chain() {
        let code = if let Some(e) = cause.downcast_ref::<PlatformError>() {
            match e {
                PlatformError::Store(_) => Some(5),
                PlatformError::NotSaved { source, .. } | PlatformError::Host(source) => host(source),
                PlatformError::Interrupted { .. } => Some(130),
                _ => None,
            }
        } else if let Some(e) = cause.downcast_ref::<HostError>() {
            host(e)
        } else if let Some(e) = cause.downcast_ref::<EgressError>() {
            egress(e)
        } else if cause.downcast_ref::<terapi_store::StoreError>().is_some() {
            Some(5)
        } else {
            None
        };
        if let Some(code) = code {
            return code;
        }
    }
    1
}

fn init_logging(verbose: u8, format: LogFormat) {
    let default = match verbose {
        // rmcp warns about every JSON-RPC error it answers (a refused tool,
        // a cancelled call): the client has those; the audit log keeps them.
        0 => "warn,rmcp=error",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal, never into a log file or pipe.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(ansi).with_target(false).init(),
        // Flattened: `{"timestamp","level","message","connection",…}`.
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let app = app::App::new(cli.global)?;
    match cli.command {
        Command::Providers { command: ProvidersCommand::List { json } } => commands::providers::list(&app, json),
        Command::Verify(args) => commands::action::verify(&app, args).await,
        Command::Connection { command } => commands::connection::run(&app, command).await,
        Command::Records { command } => commands::records::run(&app, command).await,
        Command::Sync { command } => commands::sync::run(&app, command).await,
        Command::Runs { command } => commands::sync::runs(&app, command).await,
        Command::MasterKey { command: MasterKeyCommand::Generate } => {
            println!("{}", terapi_store::MasterKey::generate_base64());
            eprintln!(
                "set it as TERAPI_MASTER_KEY for every terapi process on the store; keep a copy: without it the saved credentials cannot be read"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let shell: clap_complete::Shell = shell.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "terapi",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Action { command } => commands::action::run(&app, command).await,
        Command::Proxy(args) => commands::action::proxy(&app, args).await,
        Command::Tool { command } => commands::tool::run(&app, command).await,
        Command::Worker(args) => commands::sync::worker(&app, args).await,
        Command::Audit { command } => commands::tool::audit(&app, command).await,
        Command::Toolset { command } => commands::tool::toolset(&app, command).await,
        Command::Profile { command } => commands::tool::profile(&app, command).await,
        Command::Serve(args) => commands::serve::serve(&app, args).await,
        Command::Key { command } => commands::serve::key(&app, command).await,
        Command::Mcp { command } => commands::mcp::run(&app, command).await,
        Command::Webhooks { command } => commands::webhooks::run(&app, command).await,
    }
}
