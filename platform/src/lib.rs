//! The platform layer a host embeds: providers.yaml, the components that
//! serve its providers, a store, and the runtime, put together into the
//! operations a product offers its users.
//!
//! ```text
//! providers.yaml ─┐                     ┌─ connections: create (verify, then save) / rotate / authorize / delete
//! components ─────┼─► Platform ─────────┼─ sessions that save refreshed OAuth tokens
//! Store (SQLite) ─┘   (Runtime inside,  ├─ stored syncs: leased, page by page, resumable
//!                      budgets in the   ├─ tools: policy (approve/deny) and audit of every call
//!                      store)           └─ webhooks: payload → records, upserted
//! ```
//!
//! Every process that opens the same store shares its request budgets, so
//! together they keep the provider's limits (Gong: 3/s, 10,000/day per
//! company).

mod connections;
mod error;
pub mod events;
mod governance;
mod registry;
mod schedules;
mod syncs;
mod tools;
pub mod webhooks;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use terapi_host::{OAuthClient, ProviderComponent, ProviderDescription, Providers, Runtime, RuntimeConfig};
use terapi_store::Store;

pub use connections::{Authorization, ConnectionOwner, EndUser, ScopeChoice};
pub use error::PlatformError;
pub use events::WebhookConfig;
pub use governance::{
    AccessProfile, Caller, ConnectionTools, DefaultClassification, GovernanceProblem, Grant, McpUser, ProfileEdit,
    Refusal, ToolDecision, ToolInfo, ToolStatus, Toolset, USER_TOKEN_PREFIX,
};
pub use registry::{ComponentRegistry, ComponentSource};
pub use schedules::ScheduleInfo;
pub use syncs::{MASS_DELETION_FLOOR, MASS_DELETION_SHARE, StoredSyncOptions, StoredSyncRun, SyncProgress};
pub use terapi_host;
pub use terapi_store;
pub use tools::ToolCall;
pub use webhooks::WebhookOutcome;
pub use worker::{FinishedRun, WorkerOptions, WorkerReport};

/// What a platform is made of.
pub struct PlatformConfig {
    pub runtime: RuntimeConfig,
    pub providers: Providers,
    /// Which component serves which providers; one component may serve
    /// several (the Gong component serves `gong` and `gong-oauth`).
    pub components: Vec<ComponentSource>,
    pub store: Arc<dyn Store>,
    /// OAuth apps by provider key, for authorizing connections and
    /// refreshing their tokens. A provider without one cannot refresh.
    pub oauth_clients: BTreeMap<String, OAuthClient>,
}

/// The platform. Cheap to share: wrap it in an `Arc` and hand it to every
/// task; it holds no per-request state.
pub struct Platform {
    runtime: Runtime,
    providers: Providers,
    components: ComponentRegistry,
    store: Arc<dyn Store>,
    oauth_clients: BTreeMap<String, OAuthClient>,
    descriptions: Mutex<HashMap<String, Arc<ProviderDescription>>>,
    /// Names this process in sync leases.
    owner: String,
    /// Bumped when this process approves or denies a tool, so tool watchers
    /// see it at once rather than at their next poll (a watch, unlike a
    /// notification, is not missed by a watcher busy reading).
    tools_decided: tokio::sync::watch::Sender<u64>,
    lease_ttl: Duration,
    /// Providers no component serves that this platform offers anyway
    /// (auth and proxy only), as Nango's "integrations" are configured.
    extra_integrations: std::collections::BTreeSet<String>,
    /// MCP users by token SHA-256, as of a governance version.
    user_tokens: Mutex<(i64, Arc<governance::UsersByToken>)>,
    /// When each connection's last refresh failure was told (auth webhook).
    refresh_failures_told: Arc<Mutex<HashMap<String, std::time::Instant>>>,
}

impl Platform {
    /// Starts the runtime (with its request budgets in `store`) and
    /// compiles each component once.
    pub fn new(config: PlatformConfig) -> Result<Platform, PlatformError> {
        let runtime = Runtime::with_budgets(config.runtime, config.store.clone())?;
        let components = ComponentRegistry::load(&runtime, &config.providers, config.components)?;
        Ok(Platform {
            runtime,
            providers: config.providers,
            components,
            store: config.store,
            oauth_clients: config.oauth_clients,
            descriptions: Mutex::new(HashMap::new()),
            owner: lease_owner(),
            tools_decided: tokio::sync::watch::Sender::new(0),
            lease_ttl: Duration::from_secs(60),
            user_tokens: Mutex::new((-1, Arc::default())),
            extra_integrations: Default::default(),
            refresh_failures_told: Arc::default(),
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    /// The store, for reads the platform adds nothing to (connection
    /// summaries, sync states, records, the audit log).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn component(&self, provider: &str) -> Result<&ProviderComponent, PlatformError> {
        self.components.get(provider)
    }

    /// What the component serving `provider` offers, read once per process.
    pub async fn describe(&self, provider: &str) -> Result<Arc<ProviderDescription>, PlatformError> {
        if let Some(known) = self.descriptions.lock().unwrap_or_else(|p| p.into_inner()).get(provider) {
            return Ok(known.clone());
        }
        let description = match self.components.get(provider) {
            Ok(component) => Arc::new(self.runtime.describe(component).await?),
            // A provider with auth and proxy only offers no syncs or actions.
            Err(_) if self.providers.get(provider).is_ok() => Arc::new(ProviderDescription {
                requirements: terapi_host::Requirements {
                    basic: None,
                    oauth2_scopes: Vec::new(),
                    oauth2_base_scopes: Vec::new(),
                },
                syncs: Vec::new(),
                actions: Vec::new(),
            }),
            Err(e) => return Err(e),
        };
        self.descriptions.lock().unwrap_or_else(|p| p.into_inner()).insert(provider.to_string(), description.clone());
        Ok(description)
    }

    /// How long a sync run's lease lasts without a sign of life. A live run
    /// renews it every third of that, so a run whose process died is taken
    /// over by another within this time.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// Offers these providers of providers.yaml too, with auth and proxy
    /// only (no component serves them); each must be one terapi can serve.
    pub fn with_integrations(mut self, providers: &[String]) -> Result<Platform, PlatformError> {
        for provider in providers {
            self.providers.get(provider)?;
        }
        self.extra_integrations.extend(providers.iter().cloned());
        Ok(self)
    }

    /// Whether `provider` is offered here: a component serves it, or it was
    /// named as an integration with auth and proxy only.
    pub fn is_integration(&self, provider: &str) -> bool {
        self.providers.get(provider).is_ok()
            && (self.components.get(provider).is_ok() || self.extra_integrations.contains(provider))
    }

    /// Checks that `provider` is offered here, saying how to offer it if not.
    pub fn integration(&self, provider: &str) -> Result<(), PlatformError> {
        if self.is_integration(provider) {
            return Ok(());
        }
        self.providers.get(provider)?;
        Err(PlatformError::NoComponent {
            provider: provider.to_string(),
            hint: format!("offer it with auth and proxy only with `--integration {provider}`"),
        })
    }

    /// How this process names itself in leases and worker registrations
    /// (`host:pid:nonce`; a run's lease owner starts with it).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Sets the lease time (default 60 s; a few seconds in tests).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Platform {
        self.lease_ttl = ttl.max(Duration::from_millis(300));
        self
    }
}

/// Whether a lease `owner` (`host:pid:…`) names a process on this host
/// that is no longer running. Another host's, or a live one's (a reused
/// pid included), is not taken as gone: those leases lapse as usual.
pub(crate) fn owner_is_gone(owner: &str) -> bool {
    let mut parts = owner.splitn(3, ':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next().and_then(|p| p.parse::<i32>().ok())) else {
        return false;
    };
    if host != this_host() || pid <= 0 || pid as u32 == std::process::id() {
        return false;
    }
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only checks whether the process exists.
        let alive =
            unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        !alive
    }
    #[cfg(not(unix))]
    false
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `host:pid:random`: unique per process, and readable in `sync status`.
fn lease_owner() -> String {
    use std::hash::{BuildHasher, RandomState};
    let host = this_host();
    let nonce = RandomState::new().hash_one(std::process::id()) & 0xffff_ffff;
    format!("{host}:{}:{nonce:08x}", std::process::id())
}
