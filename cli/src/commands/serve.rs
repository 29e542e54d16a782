use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use terapi_host::Secret;
use terapi_serve::webhooks::WebhookConfig;
use terapi_serve::{ServeConfig, ServeState};

use crate::app::{App, when};
use crate::commands::webhooks::WebhookArgs;

/// `terapi serve`'s options.
#[derive(clap::Args)]
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

#[derive(clap::Subcommand)]
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

#[derive(clap::Subcommand)]
pub enum MasterKeyCommand {
    /// Print a new random key (base64 of 32 bytes).
    Generate,
}

pub async fn serve(app: &App, args: ServeArgs) -> Result<ExitCode> {
    let webhooks = webhook_config(args.webhooks)?;
    let frame_ancestors = args
        .frame_ancestors
        .iter()
        .map(|given| {
            url::Url::parse(given.trim())
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https") && matches!(url.path(), "" | "/"))
                .map(|url| url.origin().ascii_serialization())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--frame-ancestor `{given}` is not an origin; give one like https://app.example.com"
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(logo) = &args.logo_url {
        let sample = logo.replace("{provider}", "gong");
        if !logo.contains("{provider}")
            || !matches!(url::Url::parse(&sample).map(|u| u.scheme().to_string()).as_deref(), Ok("https" | "http"))
        {
            bail!(
                "--logo-url `{logo}` is not a logo URL template; give an http(s) URL with {{provider}} for the \
                 provider's key, e.g. https://app.nango.dev/images/template-logos/{{provider}}.svg"
            );
        }
    }
    let listener =
        tokio::net::TcpListener::bind(args.bind).await.with_context(|| format!("listening on {}", args.bind))?;
    let address = listener.local_addr()?;
    let public_url = match args.public_url {
        Some(url) => url,
        None => format!("http://{address}/").parse().context("the listening address as a URL")?,
    };
    let platform = Arc::new(app.platform().await?.with_integrations(&args.integrations)?);
    let state = ServeState::new(
        platform,
        ServeConfig {
            public_url: public_url.clone(),
            webhooks,
            worker_concurrency: args.concurrency,
            connect_session_ttl: Duration::from_secs(30 * 60),
            frame_ancestors,
            connect_page: terapi_serve::ConnectPageConfig { app_name: args.app_name, logo_url: args.logo_url },
            connections: terapi_serve::ConnectionLimits {
                max_connections: args.max_connections,
                header_timeout: Duration::from_secs(args.header_timeout.max(1)),
                idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
            },
        },
    );
    eprintln!("terapi serve: listening on http://{address} (Connect links and OAuth redirects use {public_url})");
    let stop = crate::signals::stop_on_signal("terapi serve: stopping (running syncs release their leases)");
    terapi_serve::serve(state, listener, stop.cancelled_owned()).await.context("serving")?;
    Ok(ExitCode::SUCCESS)
}

/// The webhook settings, checked: a URL needs a signing key.
pub fn webhook_config(args: crate::commands::webhooks::WebhookArgs) -> Result<Option<WebhookConfig>> {
    match (args.webhook_url, args.webhook_signing_key) {
        (Some(url), Some(key)) if !key.is_empty() => {
            if !matches!(url.scheme(), "http" | "https") {
                bail!("--webhook-url {url} is not an http(s) URL");
            }
            Ok(Some(WebhookConfig::new(url, Secret::new(key))))
        }
        (Some(_), _) => bail!(
            "--webhook-url needs a signing key: set TERAPI_WEBHOOK_SIGNING_KEY (the app verifies with it as \
             `webhookSigningKey`)"
        ),
        (None, _) => Ok(None),
    }
}

pub async fn key(app: &App, command: KeyCommand) -> Result<ExitCode> {
    let store = app.store().await?;
    match command {
        KeyCommand::Create { label } => {
            let key =
                terapi_serve::auth::new_secret_key().map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
            let info = store.create_api_key(&terapi_serve::auth::sha256_hex(&key), &label).await?;
            eprintln!("key {} ({}) created; it is shown once, now: keep it in your app's secrets", info.id, info.label);
            println!("{key}");
        }
        KeyCommand::List { json } => {
            let keys = store.api_keys().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
                return Ok(ExitCode::SUCCESS);
            }
            for key in keys {
                println!("{:<14} {:<24} created {}", key.id, key.label, when(Some(key.created_at)));
            }
        }
        KeyCommand::Revoke { id } => {
            if !store.revoke_api_key(&id).await? {
                bail!("no key with id `{id}`; `terapi key list` shows them");
            }
            eprintln!("key {id} revoked; servers stop accepting it within 5 seconds");
        }
    }
    Ok(ExitCode::SUCCESS)
}
