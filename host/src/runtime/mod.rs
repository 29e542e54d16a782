//! Loading provider components and calling them.
//!
//! Shaped like wasmtime's own embeddings: one `Engine` and `Linker` per
//! process, a component compiled and pre-instantiated once, and a fresh
//! `Store` + instance per call, so no state leaks between calls or connections
//! and a misbehaving call is dropped whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, ResourceLimiter, UpdateDeadline};
use wasmtime_wasi::{WasiCtxView, WasiView};

use crate::connection::{Connection, Credentials};
use crate::destination::{EgressPolicy, HttpClient};
use crate::egress::{
    Authorizer, ClientCredentialTokens, Egress, EgressError, EgressLimits, InboundResponse, Method, OAuthTokens,
    OutboundRequest, Placement,
};
use crate::error::{Error, GuestFailure, ProviderFailure};
use crate::limits::{Budget, BudgetStore, MemoryBudgets};
use crate::oauth::TokenRefresher;
use crate::providers::ProviderSpec;
use crate::secret::{Redactor, Secret};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "provider",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

use bindings::exports::terapi::provider::{
    action::GuestIndices as ActionExport, auth::GuestIndices as AuthExport, proxy::GuestIndices as ProxyExport,
    sync::GuestIndices as SyncExport, webhook::GuestIndices as WebhookExport,
};

pub use bindings::exports::terapi::provider::action::ActionInfo;
pub use bindings::exports::terapi::provider::auth::{BasicFields, Requirements, Verification};
pub use bindings::exports::terapi::provider::sync::{SyncInfo, SyncOptions};
use bindings::exports::terapi::provider::{sync as wit_sync, webhook as wit_webhook};
use bindings::terapi::provider::types as wit;
pub use terapi_domain::records::{SyncPage, SyncRecord, WebhookRecords};

/// How often the epoch advances; the CPU budget is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Guest stderr kept for crash reports (a panic message fits easily).
const STDERR_CAPTURE_BYTES: usize = 8 * 1024;
const MAX_LOG_LINE: usize = 4 * 1024;

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Linear memory one guest instance may grow to.
    pub max_memory_bytes: usize,
    /// Guest execution time allowed per call (time in host calls excluded).
    pub cpu_budget: Duration,
    /// Wall time allowed per call, HTTP included.
    pub call_timeout: Duration,
    pub egress: EgressLimits,
    /// Instances kept ready in wasmtime's pooling allocator; `None` allocates
    /// on demand.
    pub pooled_instances: Option<u32>,
    /// Where compiled components are kept between runs (compiling takes
    /// about a second; loading a cached one, milliseconds). `None`: no cache.
    /// The directory must be writable by this user only: its files are
    /// loaded as native code.
    pub cache_dir: Option<PathBuf>,
    /// Enforce providers.yaml's `proxy.rate_limit` (off only for benchmarks
    /// against a local fake).
    pub rate_limits: bool,
    /// Which addresses requests may go to (public ones only, by default).
    pub egress_policy: EgressPolicy,
    /// Requests one sync run may send before it is stopped (resumable from
    /// its last page): a sync cannot spend a provider's daily quota, which
    /// the account's other tools share, by itself. `None`: no cap.
    pub max_requests_per_run: Option<u64>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_memory_bytes: 256 << 20,
            cpu_budget: Duration::from_secs(10),
            call_timeout: Duration::from_secs(300),
            egress: EgressLimits::default(),
            pooled_instances: Some(64),
            cache_dir: None,
            rate_limits: true,
            egress_policy: EgressPolicy::default(),
            // Half of Gong's 10,000 a day per company.
            max_requests_per_run: Some(5_000),
        }
    }
}

/// The process-wide part: engine, linker, HTTP client, request budgets.
/// Cheap to clone: clones share all of it.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<GuestState>,
    http: HttpClient,
    config: RuntimeConfig,
    budgets: Arc<dyn BudgetStore>,
    /// OAUTH2_CC tokens this process got, shared by its sessions.
    client_tokens: crate::egress::ClientTokenCache,
}

/// A compiled, linked provider component, ready to instantiate. Only `auth`
/// is required of a component; a call to an export it lacks fails with
/// `ProviderFailure::NotSupported` (the proxy then sends requests unshaped).
#[derive(Clone)]
pub struct ProviderComponent {
    pre: InstancePre<GuestState>,
    auth: AuthExport,
    sync: Option<SyncExport>,
    action: Option<ActionExport>,
    proxy: Option<ProxyExport>,
    webhook: Option<WebhookExport>,
}

impl ProviderComponent {
    /// What the component imports, by full interface name (e.g.
    /// `terapi:provider/http@0.6.0`, or `wasi:cli/stderr@0.2.6` for one built
    /// with std): what any host of it must provide.
    pub fn imports(&self) -> Vec<String> {
        let component = self.pre.component();
        component.component_type().imports(component.engine()).map(|(name, _)| name.to_string()).collect()
    }

    /// The optional exports this component has, by WIT interface name.
    pub fn exports(&self) -> Vec<&'static str> {
        let present = [
            ("auth", true),
            ("sync", self.sync.is_some()),
            ("action", self.action.is_some()),
            ("proxy", self.proxy.is_some()),
            ("webhook", self.webhook.is_some()),
        ];
        present.into_iter().filter(|(_, there)| *there).map(|(name, _)| name).collect()
    }
}

/// What a component offers, read without any connection.
#[derive(Debug, Clone)]
pub struct ProviderDescription {
    pub requirements: Requirements,
    pub syncs: Vec<SyncInfo>,
    pub actions: Vec<ActionInfo>,
}

impl Runtime {
    /// A runtime whose request budgets hold within this process.
    pub fn new(config: RuntimeConfig) -> Result<Self, Error> {
        Self::with_budgets(config, Arc::new(MemoryBudgets::default()))
    }

    /// A runtime whose request budgets are kept in `budgets`: a store shared
    /// by several processes makes them keep the provider's limits together.
    pub fn with_budgets(config: RuntimeConfig, budgets: Arc<dyn BudgetStore>) -> Result<Self, Error> {
        let mut wasm = wasmtime::Config::new();
        wasm.epoch_interruption(true);
        if let Some(instances) = config.pooled_instances {
            let mut pool = wasmtime::PoolingAllocationConfig::new();
            pool.total_component_instances(instances)
                .total_core_instances(instances * 8)
                .max_core_instances_per_component(16)
                .total_memories(instances * 2)
                .max_memories_per_component(2)
                .total_tables(instances * 8)
                .max_tables_per_component(8)
                .max_memory_size(config.max_memory_bytes)
                // A call touches a few hundred KiB; re-zeroing them in place
                // is cheaper than giving the pages back and faulting them in
                // again on the next call.
                .linear_memory_keep_resident(1 << 20)
                .table_keep_resident(64 << 10)
                .async_stack_keep_resident(64 << 10);
            wasm.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|e| Error::Load(format!("wasmtime engine: {e:#}")))?;
        spawn_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| Error::Load(format!("{e:#}")))?;
        bindings::Provider::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| Error::Load(format!("{e:#}")))?;

        let http = HttpClient::new(config.egress_policy.clone(), Duration::from_secs(10))
            .map_err(|e| Error::Load(format!("HTTP client: {e}")))?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner { engine, linker, http, config, budgets, client_tokens: Default::default() }),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The HTTP client every connection's requests go through (one pool of
    /// keep-alive connections per process).
    pub fn http_client(&self) -> &HttpClient {
        &self.inner.http
    }

    /// Instantiates the component once and drops it: proves it starts (its
    /// imports resolve, its initialisation runs within the limits) before the
    /// first real call, and warms the instance pool.
    pub async fn check_instantiate(&self, component: &ProviderComponent) -> Result<(), Error> {
        let session = Session::unconnected(self, component, "check");
        session.timed(async { session.instantiate(GuestCall::Check).await.map(drop) }).await
    }

    /// Compiles and links a component (`.wasm` bytes of a component built for
    /// the `terapi:provider/provider` world).
    pub fn load_component(&self, wasm: &[u8]) -> Result<ProviderComponent, Error> {
        let component = match &self.inner.config.cache_dir {
            Some(dir) => self.compile_cached(wasm, dir)?,
            None => self.compile(wasm)?,
        };
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| Error::Load(format!("it imports something this host does not provide: {e:#}")))?;
        let auth = AuthExport::new(&pre).map_err(|e| {
            Error::Load(format!("it does not export `terapi:provider/auth`, which every provider must: {e:#}"))
        })?;
        Ok(ProviderComponent {
            auth,
            sync: SyncExport::new(&pre).ok(),
            action: ActionExport::new(&pre).ok(),
            proxy: ProxyExport::new(&pre).ok(),
            webhook: WebhookExport::new(&pre).ok(),
            pre,
        })
    }

    fn compile(&self, wasm: &[u8]) -> Result<Component, Error> {
        Component::new(&self.inner.engine, wasm).map_err(|e| {
            Error::Load(format!(
                "not a valid WebAssembly component ({e}); build it with `cargo build --target wasm32-wasip2`"
            ))
        })
    }

    /// Compiles once per (component, wasmtime build and settings); later runs
    /// load the native code from `dir`. A cache that cannot be read or written
    /// only costs a compile.
    fn compile_cached(&self, wasm: &[u8], dir: &Path) -> Result<Component, Error> {
        let path = dir.join(format!("{}.cwasm", self.cache_key(wasm)));
        check_private(dir)?;
        if path.exists() {
            check_private(&path)?;
            // SAFETY: the file was written by `Component::serialize` of this
            // very wasmtime build (the key includes its compatibility hash)
            // into a directory only this user can write.
            match unsafe { Component::deserialize_file(&self.inner.engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!("ignoring unreadable compiled component {}: {e}", path.display()),
            }
        }
        let component = self.compile(wasm)?;
        if let Err(e) = write_private(dir, &path, component.serialize().as_deref()) {
            tracing::warn!("could not cache the compiled component in {}: {e}", dir.display());
        }
        Ok(component)
    }

    fn cache_key(&self, wasm: &[u8]) -> String {
        use sha2::Digest as _;
        use std::hash::Hash as _;
        struct ShaHasher(sha2::Sha256);
        impl std::hash::Hasher for ShaHasher {
            fn finish(&self) -> u64 {
                0 // only `write` is used; the digest is read below
            }
            fn write(&mut self, bytes: &[u8]) {
                self.0.update(bytes);
            }
        }
        let mut hasher = ShaHasher(sha2::Sha256::new());
        self.inner.engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.0.update(wasm);
        terapi_domain::digest::hex(&hasher.0.finalize())
    }

    /// Binds a component to a connection; every call through the session uses
    /// the connection's base URL and credential.
    pub fn connect(
        &self,
        component: &ProviderComponent,
        spec: &ProviderSpec,
        connection: &Connection,
    ) -> Result<Session, Error> {
        self.connect_with_refresh(component, spec, connection, None)
    }

    /// Like `connect`; for OAuth2 connections `refresher` lets the host renew
    /// the access token before it expires and once after a 401, and hands each
    /// new token set to `on_refresh` to be saved.
    pub fn connect_with_refresh(
        &self,
        component: &ProviderComponent,
        spec: &ProviderSpec,
        connection: &Connection,
        refresher: Option<TokenRefresher>,
    ) -> Result<Session, Error> {
        self.session(Some(component), spec, connection, refresher)
    }

    /// A session of a provider no component serves: its credential and
    /// proxy only (`proxy`, and `verify_plain` before a connection is
    /// saved), under the same egress rules, limits and secret handling.
    pub fn connect_plain(
        &self,
        spec: &ProviderSpec,
        connection: &Connection,
        refresher: Option<TokenRefresher>,
    ) -> Result<Session, Error> {
        self.session(None, spec, connection, refresher)
    }

    fn session(
        &self,
        component: Option<&ProviderComponent>,
        spec: &ProviderSpec,
        connection: &Connection,
        refresher: Option<TokenRefresher>,
    ) -> Result<Session, Error> {
        let base =
            connection.resolve(spec).map_err(|source| Error::Connection { id: connection.id.clone(), source })?;
        // `resolve` has checked there is one.
        let proxy = spec.proxy.clone().unwrap_or_else(|| crate::providers::ProxySpec {
            base_url: base.to_string(),
            headers: Default::default(),
            query: Default::default(),
            retry: Default::default(),
            rate_limit: None,
            verification: None,
        });
        let limit = proxy.rate_limit.filter(|_| self.inner.config.rate_limits);
        let tenant = connection.tenant(spec, &base);
        let budget = Arc::new(Budget::new(&tenant, limit, self.inner.budgets.clone()));
        let redactor = Redactor::new(connection.credentials.secrets().iter());
        let auth = match &connection.credentials {
            Credentials::Basic { .. } | Credentials::ApiKey { .. } => {
                Authorizer::from_credentials(&connection.credentials)
            }
            Credentials::OAuth2 { .. } => Authorizer::OAuth(Arc::new(OAuthTokens::new(
                &connection.credentials,
                refresher,
                redactor.clone(),
                self.inner.http.clone(),
                spec.clone(),
                connection.config.clone(),
            ))),
            Credentials::OAuth2ClientCredentials { client_id, client_secret } => {
                Authorizer::ClientCredentials(Arc::new(ClientCredentialTokens::new(
                    &connection.id,
                    client_id,
                    client_secret,
                    self.inner.client_tokens.clone(),
                    redactor.clone(),
                    self.inner.http.clone(),
                    spec.clone(),
                    connection.config.clone(),
                )))
            }
        };
        let placement = placement_for(&proxy, connection, &redactor);
        let egress = Egress::new(
            self.inner.http.clone(),
            base,
            auth,
            self.inner.config.egress.clone(),
            budget,
            proxy.retry.after.clone(),
        )
        .with_placement(placement);
        Ok(Session {
            runtime: self.clone(),
            component: component.cloned(),
            egress: Some(Arc::new(egress)),
            redactor,
            label: Arc::from(format!("{}/{}", connection.provider, connection.id)),
            config: connection.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            verification: proxy.verification.clone(),
            refused_hint: Arc::from(refused_hint(spec, &connection.credentials)),
        })
    }

    /// Reads what a component offers; no connection needed.
    pub async fn describe(&self, component: &ProviderComponent) -> Result<ProviderDescription, Error> {
        let session = Session::unconnected(self, component, "describe");
        session
            .in_guest(GuestCall::Describe, async |store, instance| {
                let requirements = component.auth.load(&mut *store, instance)?.call_describe(&mut *store).await?;
                let syncs = match &component.sync {
                    Some(export) => export.load(&mut *store, instance)?.call_list_syncs(&mut *store).await?,
                    None => Vec::new(),
                };
                let actions = match &component.action {
                    Some(export) => export.load(&mut *store, instance)?.call_list_actions(&mut *store).await?,
                    None => Vec::new(),
                };
                Ok(Ok(ProviderDescription { requirements, syncs, actions }))
            })
            .await
    }
}

/// Compiled code in the cache is loaded as native code: a file someone else
/// could have written is a way into this process (a flipped byte in a
/// `.cwasm` crashed it). Refuses a directory or file not owned by this user
/// or writable by others.
fn check_private(path: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let metadata = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::Load(format!("the component cache {} cannot be read: {e}", path.display()))),
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if metadata.uid() != me {
            return Err(Error::Load(format!(
                "the component cache {} belongs to another user (uid {}), so its compiled code cannot be trusted; \
                 use a cache dir of your own (--cache-dir) or --no-cache",
                path.display(),
                metadata.uid()
            )));
        }
        if metadata.mode() & 0o022 != 0 {
            return Err(Error::Load(format!(
                "the component cache {} is writable by other users (mode {:o}), so its compiled code cannot be \
                 trusted; run `chmod go-w {}` (or use --no-cache)",
                path.display(),
                metadata.mode() & 0o777,
                path.display()
            )));
        }
    }
    Ok(())
}

/// Writes atomically (temp file + rename) so a concurrent reader never sees
/// half a file, in a directory created with mode 0700.
fn write_private(dir: &Path, path: &Path, bytes: Result<&[u8], &wasmtime::Error>) -> std::io::Result<()> {
    let bytes = bytes.map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path)
}

fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("terapi-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning a thread at startup");
}

/// Where the entry says the credential goes: its `proxy.headers` and
/// `proxy.query` templates, or `Authorization` when it has none. Values a
/// template could reveal (the key, config values) are known to the
/// redactor already; a rendered header that mixes them (`base64(user:key)`)
/// is added too.
fn placement_for(proxy: &crate::providers::ProxySpec, connection: &Connection, redactor: &Redactor) -> Placement {
    if proxy.headers.is_empty() && proxy.query.is_empty() {
        return Placement::Authorization;
    }
    let mut values = std::collections::BTreeMap::new();
    for name in ["apiKey", "username", "password", "clientId", "clientSecret"] {
        if let Some(value) = connection.credentials.template_value(name) {
            values.insert(name.to_string(), Secret::new(&value));
            values.insert(format!("credentials.{name}"), Secret::new(value));
        }
    }
    for name in ["api_key", "client_id", "client_secret"] {
        if let Some(value) = connection.credentials.template_value(name) {
            values.insert(format!("credentials.{name}"), Secret::new(value));
        }
    }
    for (key, value) in &connection.config {
        values.insert(format!("connectionConfig.{key}"), Secret::new(value));
    }
    let values = Arc::new(values);
    // Static renderings (no token in them) are scrubbed like the key.
    let lookup = |name: &str| values.get(name).map(|v| v.expose().to_string());
    for template in proxy.headers.values().chain(proxy.query.values()) {
        if template.contains("${")
            && !template.contains("accessToken")
            && let Ok(rendered) = crate::template::render_value(template, &lookup)
        {
            redactor.add(&Secret::new(rendered));
        }
    }
    Placement::Templates {
        headers: proxy.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        query: proxy.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        values,
        default_authorization: !matches!(connection.credentials, Credentials::ApiKey { .. }),
    }
}

mod guest;
mod session;

pub use guest::GuestState;
use guest::*;
pub use session::Session;
use session::*;
