//! From global options to a platform: providers.yaml, components, the store
//! in the data dir, the OAuth app from the environment.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use terapi_host::{
    AuthMode, BASE_URL_CONFIG_KEY, Connection, Credentials, EgressPolicy, Providers, RuntimeConfig, Secret, Session,
};
use terapi_platform::{ComponentSource, Platform, PlatformConfig};
use terapi_store::{MasterKey, SqliteStore, Store};
use terapi_store_postgres::PostgresStore;

use crate::commands::connection_args::{ConnectionArgs, CredentialArgs};

#[derive(clap::Args)]
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

const BUNDLED_PROVIDERS: &str = include_str!("../../providers.yaml");
/// The providers the bundled component serves.
const BUNDLED_SERVES: &[&str] = &["gong", "gong-oauth"];
/// Largest `--input`, `--data` or `@file` read: far above any real action
/// input, and small enough that `@/dev/zero` fails fast.
pub const MAX_ARGUMENT_BYTES: u64 = 8 << 20;

pub struct App {
    pub global: GlobalArgs,
    pub providers: Providers,
}

impl App {
    pub fn new(global: GlobalArgs) -> Result<App> {
        let load = |path: &PathBuf| -> Result<Providers> {
            if path.as_os_str() == "bundled" {
                Ok(Providers::parse(BUNDLED_PROVIDERS, "bundled providers.yaml")?)
            } else {
                Ok(Providers::load(path)?)
            }
        };
        let mut files = global.providers.iter();
        let mut providers = match files.next() {
            Some(path) => load(path)?,
            None => Providers::parse(BUNDLED_PROVIDERS, "bundled providers.yaml")?,
        };
        for path in files {
            providers = providers.merged_over(load(path)?);
        }
        Ok(App { global, providers })
    }

    pub fn data_dir(&self) -> Result<PathBuf> {
        self.global
            .data_dir
            .clone()
            .or_else(|| xdg_dir("XDG_DATA_HOME", ".local/share"))
            .ok_or_else(|| anyhow!("no data directory: set --data-dir or TERAPI_DATA_DIR"))
    }

    /// The store, with its request budgets: PostgreSQL with
    /// `--database-url`, otherwise SQLite in the data dir. Every terapi
    /// process on the same store keeps the provider's limits together.
    pub async fn store(&self) -> Result<Arc<dyn Store>> {
        let dir = self.data_dir()?;
        match &self.global.database_url {
            Some(url) => {
                let key = MasterKey::from_env_or_file(&dir)?;
                let store = PostgresStore::open(url, key, 16).await.context("opening the PostgreSQL store")?;
                Ok(Arc::new(store))
            }
            None => {
                let store =
                    SqliteStore::open_in(&dir).with_context(|| format!("opening the store in {}", dir.display()))?;
                Ok(Arc::new(store))
            }
        }
    }

    pub async fn platform(&self) -> Result<Platform> {
        let cache_dir =
            if self.global.no_cache { None } else { self.global.cache_dir.clone().or_else(default_cache_dir) };
        let config = PlatformConfig {
            runtime: RuntimeConfig {
                cache_dir,
                egress_policy: EgressPolicy {
                    allow_private: self.global.allow_private_egress,
                    extra_root_certificates: self
                        .global
                        .ca_cert
                        .iter()
                        .map(|path| {
                            std::fs::read(path).with_context(|| format!("reading --ca-cert {}", path.display()))
                        })
                        .collect::<Result<_>>()?,
                    ..EgressPolicy::default()
                },
                max_requests_per_run: Some(self.global.max_requests_per_run).filter(|n| *n > 0),
                ..RuntimeConfig::default()
            },
            providers: self.providers.clone(),
            components: self.components()?,
            store: self.store().await?,
            oauth_clients: self
                .providers
                .iter()
                .filter(|(_, spec)| spec.auth_mode == AuthMode::OAuth2 && spec.not_served.is_none())
                .filter_map(|(key, _)| oauth_client_for(key, String::new()).ok().map(|c| (key.to_string(), c)))
                .collect(),
        };
        Ok(Platform::new(config)?)
    }

    /// `--component FILE` serves every provider; `--component P=FILE` one;
    /// with none, the bundled Gong component serves gong and gong-oauth.
    fn components(&self) -> Result<Vec<ComponentSource>> {
        let read = |path: &str| -> Result<Cow<'static, [u8]>> {
            Ok(Cow::Owned(std::fs::read(path).with_context(|| format!("reading component {path}"))?))
        };
        let mut sources = Vec::new();
        for given in &self.global.component {
            match given.split_once('=') {
                Some((provider, path)) => sources.push(ComponentSource {
                    providers: vec![provider.to_string()],
                    origin: path.to_string(),
                    wasm: read(path)?,
                }),
                None => sources.push(ComponentSource {
                    providers: self
                        .providers
                        .iter()
                        .filter(|(_, spec)| spec.not_served.is_none())
                        .map(|(key, _)| key.to_string())
                        .collect(),
                    origin: given.clone(),
                    wasm: read(given)?,
                }),
            }
        }
        if sources.is_empty() {
            sources.push(ComponentSource {
                providers: BUNDLED_SERVES
                    .iter()
                    .filter(|key| self.providers.get(key).is_ok())
                    .map(|key| key.to_string())
                    .collect(),
                origin: "the bundled Gong component".into(),
                wasm: Cow::Borrowed(terapi_artifacts::PROVIDER_GONG),
            });
        }
        Ok(sources)
    }

    /// The providers a component serves (syncs and actions), without loading
    /// any: the bundled one's, or those `--component` names.
    pub fn served_by_components(&self) -> std::collections::BTreeSet<String> {
        if self.global.component.is_empty() {
            return BUNDLED_SERVES.iter().map(|k| k.to_string()).collect();
        }
        let mut served = std::collections::BTreeSet::new();
        for given in &self.global.component {
            match given.split_once('=') {
                Some((provider, _)) => {
                    served.insert(provider.to_string());
                }
                None => served.extend(self.providers.iter().map(|(k, _)| k.to_string())),
            }
        }
        served
    }

    /// The provider a describe-only command (lists) is about: the first one
    /// a component serves.
    pub fn default_provider(&self) -> &str {
        if self.providers.get("gong").is_ok() {
            "gong"
        } else {
            self.providers.iter().next().map(|(key, _)| key).unwrap_or("gong")
        }
    }
}

/// A session on `--connection` (saved) or on the credential flags (used for
/// this run only), with the connection's id.
pub async fn session(platform: &Platform, args: &ConnectionArgs) -> Result<(Session, String)> {
    match &args.connection {
        Some(id) => Ok((platform.session(id).await?, id.clone())),
        None => {
            let connection = connection_from(platform.providers(), &args.credential, "cli")?;
            Ok((platform.session_for(&connection)?, connection.id))
        }
    }
}

/// Builds a connection from flags and environment, as the provider's auth
/// mode asks; says which value is missing.
pub fn connection_from(providers: &Providers, args: &CredentialArgs, id: &str) -> Result<Connection> {
    let mut config = BTreeMap::new();
    for pair in &args.config {
        let (k, v) = split_pair(pair, '=', "--config")?;
        config.insert(k, v);
    }
    if let Some(base_url) = &args.base_url {
        config.insert(BASE_URL_CONFIG_KEY.to_string(), base_url.clone());
    }
    let mode = providers.get(&args.provider)?.auth_mode.clone();
    let credentials = if mode == AuthMode::ApiKey {
        let key = args
            .api_key
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| anyhow!("`{}` takes an API key; set TERAPI_API_KEY (or --api-key)", args.provider))?;
        Credentials::ApiKey { api_key: Secret::new(key) }
    } else if mode == AuthMode::OAuth2Cc {
        let id = args.client_id.clone().filter(|k| !k.is_empty()).ok_or_else(|| {
            anyhow!("`{}` takes a client id and secret; set TERAPI_CLIENT_ID (or --client-id)", args.provider)
        })?;
        let secret = args
            .client_secret
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| anyhow!("`{}` takes a client secret; set TERAPI_CLIENT_SECRET", args.provider))?;
        Credentials::OAuth2ClientCredentials { client_id: id, client_secret: Secret::new(secret) }
    } else if let Some(token) = &args.access_token {
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

/// `KEY<sep>VALUE`. The error never repeats the argument: a header given
/// without its colon may be a credential.
pub fn split_pair(text: &str, separator: char, flag: &str) -> Result<(String, String)> {
    match text.split_once(separator) {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim_start().to_string())),
        _ => bail!("{flag} takes KEY{separator}VALUE; one of the values given has no `{separator}` after a name"),
    }
}

/// `text` itself, `@path` for a file's contents, or `-` for stdin, up to
/// `MAX_ARGUMENT_BYTES`.
pub fn read_text_argument(text: &str) -> Result<String> {
    let too_large = || anyhow!("the input is larger than {} MiB; terapi reads no more", MAX_ARGUMENT_BYTES >> 20);
    let read_capped = |reader: &mut dyn std::io::Read| -> Result<String> {
        let mut buffer = Vec::new();
        reader.take(MAX_ARGUMENT_BYTES + 1).read_to_end(&mut buffer)?;
        if buffer.len() as u64 > MAX_ARGUMENT_BYTES {
            return Err(too_large());
        }
        String::from_utf8(buffer).map_err(|_| anyhow!("the input is not UTF-8 text"))
    };
    if text == "-" {
        read_capped(&mut std::io::stdin().lock())
    } else if let Some(path) = text.strip_prefix('@') {
        let mut file = std::fs::File::open(path).with_context(|| format!("reading {path}"))?;
        read_capped(&mut file).with_context(|| format!("reading {path}"))
    } else if text.len() as u64 > MAX_ARGUMENT_BYTES {
        Err(too_large())
    } else {
        Ok(text.to_string())
    }
}

/// The OAuth app of `provider`: `TERAPI_OAUTH_<PROVIDER>_CLIENT_ID` and
/// `_CLIENT_SECRET` (the key upper-cased, `-` as `_`), or for Gong's
/// entries the variables below.
pub fn oauth_client_for(provider: &str, redirect_uri: String) -> Result<terapi_host::OAuthClient> {
    let prefix = format!("TERAPI_OAUTH_{}", provider.to_ascii_uppercase().replace(['-', '.'], "_"));
    let var = |name: String| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (var(format!("{prefix}_CLIENT_ID")), var(format!("{prefix}_CLIENT_SECRET"))) {
        (Some(id), Some(secret)) => {
            Ok(terapi_host::OAuthClient { client_id: id, client_secret: Secret::new(secret), redirect_uri })
        }
        _ if provider.starts_with("gong") => oauth_client_from_env(redirect_uri),
        _ => bail!("set {prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET to your OAuth app's client id and secret"),
    }
}

/// The OAuth app's credentials, from the environment.
pub fn oauth_client_from_env(redirect_uri: String) -> Result<terapi_host::OAuthClient> {
    let var = |names: [&str; 2]| names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()));
    let id = var(["TERAPI_OAUTH_CLIENT_ID", "GONG_OAUTH_CLIENT_ID"]).ok_or_else(|| {
        anyhow!("set GONG_OAUTH_CLIENT_ID and GONG_OAUTH_CLIENT_SECRET to your Gong OAuth app's client id and secret")
    })?;
    let secret = var(["TERAPI_OAUTH_CLIENT_SECRET", "GONG_OAUTH_CLIENT_SECRET"])
        .ok_or_else(|| anyhow!("set GONG_OAUTH_CLIENT_SECRET to your Gong OAuth app's client secret"))?;
    Ok(terapi_host::OAuthClient { client_id: id, client_secret: Secret::new(secret), redirect_uri })
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

/// Seconds since the epoch as RFC 3339, or `-`.
pub fn when(unix: Option<u64>) -> String {
    unix.map(terapi_store::time::rfc3339).unwrap_or_else(|| "-".into())
}
