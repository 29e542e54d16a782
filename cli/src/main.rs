//! `terapi`: the platform (terapi-platform) from the command line, with the
//! Gong provider bundled. This file is the command line itself: arguments
//! and dispatch. What each command does is in `commands/`, and the work
//! behind it in the platform crate.

mod app;
mod authorize;
mod commands;
mod signals;
mod sinks;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

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
pub struct GlobalArgs {
    /// providers.yaml to read [default: the one bundled with terapi]. Nango's
    /// own file loads as it is. Repeatable: an entry in an earlier file wins,
    /// and `bundled` names terapi's own, so `--providers bundled --providers
    /// nango.yaml` is both, terapi's entries first.
    #[arg(long, env = "TERAPI_PROVIDERS", global = true, value_name = "FILE|bundled", value_delimiter = ',')]
    pub providers: Vec<PathBuf>,
    /// A certificate authority (PEM) to trust beside the system's, for a
    /// provider on a private CA (repeatable).
    #[arg(long, env = "TERAPI_CA_CERT", global = true, value_name = "FILE", value_delimiter = ',')]
    pub ca_cert: Vec<PathBuf>,
    /// Provider component (.wasm): FILE serves every provider, PROVIDER=FILE
    /// one of them (repeatable) [default: the bundled Gong component serves
    /// gong and gong-oauth].
    #[arg(long, env = "TERAPI_COMPONENT", global = true, value_name = "[PROVIDER=]FILE")]
    pub component: Vec<String>,
    /// Directory for compiled components [default: $XDG_CACHE_HOME/terapi or ~/.cache/terapi].
    #[arg(long, env = "TERAPI_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Where connections, checkpoints and records are kept
    /// [default: $XDG_DATA_HOME/terapi or ~/.local/share/terapi].
    #[arg(long, env = "TERAPI_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep connections, syncs, records and request budgets in this
    /// PostgreSQL database instead of SQLite in the data dir, so several
    /// terapi processes on several machines share them (every one needs the
    /// same master key: set TERAPI_MASTER_KEY). Example:
    /// postgres://terapi:PASSWORD@db.internal/terapi
    #[arg(long, env = "TERAPI_DATABASE_URL", global = true, value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Compile the component afresh and keep nothing on disk.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Let requests go to loopback, private (10.x, 192.168.x, fd00::/8),
    /// link-local and other non-public addresses, and plain http to this
    /// machine. Off: only public addresses over https, so a base URL an
    /// end user types cannot reach this host's own network. For a local
    /// fake provider, tests, and on-premise providers.
    #[arg(long, env = "TERAPI_ALLOW_PRIVATE_EGRESS", global = true, action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::FalseyValueParser::new())]
    pub allow_private_egress: bool,
    /// Requests one sync run may send before it stops (resumable from its
    /// last page), so a sync cannot spend the provider's daily quota, which
    /// the account's other tools share, by itself (0: no cap).
    #[arg(long, env = "TERAPI_MAX_REQUESTS_PER_RUN", global = true, default_value_t = 5000, value_name = "N")]
    pub max_requests_per_run: u64,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG also works.
    /// `serve` and `worker` log at info already.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// How log lines on stderr look: `text` for people, `json` (one object
    /// a line, with each event's fields) for a log pipeline.
    #[arg(long, env = "TERAPI_LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Clone)]
pub struct ConnectionArgs {
    /// A saved connection (see `terapi connection create`); replaces the credential flags.
    #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
    pub connection: Option<String>,
    #[command(flatten)]
    pub credential: CredentialArgs,
}

/// A credential given directly, from flags or the environment.
#[derive(Args, Clone)]
pub struct CredentialArgs {
    /// Provider key in providers.yaml: `gong` (access key) or `gong-oauth` (access token).
    #[arg(long, env = "TERAPI_PROVIDER", default_value = "gong")]
    pub provider: String,
    /// Gong access key (the basic-auth user name).
    #[arg(long, env = "GONG_ACCESS_KEY", hide_env_values = true, alias = "username")]
    pub access_key: Option<String>,
    /// Gong access key secret (the basic-auth password). Prefer the env var.
    #[arg(long, env = "GONG_ACCESS_KEY_SECRET", hide_env_values = true, alias = "password")]
    pub access_key_secret: Option<String>,
    /// OAuth access token, for `gong-oauth`. Prefer the env var.
    #[arg(long, env = "GONG_ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Option<String>,
    /// The API key, for an API_KEY provider. Prefer the env var.
    #[arg(long, env = "TERAPI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The OAuth client id, for an OAUTH2_CC provider.
    #[arg(long, env = "TERAPI_CLIENT_ID")]
    pub client_id: Option<String>,
    /// The OAuth client secret, for an OAUTH2_CC provider. Prefer the env var.
    #[arg(long, env = "TERAPI_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Your Gong API base URL, e.g. https://us-44392.api.gong.io [default: https://api.gong.io].
    #[arg(long, env = "GONG_BASE_URL")]
    pub base_url: Option<String>,
    /// Other connection config, as in providers.yaml's `connection_config` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
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
    Worker {
        /// Syncs this worker runs at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Seconds a run's lease lasts without a sign of life; a worker that
        /// dies has its syncs taken over after this.
        #[arg(long, default_value_t = 60)]
        lease_secs: u64,
        /// Exit once nothing is due and nothing is running.
        #[arg(long)]
        exit_when_idle: bool,
        /// Syncs of one provider tenant (a Gong company) run at once across
        /// every worker on the store.
        #[arg(long, default_value_t = 2)]
        per_tenant: u32,
        #[command(flatten)]
        webhooks: WebhookArgs,
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
pub enum ProvidersCommand {
    /// One line per provider: key, auth mode, what terapi does with it, docs.
    List {
        /// One JSON array: key, auth_mode, serves, not_served, docs (and the
        /// unreadable entries, with their line and message).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ConnectionCommand {
    /// Verify a credential with the provider, then save it (secrets encrypted).
    Create {
        /// Your name for the connection, e.g. `acme-gong`.
        id: String,
        #[command(flatten)]
        credential: CredentialArgs,
    },
    /// Authorize an OAuth connection (gong-oauth): open the printed URL, approve,
    /// and the redirect to http://127.0.0.1:53682/callback (register that URI
    /// with the OAuth app) completes it. Needs GONG_OAUTH_CLIENT_ID and
    /// GONG_OAUTH_CLIENT_SECRET. Re-authorizing keeps records and checkpoints.
    /// Asks for the fewest scopes: those of the --sync and --action named, or
    /// of every sync and read-only action; writes only by name or --all-scopes.
    Authorize {
        id: String,
        /// An OAUTH2 provider from providers.yaml.
        #[arg(long, default_value = "gong-oauth")]
        provider: String,
        /// Port of the local redirect listener (0: any free port, for a
        /// redirect URI the provider lets vary).
        #[arg(long, default_value_t = crate::authorize::DEFAULT_PORT)]
        port: u16,
        /// The redirect URI registered with the OAuth app [default: http://127.0.0.1:PORT/callback].
        #[arg(long)]
        redirect_uri: Option<String>,
        /// Skip the listener: exchange a code copied from the redirect by hand.
        #[arg(long)]
        code: Option<String>,
        /// Ask for the scopes this sync needs (repeatable).
        #[arg(long = "sync", value_name = "NAME")]
        syncs: Vec<String>,
        /// Ask for the scopes this action needs, writes included (repeatable).
        #[arg(long = "action", value_name = "NAME")]
        actions: Vec<String>,
        /// Ask for these scopes (repeatable), beside the ones verification needs.
        #[arg(long = "scope", conflicts_with_all = ["syncs", "actions", "all_scopes"])]
        scopes: Vec<String>,
        /// Ask for every scope the component's syncs and actions could use.
        #[arg(long, conflicts_with_all = ["syncs", "actions"])]
        all_scopes: bool,
    },
    /// Saved connections (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
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

/// `terapi serve`'s options.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; printed on start).
    #[arg(long, default_value = "127.0.0.1:3003")]
    pub bind: std::net::SocketAddr,
    /// The URL end users reach this server at (Connect links, OAuth
    /// redirects); default: http://BIND/.
    #[arg(long, env = "TERAPI_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    /// Scheduled syncs this server runs at once (0: none, leave them to
    /// `terapi worker`s on the same store).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// An origin allowed to frame the Connect page, e.g.
    /// https://app.example.com (repeatable; comma-separated in the env
    /// var). This server's own origin always may; a session's
    /// `allowed_origin` may frame its own page.
    #[arg(long = "frame-ancestor", env = "TERAPI_FRAME_ANCESTORS", value_delimiter = ',', value_name = "ORIGIN")]
    pub frame_ancestors: Vec<String>,
    /// A provider of providers.yaml no component serves, offered with
    /// auth and proxy only (Connect, /connections, /proxy); repeatable.
    #[arg(long = "integration", env = "TERAPI_INTEGRATIONS", value_delimiter = ',', value_name = "PROVIDER")]
    pub integrations: Vec<String>,
    /// The app's name, which the Connect page shows end users ("Acme
    /// CRM wants to connect to your Gong account").
    #[arg(long, env = "TERAPI_APP_NAME")]
    pub app_name: Option<String>,
    /// Providers' logos for the Connect page, `{provider}` standing for
    /// the key, e.g. https://app.nango.dev/images/template-logos/{provider}.svg
    /// [default: a monogram; nothing fetched from elsewhere].
    #[arg(long, env = "TERAPI_LOGO_URL", value_name = "URL")]
    pub logo_url: Option<String>,
    /// Open connections at most; at the cap the one idle longest is closed
    /// for a new one [default: the open-files limit (raised to its hard
    /// limit) less 128].
    #[arg(long, env = "TERAPI_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers.
    #[arg(long, env = "TERAPI_HEADER_TIMEOUT", value_name = "SECONDS", default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a connection may stay open with no request in flight.
    #[arg(long, env = "TERAPI_IDLE_TIMEOUT", value_name = "SECONDS", default_value_t = 60)]
    pub idle_timeout: u64,
}

#[derive(Subcommand)]
pub enum McpCommand {
    /// Speak MCP over stdio (register this command in an MCP client's config).
    Serve {
        /// The saved connection the tools act on.
        #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
        connection: String,
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

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Make a new key and print it (once).
    Create {
        #[arg(long, default_value = "default")]
        label: String,
    },
    /// The keys, by public id (never the key).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its public id.
    Revoke { id: String },
}

/// Where the store's webhook events go (change webhooks after sync runs,
/// auth webhooks for new connections). Every `terapi serve` and `terapi
/// worker` given them delivers events, sharing the work.
#[derive(clap::Args, Debug, Clone)]
pub struct WebhookArgs {
    /// The app's webhook URL.
    #[arg(long, env = "TERAPI_WEBHOOK_URL")]
    pub webhook_url: Option<url::Url>,
    /// Signs webhooks (X-Nango-Hmac-Sha256); give the same to the app.
    #[arg(long, env = "TERAPI_WEBHOOK_SIGNING_KEY", hide_env_values = true)]
    pub webhook_signing_key: Option<String>,
}

#[derive(Subcommand)]
pub enum WebhooksCommand {
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
        /// The URL Gong's rule posts to, as Gong sees it (behind a proxy, the
        /// public one): a signed token's `webhook_url` must name it.
        #[arg(long, value_name = "URL", env = "TERAPI_WEBHOOK_PUBLIC_URL")]
        public_url: Option<String>,
        /// How old (seconds since Gong signed it) a delivery may be; older
        /// ones are refused as possible replays.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        max_age: u64,
        /// Largest body accepted, in bytes.
        #[arg(long, default_value_t = 4 << 20)]
        max_body_bytes: usize,
    },
    /// The webhook events in the store's outbox, newest first: sent,
    /// pending (with their next attempt) or given up.
    Events {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// The delivery log: every attempt, newest first, with the receiver's
    /// answer or why it could not be reached.
    Deliveries {
        /// Only this event's attempts.
        #[arg(long)]
        event: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

/// Which saved connection: the flag, else `TERAPI_CONNECTION`, else the
/// store's only connection.
#[derive(clap::Args, Clone)]
pub struct ConnectionArg {
    #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
    pub connection: Option<String>,
}

#[derive(Subcommand)]
pub enum ToolCommand {
    /// A connection's tools: status there (approved, pending, denied), the
    /// toolsets holding each, and the default for tools nobody decided on.
    List {
        #[command(flatten)]
        connection: ConnectionArg,
        #[arg(long)]
        json: bool,
    },
    /// Approve tools on one connection (other connections keep their own decisions).
    Approve {
        #[arg(required = true)]
        tools: Vec<String>,
        #[command(flatten)]
        connection: ConnectionArg,
    },
    /// Deny tools on one connection: hidden from MCP clients, calls refused.
    Deny {
        #[arg(required = true)]
        tools: Vec<String>,
        #[command(flatten)]
        connection: ConnectionArg,
    },
    /// Forget the decisions on these tools: back to the connection's default.
    Reset {
        #[arg(required = true)]
        tools: Vec<String>,
        #[command(flatten)]
        connection: ConnectionArg,
    },
    /// What tools nobody decided on are on this connection:
    /// auto-approve-read-only (the default), pending-for-all or approve-all.
    Default {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(terapi_platform::DefaultClassification::NAMES))]
        classification: String,
        #[command(flatten)]
        connection: ConnectionArg,
    },
}

#[derive(Subcommand)]
pub enum MasterKeyCommand {
    /// Print a new random key (base64 of 32 bytes).
    Generate,
}

#[derive(Subcommand)]
pub enum RunsCommand {
    /// The newest runs, newest first (of one connection, or of all).
    List {
        #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
        connection: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One sync of a connection: its state (status, checkpoint, last error,
    /// schedule, next due) and every run of it kept, newest first.
    Show {
        /// Sync name (see `terapi sync list`).
        sync: String,
        #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
        connection: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ToolsetCommand {
    /// Every toolset and its tools.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A new named set of tools (tools may be added later).
    Create {
        name: String,
        tools: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Add tools to a toolset.
    Add {
        name: String,
        #[arg(required = true)]
        tools: Vec<String>,
    },
    /// Take tools out of a toolset.
    Remove {
        name: String,
        #[arg(required = true)]
        tools: Vec<String>,
    },
    /// Delete a toolset no access profile binds.
    Delete { name: String },
}

#[derive(Subcommand)]
pub enum ProfileCommand {
    /// Every access profile: its grants (toolset on a connection, or on all) and users.
    List {
        #[arg(long)]
        json: bool,
    },
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Bind a toolset to the profile's users, on every connection or on one.
    Grant {
        name: String,
        #[arg(long, required = true)]
        toolset: String,
        /// Only on this connection (default: on every connection).
        #[arg(long)]
        connection: Option<String>,
    },
    /// Take a grant back (name it as it was granted).
    Revoke {
        name: String,
        #[arg(long, required = true)]
        toolset: String,
        #[arg(long)]
        connection: Option<String>,
    },
    AddUser {
        name: String,
        #[arg(required = true)]
        users: Vec<String>,
    },
    RemoveUser {
        name: String,
        #[arg(required = true)]
        users: Vec<String>,
    },
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
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

#[derive(Subcommand)]
pub enum AuditCommand {
    /// The newest tool calls: time, caller, connection, tool, input hash, status, duration.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum RecordsCommand {
    /// Print saved records of a model as NDJSON.
    List {
        /// Model name (see `terapi sync list`), e.g. GongUser.
        model: String,
        /// Only records changed after this time (RFC 3339, a date, or unix seconds).
        #[arg(long, value_name = "TIME")]
        modified_after: Option<String>,
        /// The saved connection.
        #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
        connection: String,
        /// Also records a full sync found gone upstream.
        #[arg(long)]
        include_deleted: bool,
    },
}

// Parsed once per process; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum SyncCommand {
    /// The syncs the component offers.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Mark a sync due now for `terapi worker`, for one connection or all.
    Schedule {
        /// Sync name (see `terapi sync list`).
        name: String,
        #[arg(long, short = 'c', env = "TERAPI_CONNECTION", required_unless_present = "all")]
        connection: Option<String>,
        /// Every saved connection.
        #[arg(long, conflicts_with = "connection")]
        all: bool,
    },
    /// Per sync of a saved connection: last run, records, checkpoint, last error.
    Status {
        #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
        connection: String,
        /// One JSON array of the syncs' states.
        #[arg(long)]
        json: bool,
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
        /// Mark what a full pass did not see deleted even when the pass looks
        /// cut short (fewer records than the provider's total, or more than a
        /// quarter of the stored ones gone at once).
        #[arg(long)]
        allow_mass_deletion: bool,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let service = matches!(cli.command, Command::Serve(_) | Command::Worker { .. });
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
        Command::Proxy { method, path, query, headers, data, connection } => {
            commands::action::proxy(
                &app,
                commands::action::ProxyArgs { method, path, query, headers, data, connection },
            )
            .await
        }
        Command::Tool { command } => commands::tool::run(&app, command).await,
        Command::Worker { concurrency, lease_secs, exit_when_idle, per_tenant, webhooks } => {
            let args = commands::sync::WorkerArgs { concurrency, lease_secs, exit_when_idle, per_tenant, webhooks };
            commands::sync::worker(&app, args).await
        }
        Command::Audit { command } => commands::tool::audit(&app, command).await,
        Command::Toolset { command } => commands::tool::toolset(&app, command).await,
        Command::Profile { command } => commands::tool::profile(&app, command).await,
        Command::Serve(args) => commands::serve::serve(&app, args).await,
        Command::Key { command } => commands::serve::key(&app, command).await,
        Command::Mcp { command } => commands::mcp::run(&app, command).await,
        Command::Webhooks { command } => commands::webhooks::run(&app, command).await,
    }
}
