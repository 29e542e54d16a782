//! What one guest instance holds, and the host side of its imports.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::*;

pub(super) fn unix_now() -> i64 {
    terapi_domain::clock::unix_now() as i64
}

// The contract's records become the platform's own at this boundary, so
// nothing past the runtime depends on a WIT version.
pub(super) fn record_from_wit(record: wit_sync::SyncRecord) -> SyncRecord {
    SyncRecord { id: record.id, modified_at: record.modified_at, json: record.json }
}

pub(super) fn page_from_wit(page: wit_sync::SyncPage) -> SyncPage {
    SyncPage {
        records: page.records.into_iter().map(record_from_wit).collect(),
        next_checkpoint: page.next_checkpoint,
        done: page.done,
        total_records: page.total_records,
    }
}

/// Per-call state of one guest instance.
pub struct GuestState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: GuestLimiter,
    pub(super) call: GuestCall,
    /// `None` where the call may not send (or has no connection).
    pub(super) egress: Option<Arc<Egress>>,
    /// The last message logged at error level: a guest without std reports
    /// its panic this way.
    pub(super) last_error_log: Option<String>,
    pub(super) redactor: Redactor,
    pub(super) label: Arc<str>,
    pub(super) stderr: MemoryOutputPipe,
    pub(super) cpu_ticks_left: u64,
    pub(super) cpu_exhausted: bool,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

pub(super) struct GuestLimiter {
    pub(super) max_memory_bytes: usize,
    pub(super) memory_exceeded: bool,
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
