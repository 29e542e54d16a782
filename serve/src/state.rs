//! What every request handler shares.

use std::sync::Arc;

use terapi_platform::Platform;

use crate::auth::KeyCache;
use crate::webhooks::WebhookConfig;

/// How `terapi serve` is set up.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where end users reach this server (Connect links, OAuth redirects),
    /// e.g. `http://127.0.0.1:3003`.
    pub public_url: url::Url,
    /// Change webhooks go here after each sync run, if set.
    pub webhooks: Option<WebhookConfig>,
    /// Syncs run at once by this server's scheduler (0: this server runs
    /// none; other `terapi worker`s on the same store do).
    pub worker_concurrency: usize,
    /// How long a Connect session token lasts.
    pub connect_session_ttl: std::time::Duration,
    /// Origins allowed to frame the Connect page (CSP `frame-ancestors`),
    /// beside this server's own and the session's `allowed_origin`: the
    /// app's origins, for Nango-style embedding.
    pub frame_ancestors: Vec<String>,
    /// How the Connect page presents the app to its end users.
    pub connect_page: ConnectPageConfig,
    /// Timeouts and the cap on open connections.
    pub connections: crate::ConnectionLimits,
}

/// Who is asking, on the Connect page.
#[derive(Debug, Clone, Default)]
pub struct ConnectPageConfig {
    /// The app's name ("Acme CRM wants to connect to your Gong account");
    /// none: the page names only the provider.
    pub app_name: Option<String>,
    /// Where providers' logos are, with `{provider}` for the key, e.g.
    /// `https://app.nango.dev/images/template-logos/{provider}.svg`; none:
    /// a monogram, drawn by the page (nothing is fetched from elsewhere).
    pub logo_url: Option<String>,
}

pub struct ServeState {
    pub platform: Arc<Platform>,
    pub config: ServeConfig,
    pub(crate) keys: KeyCache,
    pub(crate) mcp_sessions: crate::mcp::McpSessions,
    /// Unix seconds this server started: integrations come from
    /// providers.yaml as it was loaded then.
    pub(crate) started_at: u64,
}

impl ServeState {
    pub fn new(platform: Arc<Platform>, config: ServeConfig) -> Arc<ServeState> {
        Arc::new(ServeState {
            platform,
            config,
            keys: KeyCache::default(),
            mcp_sessions: Default::default(),
            started_at: terapi_store::unix_now(),
        })
    }
}
