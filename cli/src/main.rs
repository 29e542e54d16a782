//! `terapi`: run provider components (the Gong provider is bundled) against a
//! connection from the command line.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use terapi_host::{
    BASE_URL_CONFIG_KEY, Connection, Credentials, Method, OutboundRequest, PageSink, ProviderComponent, Providers,
    Runtime, RuntimeConfig, Secret, SyncOptions, SyncPage,
};

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
    /// Compile the component afresh and keep nothing on disk.
    #[arg(long, global = true)]
    no_cache: bool,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG also works.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Args, Clone)]
struct ConnectionArgs {
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
enum SyncCommand {
    /// The syncs the component offers.
    List,
    /// Run a sync to the end, writing one JSON record per line.
    Run {
        /// Sync name (see `terapi sync list`).
        name: String,
        /// Write records here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Resume from a checkpoint printed by an earlier run.
        #[arg(long)]
        checkpoint: Option<String>,
        /// Only records changed after this RFC 3339 time (incremental syncs).
        #[arg(long, value_name = "TIME")]
        modified_since: Option<String>,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

#[derive(Subcommand)]
enum ActionCommand {
    /// The actions the component offers, with their input schema.
    List,
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let providers = load_providers(cli.global.providers.as_deref())?;
    if let Command::Providers { command: ProvidersCommand::List } = &cli.command {
        list_providers(&providers);
        return Ok(ExitCode::SUCCESS);
    }
    let cache_dir = if cli.global.no_cache { None } else { cli.global.cache_dir.clone().or_else(default_cache_dir) };
    let runtime = Runtime::new(RuntimeConfig { cache_dir, ..RuntimeConfig::default() })?;
    let component = load_component(&runtime, cli.global.component.as_deref())?;

    match cli.command {
        Command::Providers { .. } => unreachable!("handled above"),
        Command::Verify(args) => {
            let connection = connection(&args)?;
            let session = runtime.connect(&component, providers.get(&args.provider)?, &connection)?;
            let verified = session.verify().await?;
            println!("{}: {}", args.provider, verified.summary);
        }
        Command::Sync { command: SyncCommand::List } => {
            let description = runtime.describe(&component).await?;
            for sync in description.syncs {
                let mode = if sync.incremental { "incremental" } else { "full" };
                println!("{:<20} {:<14} {:<11} {}", sync.name, sync.model, mode, sync.description);
            }
        }
        Command::Sync { command: SyncCommand::Run { name, output, checkpoint, modified_since, connection: args } } => {
            let connection = connection(&args)?;
            let session = runtime.connect(&component, providers.get(&args.provider)?, &connection)?;
            let mut sink = NdjsonSink::open(output.as_deref())?;
            let options = SyncOptions { modified_since };
            let result = terapi_host::run_sync(&session, &name, checkpoint, &options, &mut sink).await;
            if sink.broken_pipe {
                // The reader (e.g. `| head`) has all it wants.
                return Ok(ExitCode::SUCCESS);
            }
            sink.flush()?;
            match result {
                Ok(run) => eprintln!("{name}: {} records in {} pages, done", run.records, run.pages),
                Err(error) => {
                    if let Some(resume) = &sink.last_checkpoint {
                        eprintln!(
                            "{name}: stopped after {} records in {} pages; resume with --checkpoint '{resume}'",
                            sink.records, sink.pages
                        );
                    }
                    return Err(error.into());
                }
            }
        }
        Command::Action { command: ActionCommand::List } => {
            let description = runtime.describe(&component).await?;
            for action in description.actions {
                println!("{:<20} {}\n{:<20} input: {}", action.name, action.description, "", action.input_schema);
            }
        }
        Command::Action { command: ActionCommand::Run { name, input, connection: args } } => {
            let input = match input {
                Some(text) => read_text_argument(&text).context("reading --input")?,
                None => "{}".to_string(),
            };
            let connection = connection(&args)?;
            let session = runtime.connect(&component, providers.get(&args.provider)?, &connection)?;
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
                body: data.map(|d| read_text_argument(&d).map(String::into_bytes)).transpose().context("reading --data")?,
            };
            let connection = connection(&args)?;
            let session = runtime.connect(&component, providers.get(&args.provider)?, &connection)?;
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
    }
    Ok(ExitCode::SUCCESS)
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
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

/// Builds the connection from flags and environment; says which value is missing.
fn connection(args: &ConnectionArgs) -> Result<Connection> {
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
    Ok(Connection { id: "cli".into(), provider: args.provider.clone(), credentials, config })
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

/// Writes each record's JSON on its own line as pages arrive, so memory stays
/// flat however large the sync.
struct NdjsonSink {
    out: BufWriter<Box<dyn Write>>,
    pages: u64,
    records: u64,
    last_checkpoint: Option<String>,
    broken_pipe: bool,
}

impl NdjsonSink {
    fn open(path: Option<&Path>) -> Result<Self> {
        let out: Box<dyn Write> = match path {
            Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
            None => Box::new(std::io::stdout()),
        };
        Ok(NdjsonSink { out: BufWriter::with_capacity(256 * 1024, out), pages: 0, records: 0, last_checkpoint: None, broken_pipe: false })
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().context("writing records")
    }
}

impl PageSink for NdjsonSink {
    async fn accept(&mut self, page: &SyncPage) -> Result<(), String> {
        let written = page
            .records
            .iter()
            .try_for_each(|record| {
                self.out.write_all(record.json.as_bytes())?;
                self.out.write_all(b"\n")
            })
            // Flushed per page: a checkpoint printed for resuming must never
            // be ahead of the records actually written.
            .and_then(|()| self.out.flush());
        if let Err(e) = written {
            self.broken_pipe = e.kind() == std::io::ErrorKind::BrokenPipe;
            return Err(format!("writing records: {e}"));
        }
        self.pages += 1;
        self.records += page.records.len() as u64;
        self.last_checkpoint = page.next_checkpoint.clone();
        Ok(())
    }
}
