//! The arguments that name a connection or give a credential, shared by
//! the commands that act on one.

use anyhow::{Result, bail};
use terapi_store::Store;

#[derive(clap::Args, Clone)]
pub struct ConnectionArgs {
    /// A saved connection (see `terapi connection create`); replaces the credential flags.
    #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
    pub connection: Option<String>,
    #[command(flatten)]
    pub credential: CredentialArgs,
}

/// A credential given directly, from flags or the environment.
#[derive(clap::Args, Clone)]
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

/// Which saved connection: the flag, else `TERAPI_CONNECTION`, else the
/// store's only connection.
#[derive(clap::Args, Clone)]
pub struct ConnectionArg {
    #[arg(long, short = 'c', env = "TERAPI_CONNECTION")]
    pub connection: Option<String>,
}

impl ConnectionArg {
    /// The connection named, or the store's only one.
    pub async fn resolve(self, store: &dyn Store) -> Result<String> {
        if let Some(connection) = self.connection {
            return Ok(connection);
        }
        let all = store.connections().await?;
        match all.as_slice() {
            [only] => Ok(only.id.clone()),
            [] => bail!("there is no saved connection yet; save one with `terapi connection create`"),
            many => bail!(
                "the store has {} connections ({}); name one with --connection ID",
                many.len(),
                many.iter().map(|c| c.id.as_str()).take(10).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}
