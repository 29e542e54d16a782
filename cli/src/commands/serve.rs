use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use terapi_host::Secret;
use terapi_serve::webhooks::WebhookConfig;
use terapi_serve::{ServeConfig, ServeState};

use crate::app::{App, when};
use crate::{KeyCommand, ServeArgs};

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
pub fn webhook_config(args: crate::WebhookArgs) -> Result<Option<WebhookConfig>> {
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
