//! A component bound to one connection, and the one way into its guest.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::Instance;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::*;

/// A component bound to one connection. Owns what it needs (clones of the
/// runtime and component), so it can be kept for as long as the embedder likes.
/// A provider no component serves has a session too, for its proxy.
#[derive(Clone)]
pub struct Session {
    pub(super) runtime: Runtime,
    pub(super) component: Option<ProviderComponent>,
    /// The entry's `proxy.verification`, for `verify_plain`.
    pub(super) verification: Option<crate::providers::VerificationSpec>,
    pub(super) egress: Option<Arc<Egress>>,
    pub(super) redactor: Redactor,
    pub(super) label: Arc<str>,
    /// The connection's config, which the component checks before `verify`.
    pub(super) config: Arc<[(String, String)]>,
    /// What to do when the provider refuses the credential, by its kind:
    /// the component knows the provider's words, the host the credential's.
    pub(super) refused_hint: Arc<str>,
}

impl Session {
    /// A session with no connection: its guest's HTTP requests are refused.
    pub(super) fn unconnected(runtime: &Runtime, component: &ProviderComponent, label: &str) -> Session {
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

    pub(super) fn serving(&self) -> Result<&ProviderComponent, Error> {
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
        self.in_guest(GuestCall::CheckConfig, async |store, instance| {
            let auth = component.auth.load(&mut *store, instance)?;
            // The component's own word on the config first: no request
            // goes out with a base URL it does not recognise.
            if let Err(refused) = auth.call_check_config(&mut *store, &self.config).await? {
                return Ok(Err(refused));
            }
            store.data_mut().call = GuestCall::Verify;
            store.data_mut().egress = self.egress.clone();
            auth.call_verify(&mut *store).await
        })
        .await
    }

    pub(super) fn missing(&self, export: &str) -> Error {
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
        self.in_guest(GuestCall::RunPage, async |store, instance| {
            export.load(&mut *store, instance)?.call_run_page(&mut *store, &request).await
        })
        .await
        .map(page_from_wit)
    }

    /// Runs an action; `input` and the result are JSON documents.
    pub async fn run_action(&self, name: &str, input: &str) -> Result<String, Error> {
        let export = self.serving()?.action.as_ref().ok_or_else(|| self.missing("action"))?;
        self.in_guest(GuestCall::RunAction, async |store, instance| {
            export.load(&mut *store, instance)?.call_run(&mut *store, name, input).await
        })
        .await
    }

    /// Maps a payload the provider pushed (a webhook) to records; makes no
    /// HTTP request.
    pub async fn handle_webhook(&self, payload: &[u8]) -> Result<WebhookRecords, Error> {
        let export = self.serving()?.webhook.as_ref().ok_or_else(|| self.missing("webhook"))?;
        let mapped: wit_webhook::WebhookRecords = self
            .in_guest(GuestCall::HandleWebhook, async |store, instance| {
                export.load(&mut *store, instance)?.call_handle(&mut *store, payload).await
            })
            .await?;
        Ok(WebhookRecords {
            model: mapped.model,
            records: mapped.records.into_iter().map(record_from_wit).collect(),
            is_test: mapped.is_test,
        })
    }

    /// Lets the component shape a raw request, then sends it under the same
    /// egress rules as the component's own requests.
    pub async fn proxy(&self, request: OutboundRequest) -> Result<InboundResponse, Error> {
        let prepared = match self.component.as_ref().and_then(|c| c.proxy.as_ref()) {
            Some(export) => OutboundRequest::from(
                self.in_guest(GuestCall::PrepareProxy, async |store, instance| {
                    export.load(&mut *store, instance)?.call_prepare(&mut *store, &request.into()).await
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

    /// One call into a fresh instance of the guest: `body` loads the export
    /// and calls it; a trap, the CPU or memory cap, the wall-clock limit and
    /// the provider's own error are all told the same way, whichever export
    /// it was.
    pub(super) async fn in_guest<T>(
        &self,
        call: GuestCall,
        body: impl AsyncFnOnce(&mut Store<GuestState>, &Instance) -> wasmtime::Result<Result<T, wit::ProviderError>>,
    ) -> Result<T, Error> {
        self.timed(async {
            let (mut store, instance) = self.instantiate(call).await?;
            let result = body(&mut store, &instance).await;
            self.finish(&store, result)?.map_err(|e| self.provider_error(e))
        })
        .await
    }

    pub(super) async fn timed<R>(&self, call: impl Future<Output = Result<R, Error>>) -> Result<R, Error> {
        let limit = self.runtime.inner.config.call_timeout;
        tokio::time::timeout(limit, call).await.unwrap_or(Err(Error::Guest(GuestFailure::WallTime(limit))))
    }

    pub(super) async fn instantiate(&self, call: GuestCall) -> Result<(Store<GuestState>, Instance), Error> {
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
    pub(super) fn finish<R>(&self, store: &Store<GuestState>, result: wasmtime::Result<R>) -> Result<R, Error> {
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

    pub(super) fn provider_error(&self, error: wit::ProviderError) -> Error {
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
pub(super) fn refused_hint(spec: &ProviderSpec, credentials: &Credentials) -> String {
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

pub(super) fn ticks(budget: Duration) -> u64 {
    (budget.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// The export a call runs. The contract (WIT docs, HOST.md) lets only
/// `auth.verify`, `sync.run-page` and `action.run` make HTTP requests: a
/// proxy's `prepare` that sent its own would double every request, and a
/// webhook's `handle` would turn a flood of deliveries into a flood of
/// requests to the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GuestCall {
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
    pub(super) fn may_send(self) -> bool {
        matches!(self, GuestCall::Verify | GuestCall::RunPage | GuestCall::RunAction)
    }

    pub(super) fn export(self) -> &'static str {
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
