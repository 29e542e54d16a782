//! Change webhooks: after each sync run, what changed goes to the app's URL
//! in Nango's sync webhook shape, signed `X-Nango-Hmac-Sha256` (HMAC-SHA256
//! of the body under the webhook signing key, as `@nangohq/node`'s
//! `verifyIncomingWebhookRequest` checks), retried with backoff.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use terapi_host::Secret;
use terapi_platform::FinishedRun;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::ServeState;
use crate::api::rfc3339_ms;
use crate::auth::hex;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: url::Url,
    pub signing_key: Secret,
    /// Attempts per delivery (the first and its retries).
    pub attempts: u32,
    /// The wait before the first retry; doubled each time.
    pub first_backoff: Duration,
    /// Send even when a run changed nothing (Nango's "always send").
    pub always_send: bool,
}

pub fn sign(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// Turns finished runs into webhooks until every run sender is gone.
pub async fn dispatch(state: Arc<ServeState>, mut runs: UnboundedReceiver<FinishedRun>) {
    let Some(config) = state.config.webhooks.clone() else {
        while runs.recv().await.is_some() {}
        return;
    };
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("webhooks are off: no HTTP client ({e})");
            return;
        }
    };
    let mut deliveries = tokio::task::JoinSet::new();
    while let Some(run) = runs.recv().await {
        let Some(body) = body_for(&state, &config, &run).await else { continue };
        deliveries.spawn(deliver(client.clone(), config.clone(), body));
        while deliveries.try_join_next().is_some() {}
    }
    while deliveries.join_next().await.is_some() {}
}

async fn body_for(state: &ServeState, config: &WebhookConfig, run: &FinishedRun) -> Option<Vec<u8>> {
    let base = json!({
        "from": "nango",
        "type": "sync",
        "connectionId": run.connection_id,
        "providerConfigKey": run.provider,
        "syncName": run.sync,
        "syncVariant": "base",
        "model": run.model,
        "syncType": if run.resumed { "INCREMENTAL" } else { "INITIAL" },
    });
    let mut body = base;
    let object = body.as_object_mut()?;
    match &run.error {
        Some(error) => {
            object.insert("success".into(), false.into());
            object.insert("error".into(), json!({ "type": "script_error", "description": error }));
            object.insert("startedAt".into(), rfc3339_ms(run.started_at_ms).into());
            object.insert("failedAt".into(), rfc3339_ms(run.finished_at_ms).into());
        }
        None => {
            let changes = match state
                .platform
                .store()
                .record_changes(&run.connection_id, &run.model, run.started_at_ms / 1000)
                .await
            {
                Ok(changes) => changes,
                Err(e) => {
                    tracing::warn!("webhook for `{}` of `{}` not sent: {e}", run.sync, run.connection_id);
                    return None;
                }
            };
            if changes.added + changes.updated + changes.deleted == 0 && !config.always_send {
                return None;
            }
            let since = rfc3339_ms(run.started_at_ms);
            object.insert("success".into(), true.into());
            object.insert("modifiedAfter".into(), Value::String(since.clone()));
            object.insert("queryTimeStamp".into(), Value::String(since));
            object.insert("responseResults".into(), json!(changes));
        }
    }
    serde_json::to_vec(&body).ok()
}

async fn deliver(client: reqwest::Client, config: WebhookConfig, body: Vec<u8>) {
    let signature = sign(config.signing_key.expose(), &body);
    let mut backoff = config.first_backoff;
    for attempt in 1..=config.attempts.max(1) {
        let sent = client
            .post(config.url.clone())
            .header("content-type", "application/json")
            .header("x-nango-hmac-sha256", &signature)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => tracing::warn!("webhook attempt {attempt}: {} answered {}", config.url, response.status()),
            Err(e) => tracing::warn!("webhook attempt {attempt}: {} unreachable: {e}", config.url),
        }
        if attempt < config.attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(300));
        }
    }
    tracing::error!("webhook to {} given up after {} attempts", config.url, config.attempts);
}
