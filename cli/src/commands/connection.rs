use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use terapi_host::BASE_URL_CONFIG_KEY;

use crate::app::{self, App, when};
use crate::authorize;
use crate::commands::connection_args::CredentialArgs;

#[derive(clap::Subcommand)]
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

pub async fn run(app: &App, command: ConnectionCommand) -> Result<ExitCode> {
    match command {
        ConnectionCommand::List { json } => {
            let connections = app.store().await?.connections().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&connections)?);
                return Ok(ExitCode::SUCCESS);
            }
            for c in connections {
                let base = c.config.get(BASE_URL_CONFIG_KEY).map(String::as_str).unwrap_or("(default base URL)");
                println!("{:<20} {:<11} {:<7} {}", c.id, c.provider, c.auth_mode, base);
            }
        }
        ConnectionCommand::Show { id } => {
            let store = app.store().await?;
            let summary = store.connection_summary(&id).await?;
            let syncs = store.sync_states(&id).await?;
            let shown = serde_json::json!({
                "connection": {
                    "id": summary.id,
                    "provider": summary.provider,
                    "auth_mode": summary.auth_mode,
                    "username": summary.username,
                    "config": summary.config,
                    "created_at": when(Some(summary.created_at)),
                    "updated_at": when(Some(summary.updated_at)),
                    "verified_at": summary.verified_at.map(terapi_store::time::rfc3339),
                },
                "syncs": syncs.iter().map(|s| serde_json::json!({
                    "sync": s.sync,
                    "model": s.model,
                    "status": s.status,
                    "records": s.records,
                    "pages": s.pages,
                    "checkpoint": s.checkpoint,
                    "last_started_at": s.last_started_at.map(terapi_store::time::rfc3339),
                    "last_finished_at": s.last_finished_at.map(terapi_store::time::rfc3339),
                    "last_error": s.last_error,
                })).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        ConnectionCommand::Delete { id } => {
            app.store().await?.delete_connection(&id).await?;
            eprintln!("connection `{id}` deleted, with its checkpoints and records");
        }
        ConnectionCommand::Create { id, credential } => {
            let connection = app::connection_from(&app.providers, &credential, &id)?;
            let verified = app.platform().await?.create_connection(&connection).await?;
            println!("connection `{id}` saved ({})", verified.summary);
        }
        ConnectionCommand::Rotate { id, credential } => {
            let credentials = app::connection_from(&app.providers, &credential, &id)?.credentials;
            let verified = app.platform().await?.rotate_credentials(&id, credentials).await?;
            println!("connection `{id}`: credential replaced ({})", verified.summary);
        }
        ConnectionCommand::Authorize { id, provider, port, redirect_uri, code, syncs, actions, scopes, all_scopes } => {
            terapi_host::connection::check_connection_id(&id)?;
            let platform = app.platform().await?;
            let choice = if all_scopes {
                terapi_platform::ScopeChoice::Everything
            } else if !scopes.is_empty() {
                terapi_platform::ScopeChoice::Named(scopes)
            } else {
                terapi_platform::ScopeChoice::For { syncs, actions }
            };
            let scopes = platform.oauth_scopes(&provider, &choice).await?;
            let listener = match &code {
                Some(_) => None,
                None => Some(tokio::net::TcpListener::bind(("127.0.0.1", port)).await.with_context(|| {
                    format!(
                        "starting the redirect listener on 127.0.0.1:{port} (is another `connection authorize` \
                         running?); pass --port N and register http://127.0.0.1:N/callback with the OAuth app"
                    )
                })?),
            };
            let redirect_uri = match (redirect_uri, &listener) {
                (Some(uri), _) => uri,
                (None, Some(l)) => format!("http://127.0.0.1:{}/callback", l.local_addr()?.port()),
                (None, None) => bail!("with --code, give the --redirect-uri registered with the OAuth app"),
            };
            // Says which variables to set before anything else happens.
            app::oauth_client_for(&provider, String::new())?;
            let state = terapi_host::oauth::random_state();
            let url = platform.authorization_url(&provider, &redirect_uri, &state, &scopes).await?;
            let code = match (code, listener) {
                (Some(code), _) => code,
                (None, None) => bail!("no redirect listener and no --code"),
                (None, Some(listener)) => {
                    eprintln!(
                        "Asking for {} scope(s): {}\nOpen this URL in a browser and approve access:\n\n  {url}\n\nWaiting for the redirect to {redirect_uri} ...",
                        scopes.len(),
                        scopes.join(" ")
                    );
                    authorize::wait_for_code(listener, &state, std::time::Duration::from_secs(600)).await?
                }
            };
            let done = platform.complete_authorization(&id, &provider, &code, &redirect_uri, None).await?;
            let base = done.base_url.as_deref().unwrap_or("the default base URL");
            println!("connection `{id}` authorized ({}; API at {base})", done.verification.summary);
        }
    }
    Ok(ExitCode::SUCCESS)
}
