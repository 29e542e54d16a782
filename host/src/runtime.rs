//! Loading provider components and calling them.
//!
//! Shaped like wasmtime's own embeddings: one `Engine` and `Linker` per
//! process, a component compiled and pre-instantiated once, and a fresh
//! `Store` + instance per call, so no state leaks between calls or connections
//! and a misbehaving call is dropped whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Instance, InstancePre, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

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
pub use terapi_domain::records::{SyncPage, SyncRecord, WebhookRecords};
use bindings::terapi::provider::types as wit;

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
            .timed(async {
                let (mut store, instance) = session.instantiate(GuestCall::Describe).await?;
                let auth = component.auth.load(&mut store, &instance);
                let auth = session.finish(&store, auth)?;
                let requirements = auth.call_describe(&mut store).await;
                let requirements = session.finish(&store, requirements)?;
                let syncs = match &component.sync {
                    Some(export) => {
                        let sync = export.load(&mut store, &instance);
                        let sync = session.finish(&store, sync)?;
                        let syncs = sync.call_list_syncs(&mut store).await;
                        session.finish(&store, syncs)?
                    }
                    None => Vec::new(),
                };
                let actions = match &component.action {
                    Some(export) => {
                        let action = export.load(&mut store, &instance);
                        let action = session.finish(&store, action)?;
                        let actions = action.call_list_actions(&mut store).await;
                        session.finish(&store, actions)?
                    }
                    None => Vec::new(),
                };
                Ok(ProviderDescription { requirements, syncs, actions })
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

/// A component bound to one connection. Owns what it needs (clones of the
/// runtime and component), so it can be kept for as long as the embedder likes.
/// A provider no component serves has a session too, for its proxy.
#[derive(Clone)]
pub struct Session {
    runtime: Runtime,
    component: Option<ProviderComponent>,
    /// The entry's `proxy.verification`, for `verify_plain`.
    verification: Option<crate::providers::VerificationSpec>,
    egress: Option<Arc<Egress>>,
    redactor: Redactor,
    label: Arc<str>,
    /// The connection's config, which the component checks before `verify`.
    config: Arc<[(String, String)]>,
    /// What to do when the provider refuses the credential, by its kind:
    /// the component knows the provider's words, the host the credential's.
    refused_hint: Arc<str>,
}

impl Session {
    /// A session with no connection: its guest's HTTP requests are refused.
    fn unconnected(runtime: &Runtime, component: &ProviderComponent, label: &str) -> Session {
        Session {
            runtime: runtime.clone(),
            component: Some(component.clone()),
            verification: None,
            egress: None,
            redactor: Redactor::default(),
            label: Arc::from(label),
            config: Arc::from([]),
            refused_hint: Arc::from(""),
        }
    }

    pub fn base_url(&self) -> Option<&url::Url> {
        self.egress.as_deref().map(Egress::base_url)
    }

    /// `text` with this connection's secrets, and anything shaped like an
    /// `Authorization` value, replaced by `<redacted>`: for text about to be
    /// logged or stored.
    /// Requests this session's connection sent so far (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.egress.as_ref().map_or(0, |e| e.requests_sent())
    }

    /// The provider tenant whose request limits this session shares (Gong:
    /// the company), if it has a connection and the provider has limits.
    pub fn tenant(&self) -> Option<&str> {
        self.egress.as_ref().and_then(|e| e.tenant())
    }

    pub fn runtime_config(&self) -> &RuntimeConfig {
        self.runtime.config()
    }

    pub fn redact(&self, text: &str) -> String {
        self.redactor.scrub(text)
    }

    /// The component serving this session's provider, if one does.
    pub fn component(&self) -> Option<&ProviderComponent> {
        self.component.as_ref()
    }

    fn serving(&self) -> Result<&ProviderComponent, Error> {
        self.component.as_ref().ok_or_else(|| {
            Error::Provider(ProviderFailure::NotSupported(
                "no component serves this provider: it has auth and proxy only (no syncs or actions)".into(),
            ))
        })
    }

    /// Checks the credential of a provider no component serves, as Nango
    /// does: the entry's `proxy.verification` request (a 2xx passes); an
    /// OAUTH2_CC credential is checked by getting a token, then that
    /// request if there is one. `Ok(false)`: the entry names no way to check.
    pub async fn verify_plain(&self) -> Result<bool, Error> {
        let egress = self.egress.as_deref().ok_or_else(|| EgressError::Refused("no connection".into()))?;
        let token_checked = egress.prepare_credential().await?;
        let Some(verification) = &self.verification else { return Ok(token_checked) };
        let Some(path) = verification.endpoints.first() else { return Ok(token_checked) };
        let method = verification.method.as_deref().unwrap_or("GET").parse().map_err(EgressError::Refused)?;
        let path = if path.starts_with('/') { path.clone() } else { format!("/{path}") };
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (
                path.to_string(),
                url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
            ),
            None => (path, Vec::new()),
        };
        let request = OutboundRequest {
            method,
            path,
            query,
            headers: verification.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            body: None,
            idempotent: true,
        };
        let response = egress.send(&request).await?;
        match response.status {
            200..=299 => Ok(true),
            401 | 403 => Err(Error::Provider(ProviderFailure::Unauthorized(format!(
                "the provider refused the credential (HTTP {} to {} {})",
                response.status,
                request.method.as_str(),
                request.path
            )))),
            status => Err(Error::Provider(ProviderFailure::Remote {
                status,
                message: self.redact(&format!(
                    "checking the credential with {} {} got HTTP {status}",
                    request.method.as_str(),
                    request.path
                )),
            })),
        }
    }

    /// Checks the credential: the component's `verify`, or for a provider
    /// no component serves, `verify_plain`.
    pub async fn verify(&self) -> Result<Verification, Error> {
        let Some(component) = self.component.as_ref() else {
            let checked = self.timed(self.verify_plain()).await?;
            let summary = if checked {
                "the provider accepted the credential".to_string()
            } else {
                "not checked: the provider's entry names no `proxy.verification` request".to_string()
            };
            return Ok(Verification { summary, account: None });
        };
        self.timed(async {
            let (mut store, instance) = self.instantiate(GuestCall::CheckConfig).await?;
            let auth = component.auth.load(&mut store, &instance);
            let auth = self.finish(&store, auth)?;
            // The component's own word on the config first: no request
            // goes out with a base URL it does not recognise.
            let checked = auth.call_check_config(&mut store, &self.config).await;
            self.finish(&store, checked)?.map_err(|e| self.provider_error(e))?;
            store.data_mut().call = GuestCall::Verify;
            store.data_mut().egress = self.egress.clone();
            let result = auth.call_verify(&mut store).await;
            self.finish(&store, result)?.map_err(|e| self.provider_error(e))
        })
        .await
    }

    fn missing(&self, export: &str) -> Error {
        Error::Provider(ProviderFailure::NotSupported(format!(
            "this provider component does not export `{export}`, so it offers no {export}s"
        )))
    }

    pub async fn run_sync_page(
        &self,
        sync: &str,
        checkpoint: Option<&str>,
        options: &SyncOptions,
    ) -> Result<SyncPage, Error> {
        self.run_sync_page_at(sync, checkpoint, options, unix_now()).await
    }

    /// `run_sync_page` with the clock given: where a new date window ends
    /// (replaying a run, or testing what a later run reads).
    pub async fn run_sync_page_at(
        &self,
        sync: &str,
        checkpoint: Option<&str>,
        options: &SyncOptions,
        now_unix_seconds: i64,
    ) -> Result<SyncPage, Error> {
        let request = bindings::exports::terapi::provider::sync::PageRequest {
            sync: sync.to_string(),
            checkpoint: checkpoint.map(str::to_string),
            options: options.clone(),
            now_unix_seconds,
        };
        let export = self.serving()?.sync.as_ref().ok_or_else(|| self.missing("sync"))?;
        self.timed(async {
            let (mut store, instance) = self.instantiate(GuestCall::RunPage).await?;
            let sync = export.load(&mut store, &instance);
            let sync = self.finish(&store, sync)?;
            let result = sync.call_run_page(&mut store, &request).await;
            self.finish(&store, result)?.map(page_from_wit).map_err(|e| self.provider_error(e))
        })
        .await
    }

    /// Runs an action; `input` and the result are JSON documents.
    pub async fn run_action(&self, name: &str, input: &str) -> Result<String, Error> {
        let export = self.serving()?.action.as_ref().ok_or_else(|| self.missing("action"))?;
        self.timed(async {
            let (mut store, instance) = self.instantiate(GuestCall::RunAction).await?;
            let action = export.load(&mut store, &instance);
            let action = self.finish(&store, action)?;
            let result = action.call_run(&mut store, name, input).await;
            self.finish(&store, result)?.map_err(|e| self.provider_error(e))
        })
        .await
    }

    /// Maps a payload the provider pushed (a webhook) to records; makes no
    /// HTTP request.
    pub async fn handle_webhook(&self, payload: &[u8]) -> Result<WebhookRecords, Error> {
        let export = self.serving()?.webhook.as_ref().ok_or_else(|| self.missing("webhook"))?;
        self.timed(async {
            let (mut store, instance) = self.instantiate(GuestCall::HandleWebhook).await?;
            let webhook = export.load(&mut store, &instance);
            let webhook = self.finish(&store, webhook)?;
            let result = webhook.call_handle(&mut store, payload).await;
            self.finish(&store, result)?
                .map(|mapped: wit_webhook::WebhookRecords| WebhookRecords {
                    model: mapped.model,
                    records: mapped.records.into_iter().map(record_from_wit).collect(),
                    is_test: mapped.is_test,
                })
                .map_err(|e| self.provider_error(e))
        })
        .await
    }

    /// Lets the component shape a raw request, then sends it under the same
    /// egress rules as the component's own requests.
    pub async fn proxy(&self, request: OutboundRequest) -> Result<InboundResponse, Error> {
        let prepared = match self.component.as_ref().and_then(|c| c.proxy.as_ref()) {
            Some(export) => OutboundRequest::from(
                self.timed(async {
                    let (mut store, instance) = self.instantiate(GuestCall::PrepareProxy).await?;
                    let proxy = export.load(&mut store, &instance);
                    let proxy = self.finish(&store, proxy)?;
                    let result = proxy.call_prepare(&mut store, &request.into()).await;
                    self.finish(&store, result)?.map_err(|e| self.provider_error(e))
                })
                .await?,
            ),
            // Shaping is the component's optional business; the egress
            // rules below hold either way.
            None => request,
        };
        let egress = self.egress.as_deref().ok_or_else(|| EgressError::Refused("no connection".into()))?;
        Ok(egress.send(&prepared).await?)
    }

    async fn timed<R>(&self, call: impl Future<Output = Result<R, Error>>) -> Result<R, Error> {
        let limit = self.runtime.inner.config.call_timeout;
        tokio::time::timeout(limit, call).await.unwrap_or(Err(Error::Guest(GuestFailure::WallTime(limit))))
    }

    async fn instantiate(&self, call: GuestCall) -> Result<(Store<GuestState>, Instance), Error> {
        let config = &self.runtime.inner.config;
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        // For components built with std (the Gong component is not, and
        // imports no WASI). Deny by default: no env, args, preopened dirs or
        // network; stdout is discarded; stderr is kept for crash reports;
        // clocks and randomness are WASI's defaults (std needs them to start).
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        let state = GuestState {
            wasi,
            table: ResourceTable::new(),
            limiter: GuestLimiter { max_memory_bytes: config.max_memory_bytes, memory_exceeded: false },
            call,
            egress: self.egress.clone().filter(|_| call.may_send()),
            last_error_log: None,
            redactor: self.redactor.clone(),
            label: self.label.clone(),
            stderr,
            cpu_ticks_left: ticks(config.cpu_budget),
            cpu_exhausted: false,
        };
        let mut store = Store::new(&self.runtime.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            // Roughly one tick per callback of guest execution; a long host
            // call costs one tick at most, since the deadline is checked only
            // while wasm runs.
            if state.cpu_ticks_left == 0 {
                state.cpu_exhausted = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            state.cpu_ticks_left -= 1;
            Ok(UpdateDeadline::Yield(1))
        });
        let instance = self.serving()?.pre.instantiate_async(&mut store).await;
        let instance = self.finish(&store, instance)?;
        Ok((store, instance))
    }

    /// Turns a wasmtime error (trap, limit, instantiation failure) into a
    /// `GuestFailure` that says which limit was hit, with the guest's own
    /// last words (a panic message) where there are some.
    fn finish<R>(&self, store: &Store<GuestState>, result: wasmtime::Result<R>) -> Result<R, Error> {
        let error = match result {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let state = store.data();
        let config = &self.runtime.inner.config;
        if state.cpu_exhausted {
            return Err(GuestFailure::CpuBudget(config.cpu_budget).into());
        }
        if state.limiter.memory_exceeded {
            return Err(GuestFailure::Memory(config.max_memory_bytes >> 20).into());
        }
        let text = format!("{error:#}");
        if text.contains("concurrent") && text.contains("limit") {
            return Err(GuestFailure::Busy(text).into());
        }
        // The guest's last words: a std guest's panic goes to stderr, a
        // guest without std logs it at error level.
        let stderr = String::from_utf8_lossy(&state.stderr.contents()).trim().to_string();
        let last_words = if stderr.is_empty() { state.last_error_log.clone() } else { Some(stderr) };
        let message = match last_words {
            Some(words) => format!("{} ({})", self.redactor.scrub(&words), error.root_cause()),
            None => error.root_cause().to_string(),
        };
        Err(GuestFailure::Crashed(message).into())
    }

    fn provider_error(&self, error: wit::ProviderError) -> Error {
        let s = |m: String| self.redactor.scrub(&m);
        Error::Provider(match error {
            wit::ProviderError::Unauthorized(m) if self.refused_hint.is_empty() => ProviderFailure::Unauthorized(s(m)),
            wit::ProviderError::Unauthorized(m) => {
                ProviderFailure::Unauthorized(format!("{}; {}", s(m), self.refused_hint))
            }
            wit::ProviderError::InvalidInput(m) => ProviderFailure::InvalidInput(s(m)),
            wit::ProviderError::NotFound(m) => ProviderFailure::NotFound(s(m)),
            wit::ProviderError::NotAvailable(m) => ProviderFailure::NotAvailable(s(m)),
            wit::ProviderError::Remote(r) => ProviderFailure::Remote { status: r.status, message: s(r.message) },
            wit::ProviderError::Http(e) => ProviderFailure::Http(e.into()),
            wit::ProviderError::BadResponse(m) => ProviderFailure::BadResponse(s(m)),
            wit::ProviderError::Unknown(m) => ProviderFailure::Unknown(s(m)),
            wit::ProviderError::NotSupported(m) => ProviderFailure::NotSupported(s(m)),
        })
    }
}

/// What a person does about a refused credential of this kind, in the
/// entry's own words for its fields (Gong: "Access Key").
fn refused_hint(spec: &ProviderSpec, credentials: &Credentials) -> String {
    let title = |field: &str, fallback: &str| {
        spec.credentials
            .get(field)
            .and_then(|f| f.title.as_deref())
            .map(str::to_lowercase)
            .unwrap_or_else(|| fallback.to_string())
    };
    match credentials {
        Credentials::Basic { .. } => {
            format!("check the {} and {}", title("username", "username"), title("password", "password"))
        }
        Credentials::ApiKey { .. } => format!("check the {}", title("apiKey", "API key")),
        Credentials::OAuth2ClientCredentials { .. } => "check the client id and client secret".into(),
        // Saved from an authorization: the grant was revoked or its scopes
        // changed.
        Credentials::OAuth2 { refresh_token: Some(_), .. } => {
            "re-authorize the connection (the grant may have been revoked)".into()
        }
        Credentials::OAuth2 { refresh_token: None, .. } => {
            "check the access token (it may have expired or been revoked), or authorize a connection".into()
        }
    }
}

fn ticks(budget: Duration) -> u64 {
    (budget.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// The export a call runs. The contract (WIT docs, HOST.md) lets only
/// `auth.verify`, `sync.run-page` and `action.run` make HTTP requests: a
/// proxy's `prepare` that sent its own would double every request, and a
/// webhook's `handle` would turn a flood of deliveries into a flood of
/// requests to the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuestCall {
    Check,
    Describe,
    CheckConfig,
    Verify,
    RunPage,
    RunAction,
    PrepareProxy,
    HandleWebhook,
}

impl GuestCall {
    fn may_send(self) -> bool {
        matches!(self, GuestCall::Verify | GuestCall::RunPage | GuestCall::RunAction)
    }

    fn export(self) -> &'static str {
        match self {
            GuestCall::Check => "instantiation",
            GuestCall::Describe => "auth.describe, sync.list-syncs and action.list-actions",
            GuestCall::CheckConfig => "auth.check-config",
            GuestCall::Verify => "auth.verify",
            GuestCall::RunPage => "sync.run-page",
            GuestCall::RunAction => "action.run",
            GuestCall::PrepareProxy => "proxy.prepare",
            GuestCall::HandleWebhook => "webhook.handle",
        }
    }
}

fn unix_now() -> i64 {
    terapi_domain::clock::unix_now() as i64
}

// The contract's records become the platform's own at this boundary, so
// nothing past the runtime depends on a WIT version.
fn record_from_wit(record: wit_sync::SyncRecord) -> SyncRecord {
    SyncRecord { id: record.id, modified_at: record.modified_at, json: record.json }
}

fn page_from_wit(page: wit_sync::SyncPage) -> SyncPage {
    SyncPage {
        records: page.records.into_iter().map(record_from_wit).collect(),
        next_checkpoint: page.next_checkpoint,
        done: page.done,
        total_records: page.total_records,
    }
}

/// Per-call state of one guest instance.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: GuestLimiter,
    call: GuestCall,
    /// `None` where the call may not send (or has no connection).
    egress: Option<Arc<Egress>>,
    /// The last message logged at error level: a guest without std reports
    /// its panic this way.
    last_error_log: Option<String>,
    redactor: Redactor,
    label: Arc<str>,
    stderr: MemoryOutputPipe,
    cpu_ticks_left: u64,
    cpu_exhausted: bool,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

struct GuestLimiter {
    max_memory_bytes: usize,
    memory_exceeded: bool,
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            // Refuse the growth (memory.grow returns -1); Rust guests then
            // abort, and the flag lets us say why.
            self.memory_exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl wit::Host for GuestState {}

impl bindings::terapi::provider::http::Host for GuestState {
    async fn send(&mut self, request: wit::HttpRequest) -> wasmtime::Result<Result<wit::HttpResponse, wit::HttpError>> {
        let Some(egress) = self.egress.clone() else {
            let reason = if self.call.may_send() {
                "this call has no connection; HTTP is available in verify, sync and action calls on a connection"
                    .to_string()
            } else {
                format!(
                    "{} may not make HTTP requests (only auth.verify, sync.run-page and action.run may; see HOST.md)",
                    self.call.export()
                )
            };
            return Ok(Err(wit::HttpError::Refused(reason)));
        };
        let request = OutboundRequest::from(request);
        tracing::debug!(target: "terapi::egress", connection = %self.label, method = request.method.as_str(), path = %request.path, "guest request");
        Ok(egress.send(&request).await.map(Into::into).map_err(Into::into))
    }
}

impl bindings::terapi::provider::log::Host for GuestState {
    async fn log(&mut self, level: bindings::terapi::provider::log::Level, message: String) -> wasmtime::Result<()> {
        use bindings::terapi::provider::log::Level;
        let mut message = self.redactor.scrub(&message);
        if message.len() > MAX_LOG_LINE {
            let cut = (0..=MAX_LOG_LINE).rev().find(|i| message.is_char_boundary(*i)).unwrap_or(0);
            message.truncate(cut);
            message.push_str(" [truncated]");
        }
        let label = &*self.label;
        match level {
            Level::Trace => {
                tracing::trace!(target: "terapi::guest", connection = label, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "terapi::guest", connection = label, "{message}")
            }
            Level::Info => tracing::info!(target: "terapi::guest", connection = label, "{message}"),
            Level::Warn => tracing::warn!(target: "terapi::guest", connection = label, "{message}"),
            Level::Error => {
                tracing::error!(target: "terapi::guest", connection = label, "{message}");
                self.last_error_log = Some(message);
            }
        }
        Ok(())
    }
}

impl From<wit::Method> for Method {
    fn from(m: wit::Method) -> Self {
        match m {
            wit::Method::Get => Method::Get,
            wit::Method::Post => Method::Post,
            wit::Method::Put => Method::Put,
            wit::Method::Patch => Method::Patch,
            wit::Method::Delete => Method::Delete,
        }
    }
}

impl From<Method> for wit::Method {
    fn from(m: Method) -> Self {
        match m {
            Method::Get => wit::Method::Get,
            Method::Post => wit::Method::Post,
            Method::Put => wit::Method::Put,
            Method::Patch => wit::Method::Patch,
            Method::Delete => wit::Method::Delete,
        }
    }
}

impl From<wit::HttpRequest> for OutboundRequest {
    fn from(r: wit::HttpRequest) -> Self {
        OutboundRequest {
            method: r.method.into(),
            path: r.path,
            query: r.query,
            headers: r.headers,
            body: r.body,
            idempotent: r.idempotent,
        }
    }
}

impl From<OutboundRequest> for wit::HttpRequest {
    fn from(r: OutboundRequest) -> Self {
        wit::HttpRequest {
            method: r.method.into(),
            path: r.path,
            query: r.query,
            headers: r.headers,
            body: r.body,
            idempotent: r.idempotent,
        }
    }
}

impl From<InboundResponse> for wit::HttpResponse {
    fn from(r: InboundResponse) -> Self {
        wit::HttpResponse { status: r.status, headers: r.headers, body: r.body }
    }
}

impl From<EgressError> for wit::HttpError {
    fn from(e: EgressError) -> Self {
        match e {
            EgressError::Refused(m) => wit::HttpError::Refused(m),
            EgressError::RateLimited(m) => wit::HttpError::RateLimited(m),
            EgressError::Timeout(m) => wit::HttpError::Timeout(m),
            EgressError::Transport(m) => wit::HttpError::Transport(m),
            EgressError::TooLarge(m) => wit::HttpError::TooLarge(m),
            EgressError::Reauthorize(m) => wit::HttpError::Reauthorize(m),
        }
    }
}

impl From<wit::HttpError> for EgressError {
    fn from(e: wit::HttpError) -> Self {
        match e {
            wit::HttpError::Refused(m) => EgressError::Refused(m),
            wit::HttpError::RateLimited(m) => EgressError::RateLimited(m),
            wit::HttpError::Timeout(m) => EgressError::Timeout(m),
            wit::HttpError::Transport(m) => EgressError::Transport(m),
            wit::HttpError::TooLarge(m) => EgressError::TooLarge(m),
            wit::HttpError::Reauthorize(m) => EgressError::Reauthorize(m),
        }
    }
}
