//! `terapi`: run provider components (the Gong provider is bundled) against a
//! connection from the command line.

mod authorize;
mod mcp;
mod sinks;
mod webhooks;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use sinks::{NdjsonSink, Progress};
use terapi_host::{
    BASE_URL_CONFIG_KEY, Connection, Credentials, Method, OutboundRequest, ProviderComponent, Providers, Runtime,
    RuntimeConfig, Secret, SyncOptions,
};
use terapi_store::{MasterKey, Store};

const BUNDLED_PROVIDERS: &str = include_str!("../../providers.yaml");

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

#[derive(Args)]
struct GlobalArgs {
    /// providers.yaml to read [default: the one bundled with terapi].
    #[arg(long, env = "TERAPI_PROVIDERS", global = true, value_name = "FILE")]
    providers: Option<PathBuf>,
    /// Provider component (.wasm) to run [default: the bundled Gong component].
    #[arg(long, env = "TERAPI_COMPONENT", global = true, value_name = "FILE")]
    component: Option<PathBuf>,
    /// Directory for compiled components [default: $XDG_CACHE_HOME/terapi or ~/.cache/terapi].
    #[arg(long, env = "TERAPI_CACHE_DIR", global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Where connections, checkpoints and records are kept
    /// [default: $XDG_DATA_HOME/terapi or ~/.local/share/terapi].
    #[arg(long, env = "TERAPI_DATA_DIR", global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Compile the component afresh and keep nothing on disk.
    #[arg(long, global = true)]
    no_cache: bool,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG also works.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Args, Clone)]
struct ConnectionArgs {
    /// A saved connection (see `terapi connection create`); replaces the credential flags.
    #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
    connection: Option<String>,
    #[command(flatten)]
    credential: CredentialArgs,
}

/// A credential given directly, from flags or the environment.
#[derive(Args, Clone)]
struct CredentialArgs {
    /// Provider key in providers.yaml: `gong` (access key) or `gong-oauth` (access token).
    #[arg(long, env = "TERAPI_PROVIDER", default_value = "gong")]
    provider: String,
    /// Gong access key (the basic-auth user name).
    #[arg(long, env = "GONG_ACCESS_KEY", hide_env_values = true, alias = "username")]
    access_key: Option<String>,
    /// Gong access key secret (the basic-auth password). Prefer the env var.
    #[arg(long, env = "GONG_ACCESS_KEY_SECRET", hide_env_values = true, alias = "password")]
    access_key_secret: Option<String>,
    /// OAuth access token, for `gong-oauth`. Prefer the env var.
    #[arg(long, env = "GONG_ACCESS_TOKEN", hide_env_values = true)]
    access_token: Option<String>,
    /// Your Gong API base URL, e.g. https://us-44392.api.gong.io [default: https://api.gong.io].
    #[arg(long, env = "GONG_BASE_URL")]
    base_url: Option<String>,
    /// Other connection config, as in providers.yaml's `connection_config` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
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
    /// Approve or deny actions as MCP tools (read-only ones start approved).
    Tool {
        #[command(subcommand)]
        command: ToolCommand,
    },
    /// The audit log of MCP tool calls.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// List or run syncs.
    Sync {
        #[command(subcommand)]
        command: SyncCommand,
    },
    /// List or run actions.
    Action {
        #[command(subcommand)]
        command: ActionCommand,
    },
    /// Send a raw request through the provider; prints the response body.
    Proxy {
        /// GET, POST, PUT, PATCH or DELETE.
        method: String,
        /// Path relative to the provider's base URL, e.g. /v2/users.
        path: String,
        /// Query parameter (repeatable).
        #[arg(long = "query", short = 'q', value_name = "KEY=VALUE")]
        query: Vec<String>,
        /// Request header (repeatable); Authorization is set by terapi.
        #[arg(long = "header", short = 'H', value_name = "NAME:VALUE")]
        headers: Vec<String>,
        /// Request body: JSON text, @FILE, or - for stdin.
        #[arg(long, short = 'd')]
        data: Option<String>,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

#[derive(Subcommand)]
enum ProvidersCommand {
    /// One line per provider: key, auth mode, base URL, docs.
    List,
}

#[derive(Subcommand)]
enum ConnectionCommand {
    /// Verify a credential with the provider, then save it (secrets encrypted).
    Create {
        /// Your name for the connection, e.g. `acme-gong`.
        id: String,
        #[command(flatten)]
        credential: CredentialArgs,
    },
    /// Authorize an OAuth connection (gong-oauth): open the printed URL, approve,
    /// and the redirect to 127.0.0.1 completes it. Needs GONG_OAUTH_CLIENT_ID and
    /// GONG_OAUTH_CLIENT_SECRET. Re-authorizing keeps records and checkpoints.
    Authorize {
        id: String,
        /// An OAUTH2 provider from providers.yaml.
        #[arg(long, default_value = "gong-oauth")]
        provider: String,
        /// Port of the local redirect listener (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The redirect URI registered with the OAuth app [default: http://127.0.0.1:PORT/callback].
        #[arg(long)]
        redirect_uri: Option<String>,
        /// Skip the listener: exchange a code copied from the redirect by hand.
        #[arg(long)]
        code: Option<String>,
        /// Scopes to ask for (repeatable) [default: what the component needs].
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Saved connections (never their secrets).
    List,
    /// One connection and the state of its syncs (never its secret).
    Show { id: String },
    /// Replace a connection's credential in place; checkpoints and records stay.
    Rotate {
        id: String,
        #[command(flatten)]
        credential: CredentialArgs,
    },
    /// Delete a connection with its checkpoints and records.
    Delete { id: String },
}

#[derive(Subcommand)]
enum McpCommand {
    /// Speak MCP over stdio (register this command in an MCP client's config).
    Serve {
        /// The saved connection the tools act on.
        #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
        connection: String,
        /// Caller name for the audit log when the client does not give one.
        #[arg(long)]
        caller: Option<String>,
        /// Speak MCP's streamable HTTP at http://ADDR/mcp instead of stdio.
        /// Loopback only (port 0: any free port; printed on start): the
        /// endpoint has no authentication of its own.
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Listen for POSTs to /webhooks/gong and store what they carry.
    Serve {
        /// Address to listen on (port 0: any free port; printed on start).
        #[arg(long, default_value = "127.0.0.1:8787")]
        bind: std::net::SocketAddr,
        /// The saved connection the records belong to.
        #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
        connection: String,
        /// Gong's public key (PEM) for signed rules; unsigned or badly signed
        /// payloads are then rejected with 401.
        #[arg(long, value_name = "PEM_FILE")]
        public_key: Option<PathBuf>,
        /// Largest body accepted, in bytes.
        #[arg(long, default_value_t = 4 << 20)]
        max_body_bytes: usize,
    },
}

#[derive(Subcommand)]
enum ToolCommand {
    /// Every action with its toolset and status (approved, pending, denied).
    List {
        #[arg(long, default_value = "gong")]
        provider: String,
    },
    /// Let MCP clients list and call these tools.
    Approve {
        #[arg(required = true)]
        tools: Vec<String>,
        #[arg(long, default_value = "gong")]
        provider: String,
    },
    /// Hide these tools from MCP clients and refuse their calls.
    Deny {
        #[arg(required = true)]
        tools: Vec<String>,
        #[arg(long, default_value = "gong")]
        provider: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// The newest tool calls: time, caller, connection, tool, input hash, status, duration.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum RecordsCommand {
    /// Print saved records of a model as NDJSON.
    List {
        /// Model name (see `terapi sync list`), e.g. GongUser.
        model: String,
        /// Only records changed after this time (RFC 3339 or unix seconds).
        #[arg(long, value_name = "TIME")]
        modified_after: Option<String>,
        /// The saved connection.
        #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
        connection: String,
    },
}

// Parsed once per process; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum SyncCommand {
    /// The syncs the component offers.
    List,
    /// Per sync of a saved connection: last run, records, checkpoint, last error.
    Status {
        #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
        connection: String,
    },
    /// Run a sync to the end. With --connection, records are saved page by page
    /// and a rerun resumes where the last one stopped; otherwise they are
    /// written as NDJSON.
    Run {
        /// Sync name (see `terapi sync list`).
        name: String,
        /// Write records here instead of stdout (without --connection).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Start from this checkpoint (without --connection: printed by an earlier run).
        #[arg(long)]
        checkpoint: Option<String>,
        /// Start from the beginning, ignoring the saved checkpoint.
        #[arg(long)]
        full: bool,
        /// Only records changed after this RFC 3339 time (incremental syncs).
        #[arg(long, value_name = "TIME")]
        modified_since: Option<String>,
        /// How far back an incremental sync's first run reaches [default: 30].
        #[arg(long, value_name = "DAYS")]
        backfill_days: Option<u32>,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

// Parsed once per process; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum ActionCommand {
    /// The actions the component offers, one line each.
    List {
        /// Also print each action's input JSON Schema.
        #[arg(long)]
        schemas: bool,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let providers = load_providers(cli.global.providers.as_deref())?;
    let data_dir = cli.global.data_dir.clone().or_else(default_data_dir);
    let app = App { providers, data_dir, store: std::cell::OnceCell::new() };
    match cli.command {
        Command::Providers { command: ProvidersCommand::List } => {
            list_providers(&app.providers);
            Ok(ExitCode::SUCCESS)
        }
        Command::Connection { command: ConnectionCommand::List } => {
            let store = app.open_store()?;
            for c in store.connections()? {
                let base = c.config.get(BASE_URL_CONFIG_KEY).map(String::as_str).unwrap_or("(default base URL)");
                println!("{:<20} {:<11} {:<7} {}", c.id, c.provider, c.auth_mode, base);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Connection { command: ConnectionCommand::Show { id } } => {
            let store = app.open_store()?;
            let summary = store.connection_summary(&id)?;
            let syncs = store.sync_states(&id)?;
            let shown = serde_json::json!({ "connection": summary, "syncs": syncs });
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Connection { command: ConnectionCommand::Delete { id } } => {
            app.open_store()?.delete_connection(&id)?;
            eprintln!("connection `{id}` deleted, with its checkpoints and records");
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync { command: SyncCommand::Status { connection } } => {
            let store = app.open_store()?;
            store.connection_summary(&connection)?;
            let states = store.sync_states(&connection)?;
            if states.is_empty() {
                eprintln!("no sync has run for `{connection}` yet");
            }
            for s in states {
                println!(
                    "{:<18} {:<8} records={:<8} pages={:<6} last_run={} checkpoint={}{}",
                    s.sync,
                    s.status,
                    s.records,
                    s.pages,
                    s.last_finished_at.or(s.last_started_at).map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                    if s.checkpoint.is_some() { "saved" } else { "none (next run starts from the beginning)" },
                    s.last_error.map(|e| format!("\n{:<18} last error: {e}", "")).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Records { command: RecordsCommand::List { model, modified_after, connection } } => {
            let store = app.open_store()?;
            store.connection_summary(&connection)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let count = store.for_each_record(&connection, &model, modified_after.as_deref(), |json| {
                out.write_all(json.as_bytes())?;
                out.write_all(b"\n")
            })?;
            let _ = out.flush();
            eprintln!("{count} {model} records");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::List { limit } } => {
            for e in app.open_store()?.audit_entries(limit)? {
                println!(
                    "{} {:<16} {:<14} {:<28} {:<8} {:>6}ms sha256:{}{}",
                    e.at,
                    e.caller,
                    e.connection_id,
                    e.tool,
                    e.status,
                    e.duration_ms,
                    &e.input_sha256[..16.min(e.input_sha256.len())],
                    e.detail.map(|d| format!("  ({d})")).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        command => app.run_with_component(command, &cli.global).await,
    }
}

/// What the commands share: providers.yaml, and the store once opened.
struct App {
    providers: Providers,
    data_dir: Option<PathBuf>,
    store: std::cell::OnceCell<Store>,
}

impl App {
    fn open_store(&self) -> Result<Store> {
        let dir =
            self.data_dir.as_deref().ok_or_else(|| anyhow!("no data directory: set --data-dir or TERAPI_DATA_DIR"))?;
        let key = MasterKey::from_env_or_file(dir)?;
        Store::open(dir, key).with_context(|| format!("opening the store in {}", dir.display()))
    }

    fn store(&self) -> Result<&Store> {
        if self.store.get().is_none() {
            let _ = self.store.set(self.open_store()?);
        }
        Ok(self.store.get().expect("set above"))
    }

    /// A session; a saved OAuth connection refreshes its token and saves the
    /// new one when the OAuth app's credentials are in the environment.
    fn session<'r>(
        &self,
        runtime: &'r Runtime,
        component: &ProviderComponent,
        connection: &Connection,
        saved: bool,
    ) -> Result<terapi_host::Session<'r>> {
        let spec = self.providers.get(&connection.provider)?;
        let refresher = match (&connection.credentials, saved) {
            (Credentials::OAuth2 { .. }, true) => match authorize::client_from_env(String::new()) {
                Ok(client) => {
                    let dir = self.data_dir.clone().unwrap_or_default();
                    let id = connection.id.clone();
                    let on_refresh: terapi_host::oauth::OnRefresh = std::sync::Arc::new(move |tokens| {
                        let credentials = terapi_host::egress::credentials_from(tokens);
                        let saved = MasterKey::from_env_or_file(&dir)
                            .and_then(|key| Store::open(&dir, key))
                            .and_then(|store| store.save_tokens(&id, &credentials, &tokens.metadata));
                        if let Err(e) = saved {
                            tracing::warn!("the refreshed token of `{id}` could not be saved: {e}");
                        }
                    });
                    Some(terapi_host::TokenRefresher { client, on_refresh })
                }
                Err(_) => None,
            },
            _ => None,
        };
        Ok(runtime.connect_with_refresh(component, spec, connection, refresher)?)
    }

    /// The connection from `--connection` (the store) or from the credential flags.
    fn connection(&self, args: &ConnectionArgs) -> Result<Connection> {
        match &args.connection {
            Some(id) => Ok(self.store()?.connection(id)?),
            None => connection_from(&args.credential, "cli"),
        }
    }

    async fn run_with_component(self, command: Command, global: &GlobalArgs) -> Result<ExitCode> {
        let cache_dir = if global.no_cache { None } else { global.cache_dir.clone().or_else(default_cache_dir) };
        let runtime = Runtime::new(RuntimeConfig { cache_dir, ..RuntimeConfig::default() })?;
        let component = load_component(&runtime, global.component.as_deref())?;
        match command {
            Command::Verify(args) => {
                let connection = self.connection(&args)?;
                let session = self.session(&runtime, &component, &connection, args.connection.is_some())?;
                let verified = session.verify().await?;
                if args.connection.is_some() {
                    self.store()?.mark_verified(&connection.id)?;
                }
                println!("{}: {}", connection.provider, verified.summary);
            }
            Command::Connection { command: ConnectionCommand::Create { id, credential } } => {
                let connection = connection_from(&credential, &id)?;
                let store = self.store()?;
                if store.connection_summary(&id).is_ok() {
                    return Err(terapi_store::StoreError::ConnectionExists(id).into());
                }
                // Like "paste key and secret, click Save": only a credential
                // the provider accepts is saved.
                let session = self.session(&runtime, &component, &connection, false)?;
                let verified = session.verify().await.context("the credential was not saved")?;
                store.create_connection(&connection)?;
                println!("connection `{id}` saved ({})", verified.summary);
            }
            Command::Connection {
                command: ConnectionCommand::Authorize { id, provider, port, redirect_uri, code, scopes },
            } => {
                let spec = self.providers.get(&provider)?;
                if spec.auth_mode != terapi_host::AuthMode::OAuth2 {
                    bail!("provider `{provider}` does not use OAuth; use `connection create` with an access key");
                }
                let listener = match &code {
                    Some(_) => None,
                    None => Some(
                        tokio::net::TcpListener::bind(("127.0.0.1", port))
                            .await
                            .context("starting the redirect listener")?,
                    ),
                };
                let redirect_uri = match (redirect_uri, &listener) {
                    (Some(uri), _) => uri,
                    (None, Some(l)) => format!("http://127.0.0.1:{}/callback", l.local_addr()?.port()),
                    (None, None) => bail!("with --code, give the --redirect-uri registered with the OAuth app"),
                };
                let client = authorize::client_from_env(redirect_uri)?;
                let scopes = if scopes.is_empty() {
                    runtime.describe(&component).await?.requirements.oauth2_scopes
                } else {
                    scopes
                };
                let state = terapi_host::oauth::random_state();
                let config = BTreeMap::new();
                let url = terapi_host::oauth::authorization_url(spec, &config, &client, &state, &scopes)?;
                let code = match (code, listener) {
                    (Some(code), _) => code,
                    (None, Some(listener)) => {
                        eprintln!(
                            "Open this URL in a browser and approve access:\n\n  {url}\n\nWaiting for the redirect to {} ...",
                            client.redirect_uri
                        );
                        authorize::wait_for_code(listener, &state, std::time::Duration::from_secs(600)).await?
                    }
                    (None, None) => unreachable!("a listener exists unless --code was given"),
                };
                let tokens =
                    terapi_host::oauth::exchange_code(runtime.http_client(), spec, &config, &client, &code).await?;
                let connection = Connection {
                    id: id.clone(),
                    provider: provider.clone(),
                    credentials: terapi_host::egress::credentials_from(&tokens),
                    config: tokens.metadata.clone(),
                };
                let session = runtime.connect(&component, spec, &connection)?;
                let verified = session.verify().await.context("the authorization was not saved")?;
                let store = self.store()?;
                if store.connection_summary(&id).is_ok() {
                    store.save_tokens(&id, &connection.credentials, &connection.config)?;
                } else {
                    store.create_connection(&connection)?;
                }
                let base =
                    connection.config.get(BASE_URL_CONFIG_KEY).map(String::as_str).unwrap_or("the default base URL");
                println!("connection `{id}` authorized ({}; API at {base})", verified.summary);
            }
            Command::Connection { command: ConnectionCommand::Rotate { id, credential } } => {
                let mut connection = self.store()?.connection(&id)?;
                let new = connection_from(&credential, &id)?;
                connection.credentials = new.credentials;
                let session = self.session(&runtime, &component, &connection, false)?;
                let verified =
                    session.verify().await.context("the new credential was not saved; the old one is kept")?;
                self.store()?.rotate_credentials(&id, &connection.credentials)?;
                println!("connection `{id}`: credential replaced ({})", verified.summary);
            }
            Command::Sync { command: SyncCommand::List } => {
                let description = runtime.describe(&component).await?;
                for sync in description.syncs {
                    let mode = if sync.incremental { "incremental" } else { "full" };
                    println!("{:<20} {:<22} {:<11} {}", sync.name, sync.model, mode, sync.description);
                }
            }
            Command::Sync {
                command:
                    SyncCommand::Run { name, output, checkpoint, full, modified_since, backfill_days, connection: args },
            } => {
                let connection = self.connection(&args)?;
                let session = self.session(&runtime, &component, &connection, args.connection.is_some())?;
                let options = SyncOptions { modified_since, backfill_days };
                if args.connection.is_some() {
                    if output.is_some() {
                        bail!(
                            "--output is for syncs without --connection; read saved records with `terapi records list`"
                        );
                    }
                    let description = runtime.describe(&component).await?;
                    let model = description
                        .syncs
                        .iter()
                        .find(|s| s.name == name)
                        .map(|s| s.model.clone())
                        .ok_or_else(|| anyhow!("no sync named `{name}`; `terapi sync list` shows them"))?;
                    let store = self.store()?;
                    let saved = store.begin_sync(&connection.id, &name, &model, full)?;
                    let start = checkpoint.or(saved);
                    let resumed = start.is_some();
                    let mut sink = Progress::new(store.page_sink(&connection.id, &name, &model), &name);
                    let result = terapi_host::run_sync(&session, &name, start, &options, &mut sink).await;
                    sink.finish();
                    let (pages, records) = (sink.pages, sink.records);
                    drop(sink);
                    match result {
                        Ok(run) => {
                            store.finish_sync(&connection.id, &name, Ok(&run))?;
                            let from = if resumed { "resumed from the saved checkpoint" } else { "from the beginning" };
                            eprintln!("{name}: {records} records in {pages} pages saved ({from}), done");
                        }
                        Err(error) => {
                            let message = error.to_string();
                            store.finish_sync(&connection.id, &name, Err(&message))?;
                            eprintln!(
                                "{name}: {records} records in {pages} pages saved before the error; run again to resume"
                            );
                            return Err(error.into());
                        }
                    }
                } else {
                    let mut sink = Progress::new(NdjsonSink::open(output.as_deref())?, &name);
                    let result = terapi_host::run_sync(&session, &name, checkpoint, &options, &mut sink).await;
                    sink.finish();
                    if sink.inner.broken_pipe {
                        // The reader (e.g. `| head`) has all it wants.
                        return Ok(ExitCode::SUCCESS);
                    }
                    sink.inner.flush()?;
                    match result {
                        Ok(run) => eprintln!("{name}: {} records in {} pages, done", run.records, run.pages),
                        Err(error) => {
                            if let Some(resume) = &sink.inner.last_checkpoint {
                                eprintln!(
                                    "{name}: stopped after {} records in {} pages; resume with --checkpoint '{resume}'",
                                    sink.records, sink.pages
                                );
                            }
                            return Err(error.into());
                        }
                    }
                }
            }
            Command::Action { command: ActionCommand::List { schemas } } => {
                let description = runtime.describe(&component).await?;
                for action in description.actions {
                    println!("{:<30} {}", action.name, action.description);
                    if schemas {
                        println!("{:<30} input: {}", "", action.input_schema);
                    }
                }
            }
            Command::Action { command: ActionCommand::Run { name, input, connection: args } } => {
                let input = match input {
                    Some(text) => read_text_argument(&text).context("reading --input")?,
                    None => "{}".to_string(),
                };
                let connection = self.connection(&args)?;
                let session = self.session(&runtime, &component, &connection, args.connection.is_some())?;
                let output = session.run_action(&name, &input).await?;
                println!("{}", pretty_json(&output));
            }
            Command::Proxy { method, path, query, headers, data, connection: args } => {
                let method: Method = method.parse().map_err(|e: String| anyhow!(e))?;
                let request = OutboundRequest {
                    method,
                    path,
                    query: query.iter().map(|q| split_pair(q, '=', "--query")).collect::<Result<_>>()?,
                    headers: headers.iter().map(|h| split_pair(h, ':', "--header")).collect::<Result<_>>()?,
                    body: data
                        .map(|d| read_text_argument(&d).map(String::into_bytes))
                        .transpose()
                        .context("reading --data")?,
                    // Only methods idempotent by definition are retried.
                    idempotent: matches!(method, Method::Get | Method::Put | Method::Delete),
                };
                let connection = self.connection(&args)?;
                let session = self.session(&runtime, &component, &connection, args.connection.is_some())?;
                let response = session.proxy(request).await?;
                eprintln!("HTTP {}", response.status);
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&response.body)?;
                if !response.body.ends_with(b"\n") {
                    stdout.write_all(b"\n")?;
                }
                if response.status >= 400 {
                    return Ok(ExitCode::FAILURE);
                }
            }
            Command::Tool { command } => {
                let store = self.store()?;
                let actions = runtime.describe(&component).await?.actions;
                let approve = matches!(command, ToolCommand::Approve { .. });
                match command {
                    ToolCommand::List { provider } => {
                        for action in &actions {
                            let status = mcp::status(store, &provider, &action.name)?;
                            println!(
                                "{:<30} {:<12} {:<9} {}",
                                action.name,
                                mcp::toolset(&action.name),
                                status,
                                action.description
                            );
                        }
                    }
                    ToolCommand::Approve { tools, provider } | ToolCommand::Deny { tools, provider } => {
                        for tool in &tools {
                            if !actions.iter().any(|a| &a.name == tool) {
                                bail!("no action named `{tool}`; `terapi tool list` shows them");
                            }
                        }
                        for tool in &tools {
                            store.set_tool_decision(&provider, tool, approve)?;
                            eprintln!("{tool}: {}", if approve { "approved" } else { "denied" });
                        }
                    }
                }
            }
            Command::Mcp { command: McpCommand::Serve { connection, caller, http } } => {
                use rmcp::ServiceExt as _;
                if let Some(address) = http.filter(|a| !a.ip().is_loopback()) {
                    bail!(
                        "--http {address}: the MCP endpoint acts with the connection's credential and has no \
                         authentication of its own, so it listens on loopback only; use 127.0.0.1:PORT or [::1]:PORT"
                    );
                }
                let store = std::sync::Arc::new(self.open_store()?);
                let connection = store.connection(&connection)?;
                let actions = runtime.describe(&component).await?.actions;
                // The server runs until the process ends, and so does the
                // runtime its one session borrows.
                let runtime: &'static Runtime = Box::leak(Box::new(runtime));
                let session = self.session(runtime, &component, &connection, true)?;
                let server = mcp::ToolServer::new(session, connection, store, actions, caller);
                if let Some(address) = http {
                    let listener = tokio::net::TcpListener::bind(address)
                        .await
                        .with_context(|| format!("listening on {address}"))?;
                    eprintln!("MCP (streamable HTTP) at http://{}/mcp", listener.local_addr()?);
                    axum::serve(listener, mcp::http_router(server)).await.context("the MCP HTTP server stopped")?;
                    return Ok(ExitCode::SUCCESS);
                }
                // stdout is the protocol channel from here on; logs go to stderr.
                let running = server.serve(rmcp::transport::stdio()).await.context("starting the MCP server")?;
                running.waiting().await.context("the MCP server stopped")?;
                return Ok(ExitCode::SUCCESS);
            }
            Command::Webhooks { command: WebhooksCommand::Serve { bind, connection, public_key, max_body_bytes } } => {
                let public_key = match public_key {
                    Some(path) => {
                        let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                        Some(
                            jsonwebtoken::DecodingKey::from_rsa_pem(&pem)
                                .with_context(|| format!("{} is not an RSA public key in PEM form", path.display()))?,
                        )
                    }
                    None => None,
                };
                let store = self.open_store()?;
                let connection = store.connection(&connection)?;
                let listener =
                    tokio::net::TcpListener::bind(bind).await.with_context(|| format!("listening on {bind}"))?;
                let address = listener.local_addr()?;
                let signed = if public_key.is_some() { "signed payloads only" } else { "unsigned payloads accepted" };
                eprintln!("listening on http://{address}/webhooks/gong ({signed})");
                let server = std::sync::Arc::new(webhooks::WebhookServer {
                    runtime,
                    component,
                    providers: self.providers,
                    connection,
                    store,
                    public_key,
                });
                axum::serve(listener, webhooks::router(server, max_body_bytes))
                    .with_graceful_shutdown(async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await
                    .context("the webhook server stopped")?;
                return Ok(ExitCode::SUCCESS);
            }
            Command::Providers { .. }
            | Command::Connection { .. }
            | Command::Records { .. }
            | Command::Audit { .. }
            | Command::Sync { command: SyncCommand::Status { .. } } => {
                unreachable!("handled without a component in run()")
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn default_data_dir() -> Option<PathBuf> {
    xdg_dir("XDG_DATA_HOME", ".local/share")
}

fn default_cache_dir() -> Option<PathBuf> {
    xdg_dir("XDG_CACHE_HOME", ".cache")
}

/// `$VAR/terapi`, or `$HOME/FALLBACK/terapi` (the XDG base directory rules).
fn xdg_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    let base = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(fallback)))?;
    Some(base.join("terapi"))
}

fn load_providers(path: Option<&Path>) -> Result<Providers> {
    Ok(match path {
        Some(path) => Providers::load(path)?,
        None => Providers::parse(BUNDLED_PROVIDERS, "bundled providers.yaml")?,
    })
}

fn load_component(runtime: &Runtime, path: Option<&Path>) -> Result<ProviderComponent> {
    match path {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading component {}", path.display()))?;
            runtime.load_component(&bytes).with_context(|| format!("loading {}", path.display()))
        }
        None => Ok(runtime.load_component(terapi_artifacts::PROVIDER_GONG)?),
    }
}

fn list_providers(providers: &Providers) {
    for (key, spec) in providers.iter() {
        println!(
            "{key:<12} {:<20} {:<7} {}  {}",
            spec.display_name,
            format!("{:?}", spec.auth_mode).to_uppercase(),
            spec.proxy.base_url,
            spec.docs.as_deref().unwrap_or("")
        );
    }
}

/// Builds a connection from flags and environment; says which value is missing.
fn connection_from(args: &CredentialArgs, id: &str) -> Result<Connection> {
    let mut config = BTreeMap::new();
    for pair in &args.config {
        let (k, v) = split_pair(pair, '=', "--config")?;
        config.insert(k, v);
    }
    if let Some(base_url) = &args.base_url {
        config.insert(BASE_URL_CONFIG_KEY.to_string(), base_url.clone());
    }
    let credentials = if let Some(token) = &args.access_token {
        Credentials::OAuth2 { access_token: Secret::new(token.clone()), refresh_token: None, expires_at: None }
    } else {
        let username = args.access_key.clone().ok_or_else(|| {
            anyhow!("no access key given; set GONG_ACCESS_KEY (or --access-key) to the access key from Gong > Company settings > Ecosystem > API")
        })?;
        let password = args.access_key_secret.clone().ok_or_else(|| {
            anyhow!("no access key secret given; set GONG_ACCESS_KEY_SECRET to the secret shown when the access key was created")
        })?;
        Credentials::Basic { username, password: Secret::new(password) }
    };
    Ok(Connection { id: id.to_string(), provider: args.provider.clone(), credentials, config })
}

fn split_pair(text: &str, separator: char, flag: &str) -> Result<(String, String)> {
    match text.split_once(separator) {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim_start().to_string())),
        _ => bail!("{flag} takes KEY{separator}VALUE, got `{text}`"),
    }
}

/// `text` itself, `@path` for a file's contents, or `-` for stdin.
fn read_text_argument(text: &str) -> Result<String> {
    if text == "-" {
        let mut buffer = String::new();
        std::io::stdin().read_to_string(&mut buffer)?;
        Ok(buffer)
    } else if let Some(path) = text.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
    } else {
        Ok(text.to_string())
    }
}

fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_string())
}
