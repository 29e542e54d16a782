//! The event outbox: what an app is told by webhook (a sync run ended, a
//! connection was made) is written to the store in the same transaction as
//! the thing itself, and delivered from there by any process that runs a
//! deliverer (`terapi serve`, `terapi worker`). Deliveries are claimed
//! (`SKIP LOCKED` on PostgreSQL), so every process on the store shares the
//! work and none sends an event another is sending; retries and their
//! backoff are kept in the store, and every attempt is logged.
//!
//! Delivery is at least once: a process that dies between sending and
//! recording leaves its claim to lapse, and the event is sent again with
//! the same `X-Terapi-Event-Id`, the receiver's idempotency key.
//!
//! Bodies are Nango's webhook shapes (`@nangohq/types` 0.71:
//! `NangoSyncWebhookBody`, `NangoAuthWebhookBody`), signed as Nango signs:
//! `X-Nango-Hmac-Sha256` (HMAC-SHA256 of the body under the signing key,
//! what `verifyIncomingWebhookRequest` checks) and the older
//! `X-Nango-Signature` (SHA-256 of key and body).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Digest as _;
use terapi_host::Secret;
use terapi_store::time::rfc3339_ms;
use terapi_store::{DeliveryNext, DeliveryRecord, EventRecord, NewEvent};
use tokio_util::sync::CancellationToken;

use crate::Platform;

/// Where events go and how hard to try.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: url::Url,
    pub signing_key: Secret,
    /// Attempts per event (the first and its retries).
    pub attempts: u32,
    /// The wait before the first retry; doubled each time, up to an hour.
    pub first_backoff: Duration,
    /// Send a sync event even when the run changed nothing (Nango's
    /// "always send").
    pub always_send: bool,
}

impl WebhookConfig {
    /// Nango's defaults: 7 attempts over about an hour.
    pub fn new(url: url::Url, signing_key: Secret) -> WebhookConfig {
        WebhookConfig { url, signing_key, attempts: 7, first_backoff: Duration::from_secs(30), always_send: false }
    }
}

/// How long a claimed event stays with its deliverer before another may
/// take it (a deliverer that died, or froze, mid-delivery).
const CLAIM_TTL: Duration = Duration::from_secs(60);
/// Events claimed per round.
const BATCH: u32 = 16;
/// How long a receiver has to answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(8);
/// Events are kept this long for `terapi webhooks deliveries`.
const KEEP_EVENTS: Duration = Duration::from_secs(7 * 24 * 3600);

/// The HMAC Nango's `verifyIncomingWebhookRequest` checks, in hex.
pub fn sign(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// Nango's older `X-Nango-Signature`: SHA-256 of the key then the body.
pub fn legacy_signature(key: &str, body: &[u8]) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update(key.as_bytes());
    hash.update(body);
    hex(&hash.finalize())
}

pub(crate) use terapi_domain::digest::hex;

/// A new event id: `evt_` and 128 random bits.
pub(crate) fn new_event_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is seeded from the OS once per process and stepped per
    // instance; two of them give 128 bits no other event will share.
    let a = RandomState::new().hash_one(Instant::now());
    let b = RandomState::new().hash_one(std::process::id());
    format!("evt_{a:016x}{b:016x}")
}

/// A sync event: the store adds the run's start, whether it resumed, and
/// (for a run that succeeded) what it changed.
pub(crate) fn sync_event(
    connection_id: &str,
    provider: &str,
    sync: &str,
    model: &str,
    error: Option<&str>,
) -> NewEvent {
    NewEvent {
        id: new_event_id(),
        kind: "sync".into(),
        connection_id: connection_id.into(),
        facts: json!({ "provider": provider, "sync": sync, "model": model, "error": error }).to_string(),
    }
}

/// A connection was made (`creation`) or given a new credential
/// (`override`): Nango's auth webhook.
pub(crate) fn auth_event(
    connection_id: &str,
    provider: &str,
    auth_mode: &str,
    end_user: Option<&Value>,
    operation: &str,
    tags: &std::collections::BTreeMap<String, String>,
) -> NewEvent {
    NewEvent {
        id: new_event_id(),
        kind: "auth".into(),
        connection_id: connection_id.into(),
        facts: json!({
            "provider": provider, "authMode": auth_mode, "operation": operation, "endUser": end_user, "tags": tags,
        })
        .to_string(),
    }
}

/// A token refresh the provider refused (Nango's auth webhook, `operation:
/// refresh`, `success: false`).
pub(crate) fn refresh_failure_event(connection_id: &str, provider: &str, reason: &str) -> NewEvent {
    NewEvent {
        id: new_event_id(),
        kind: "auth".into(),
        connection_id: connection_id.into(),
        facts: json!({
            "provider": provider,
            "authMode": "OAUTH2",
            "operation": "refresh",
            "success": false,
            "error": { "type": "refresh_token_error", "description": reason },
        })
        .to_string(),
    }
}

/// The body an event is delivered as; `None` when there is nothing to send
/// (a sync that changed nothing, unless `always_send`).
pub fn render(event: &EventRecord, always_send: bool) -> Option<Value> {
    let facts: Value = serde_json::from_str(&event.facts).unwrap_or(Value::Null);
    let text = |key: &str| facts.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    match event.kind.as_str() {
        "sync" => {
            let started = event.run_started_at_ms.unwrap_or(event.created_at_ms);
            let mut body = json!({
                "from": "nango",
                "type": "sync",
                "connectionId": event.connection_id,
                "providerConfigKey": text("provider"),
                "syncName": text("sync"),
                "syncVariant": "base",
                "model": text("model"),
                "syncType": if event.run_resumed { "INCREMENTAL" } else { "INITIAL" },
            });
            let object = body.as_object_mut()?;
            match facts.get("error").and_then(Value::as_str) {
                Some(error) => {
                    object.insert("success".into(), false.into());
                    object.insert("error".into(), json!({ "type": "script_error", "description": error }));
                    object.insert("startedAt".into(), rfc3339_ms(started).into());
                    object.insert("failedAt".into(), rfc3339_ms(event.created_at_ms).into());
                }
                None => {
                    let changes = event.changes.unwrap_or_default();
                    if changes.added + changes.updated + changes.deleted == 0 && !always_send {
                        return None;
                    }
                    let since = rfc3339_ms(started);
                    object.insert("success".into(), true.into());
                    object.insert("modifiedAfter".into(), since.clone().into());
                    object.insert("queryTimeStamp".into(), since.into());
                    object.insert("responseResults".into(), json!(changes));
                }
            }
            Some(body)
        }
        "auth" => {
            let provider = text("provider");
            let mut body = json!({
                "from": "nango",
                "type": "auth",
                "connectionId": event.connection_id,
                "providerConfigKey": provider,
                "provider": provider,
                "authMode": text("authMode"),
                "environment": "prod",
                "operation": text("operation"),
                "success": facts.get("success").and_then(Value::as_bool).unwrap_or(true),
            });
            if let Some(end_user) = facts.get("endUser").filter(|u| u.is_object()) {
                body.as_object_mut()?.insert("endUser".into(), end_user.clone());
            }
            if let Some(tags) = facts.get("tags").filter(|t| t.as_object().is_some_and(|t| !t.is_empty())) {
                body.as_object_mut()?.insert("tags".into(), tags.clone());
            }
            if let Some(error) = facts.get("error").filter(|e| e.is_object()) {
                body.as_object_mut()?.insert("error".into(), error.clone());
            }
            Some(body)
        }
        "async_action" => {
            let id = text("action_id");
            Some(json!({
                "from": "nango",
                "type": "async_action",
                "connectionId": event.connection_id,
                "providerConfigKey": text("provider"),
                "payload": { "id": id, "statusUrl": format!("/action/{id}") },
            }))
        }
        _ => None,
    }
}

/// The wait after the `attempt`th failed attempt.
fn backoff(config: &WebhookConfig, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    (config.first_backoff * 2u32.pow(doublings)).min(Duration::from_secs(3600))
}

impl Platform {
    /// Removes events (and their delivery log) older than 7 days.
    pub(crate) async fn prune_events(&self) {
        let before = terapi_host::limits::unix_ms().saturating_sub(KEEP_EVENTS.as_millis() as u64);
        match self.store.prune_events(before).await {
            Ok(n) if n > 0 => tracing::info!("webhooks: {n} events older than 7 days removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!("webhooks: old events could not be removed: {e}"),
        }
    }

    /// Delivers the store's pending events to `config.url` until `stop` is
    /// cancelled, sharing the work with every other deliverer on the store.
    /// On stop, sends in flight are abandoned and their claims given back
    /// at once: they are in the store, so another process (or the next
    /// start) sends them.
    pub async fn deliver_events(self: Arc<Self>, config: WebhookConfig, stop: CancellationToken) {
        let client = match reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                tracing::error!("webhooks are off: no HTTP client ({e})");
                return;
            }
        };
        let owner = format!("{}:events", self.owner);
        let mut pruned_at: Option<Instant> = None;
        let mut idle = Duration::from_millis(100);
        while !stop.is_cancelled() {
            if pruned_at.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
                self.prune_events().await;
                pruned_at = Some(Instant::now());
            }
            let claimed = match self.store.claim_events(&owner, CLAIM_TTL, BATCH).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    // The store is away (restarting, failing over): the
                    // events wait in it.
                    tracing::warn!("webhooks: events could not be read: {e}; trying again");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(idle) => {}
                }
                idle = (idle * 2).min(Duration::from_secs(1));
                continue;
            }
            idle = Duration::from_millis(100);
            let mut sends = tokio::task::JoinSet::new();
            for event in claimed {
                let (platform, client, config, owner) = (self.clone(), client.clone(), config.clone(), owner.clone());
                sends.spawn(async move { platform.deliver_one(&client, &config, &owner, event).await });
            }
            tokio::select! {
                _ = stop.cancelled() => {
                    sends.abort_all();
                    break;
                }
                _ = async { while sends.join_next().await.is_some() {} } => {}
            }
        }
        if let Err(e) = self.store.release_events(&owner).await {
            tracing::warn!("webhooks: claims could not be given back ({e}); they lapse in a minute");
        }
    }

    async fn deliver_one(&self, client: &reqwest::Client, config: &WebhookConfig, owner: &str, event: EventRecord) {
        let started = Instant::now();
        let mut delivery = DeliveryRecord {
            event_id: event.id.clone(),
            attempt: event.attempts,
            at_ms: terapi_host::limits::unix_ms(),
            owner: owner.to_string(),
            url: config.url.to_string(),
            status_code: None,
            error: None,
            duration_ms: 0,
        };
        let next = match render(&event, config.always_send) {
            None => DeliveryNext::Skipped,
            Some(body) => {
                let body = body.to_string().into_bytes();
                let key = config.signing_key.expose();
                let sent = client
                    .post(config.url.clone())
                    .header("content-type", "application/json")
                    .header("x-nango-hmac-sha256", sign(key, &body))
                    .header("x-nango-signature", legacy_signature(key, &body))
                    .header("x-terapi-event-id", &event.id)
                    .body(body)
                    .send()
                    .await;
                delivery.duration_ms = started.elapsed().as_millis() as u64;
                match sent {
                    Ok(response) => {
                        delivery.status_code = Some(response.status().as_u16());
                        if !response.status().is_success() {
                            delivery.error = Some(format!("answered {}", response.status()));
                        }
                    }
                    // The URL is the operator's, not a secret; reqwest's
                    // text names it and the cause.
                    Err(e) => delivery.error = Some(format!("unreachable: {e}")),
                }
                match &delivery.error {
                    None => DeliveryNext::Delivered,
                    Some(_) if event.attempts >= config.attempts.max(1) => DeliveryNext::GiveUp,
                    Some(_) => DeliveryNext::RetryIn(backoff(config, event.attempts)),
                }
            }
        };
        let outcome = match next {
            DeliveryNext::Delivered => "delivered",
            DeliveryNext::GiveUp => "given_up",
            DeliveryNext::RetryIn(_) => "retry",
            DeliveryNext::Skipped => "skipped",
        };
        terapi_metrics::count(
            "terapi_webhook_deliveries_total",
            "Webhook delivery attempts, by outcome.",
            &[("outcome", outcome)],
            1,
        );
        match next {
            DeliveryNext::GiveUp => tracing::error!(
                "webhook {} given up after {} attempts: {}",
                event.id,
                event.attempts,
                delivery.error.as_deref().unwrap_or_default()
            ),
            DeliveryNext::RetryIn(wait) => tracing::warn!(
                "webhook {} attempt {}: {}; next in {} s",
                event.id,
                event.attempts,
                delivery.error.as_deref().unwrap_or_default(),
                wait.as_secs()
            ),
            _ => {}
        }
        // Recording waits out a store restart: the send happened, and
        // saying so avoids sending it again.
        let recorded = terapi_store::retry_unavailable("webhooks: recording a delivery", CLAIM_TTL, || {
            self.store.record_delivery(&delivery, next)
        })
        .await;
        if let Err(e) = recorded {
            tracing::warn!("webhook {}: the delivery could not be recorded ({e}); it may be sent again", event.id);
        }
    }
}

/// Nango's async action webhook: the action `id` finished; its result is at
/// `statusUrl`.
pub(crate) fn async_action_event(connection_id: &str, provider: &str, id: &str) -> NewEvent {
    NewEvent {
        id: new_event_id(),
        kind: "async_action".into(),
        connection_id: connection_id.into(),
        facts: json!({ "provider": provider, "action_id": id }).to_string(),
    }
}

impl Platform {
    /// Starts `action` of a saved connection in the background (Nango's
    /// `X-Async: true`) and returns its id at once. The outcome is kept in
    /// the store, so any server can answer `GET /action/{id}`, and an
    /// `async_action` event goes out when it ends. An action is never run
    /// twice: one whose process stopped mid-run stays `pending`.
    pub async fn start_action(
        self: &Arc<Self>,
        connection_id: &str,
        action: &str,
        input: String,
    ) -> Result<String, crate::PlatformError> {
        let provider = self.store.connection_summary(connection_id).await?.provider;
        let session = self.session(connection_id).await?;
        let id = format!("act_{}", &new_event_id()[4..]);
        let record = terapi_store::AsyncAction {
            id: id.clone(),
            connection_id: connection_id.to_string(),
            action: action.to_string(),
            status: "pending".into(),
            output: None,
            error: None,
            created_at_ms: terapi_host::limits::unix_ms(),
            finished_at_ms: None,
        };
        self.store.create_async_action(&record).await?;
        let (platform, action, connection) = (self.clone(), action.to_string(), connection_id.to_string());
        let task_id = id.clone();
        tokio::spawn(async move {
            let result = session.run_action(&action, &input).await.map_err(|e| session.redact(&e.to_string()));
            let event = async_action_event(&connection, &provider, &task_id);
            let outcome = match &result {
                Ok(output) => Ok(output.as_str()),
                Err(error) => Err(error.as_str()),
            };
            let recorded = terapi_store::retry_unavailable("recording an async action", CLAIM_TTL * 10, || {
                platform.store.finish_async_action(&task_id, outcome, Some(&event))
            })
            .await;
            if let Err(e) = recorded {
                tracing::error!(
                    "async action {task_id} ({action} of `{connection}`): its result could not be saved: {e}"
                );
            }
        });
        Ok(id)
    }
}
