//! The operator dashboard: one server-rendered page (no script, no build
//! step) showing what the store knows: connections with their end users
//! and health, syncs with state, last run, next due and last error, run
//! history, webhook deliveries, tool policy and the tool-call audit.
//!
//! An operator signs in with one of the app's secret keys. The browser
//! never keeps the key: it gets a cookie naming the key's public id and an
//! expiry, signed (HMAC-SHA256) with the key's hash, which only the store
//! holds. Every server on the store can check it, and revoking the key
//! (`terapi key revoke`) ends its sessions at once. Scripts may send
//! `Authorization: Bearer <secret key>` instead.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use terapi_store::time::rfc3339_ms;
use terapi_store::{ConnectionSummary, SyncState};

use crate::ServeState;
use crate::auth::{hex, sha256_hex};

const COOKIE: &str = "terapi_operator";
/// How long a sign-in lasts.
const SESSION_SECS: u64 = 12 * 3600;
/// The page shows this many connections (their syncs, tools) at most.
const MAX_CONNECTIONS: usize = 500;
/// And this many syncs.
const MAX_SYNCS: usize = 1_000;

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    secret_key: String,
}

pub async fn root() -> Redirect {
    Redirect::to("/dashboard")
}

pub async fn login_page() -> Response {
    page(StatusCode::OK, "Sign in", &login_body(None))
}

pub async fn login(State(state): State<Arc<ServeState>>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    // A browser says where a form was posted from: only this server's own
    // page may sign an operator in (no login CSRF from another site).
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && !same_origin(&state, &headers, origin)
    {
        return page(
            StatusCode::FORBIDDEN,
            "Sign in",
            &login_body(Some("This sign-in form was posted from another site; open the dashboard here and sign in.")),
        );
    }
    let key = form.secret_key.trim();
    let sha256 = sha256_hex(key);
    match state.platform.store().api_key_exists(&sha256).await {
        Ok(true) => {}
        // Never echo what was typed: it may be a real secret of elsewhere.
        Ok(false) => {
            return page(
                StatusCode::UNAUTHORIZED,
                "Sign in",
                &login_body(Some(
                    "That secret key is not valid here (revoked, or never made on this store). \
                     `terapi key list` shows the keys; `terapi key create` makes one.",
                )),
            );
        }
        Err(e) => return unavailable(&e.to_string()),
    }
    let id = terapi_store::api_key_id(&sha256);
    let expires = terapi_store::unix_now() + SESSION_SECS;
    let cookie = format!(
        "{COOKIE}={id}.{expires}.{}; Path=/; Max-Age={SESSION_SECS}; HttpOnly; SameSite=Strict{}",
        signature(&session_secret(&state), &sha256, &id, expires),
        if state.config.public_url.scheme() == "https" { "; Secure" } else { "" }
    );
    let mut response = Redirect::to("/dashboard").into_response();
    // 303: the browser follows with a GET, and a reload does not post again.
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Whether `origin` is this server: its public URL's origin, or the origin
/// of the host the request was sent to.
fn same_origin(state: &ServeState, headers: &HeaderMap, origin: &str) -> bool {
    let origin = origin.trim_end_matches('/');
    if state.config.public_url.origin().ascii_serialization() == origin {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    !host.is_empty() && [format!("http://{host}"), format!("https://{host}")].iter().any(|o| o == origin)
}

pub async fn logout() -> Response {
    let mut response = Redirect::to("/dashboard/login").into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("terapi_operator=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"),
    );
    response
}

/// The MAC of a session of key `id` until `expires`: keyed by a secret
/// derived from the master key (never in the database, so a copy of it
/// cannot mint a session), over the key's hash too (so a revoked key's
/// sessions end with it).
fn session_mac(secret: &[u8; 32], key_sha256: &str, id: &str, expires: u64) -> Hmac<sha2::Sha256> {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(format!("terapi-dashboard-session\n{id}\n{expires}\n{key_sha256}").as_bytes());
    mac
}

fn signature(secret: &[u8; 32], key_sha256: &str, id: &str, expires: u64) -> String {
    hex(&session_mac(secret, key_sha256, id, expires).finalize().into_bytes())
}

/// The secret sessions are signed with (see `session_mac`).
fn session_secret(state: &ServeState) -> [u8; 32] {
    state.platform.store().derived_secret("terapi-dashboard-session")
}

enum Operator {
    SignedIn,
    Anonymous,
}

async fn operator(state: &ServeState, headers: &HeaderMap) -> Result<Operator, terapi_store::StoreError> {
    let store = state.platform.store();
    if let Some(key) =
        headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(crate::auth::bearer_token)
    {
        return Ok(if store.api_key_exists(&sha256_hex(key.trim())).await? {
            Operator::SignedIn
        } else {
            Operator::Anonymous
        });
    }
    let Some(value) = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE).and_then(|c| c.strip_prefix('=')))
    else {
        return Ok(Operator::Anonymous);
    };
    let mut parts = value.splitn(3, '.');
    let (Some(id), Some(expires), Some(given)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(Operator::Anonymous);
    };
    let Ok(expires) = expires.parse::<u64>() else { return Ok(Operator::Anonymous) };
    // A session lasts SESSION_SECS from sign-in: a cookie claiming more was
    // not made here.
    let now = terapi_store::unix_now();
    if expires <= now || expires > now + SESSION_SECS || id.len() != 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Operator::Anonymous);
    }
    let Some(sha256) = store.api_key_sha256(id).await? else { return Ok(Operator::Anonymous) };
    let Some(given) = unhex(given) else { return Ok(Operator::Anonymous) };
    // Constant-time comparison.
    let valid = session_mac(&session_secret(state), &sha256, id, expires).verify_slice(&given).is_ok();
    Ok(if valid { Operator::SignedIn } else { Operator::Anonymous })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn unavailable(reason: &str) -> Response {
    tracing::warn!("dashboard: the store is not answering: {reason}");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        "<main><h1>The store is not answering</h1><p>The dashboard reads everything from the store, which is \
         away (restarting, or unreachable). Reload in a moment; <code>/health/ready</code> says when it is back.</p></main>",
    )
}

pub async fn dashboard(State(state): State<Arc<ServeState>>, headers: HeaderMap) -> Response {
    match operator(&state, &headers).await {
        Ok(Operator::SignedIn) => {}
        Ok(Operator::Anonymous) => {
            let mut response = Redirect::to("/dashboard/login").into_response();
            *response.status_mut() = StatusCode::SEE_OTHER;
            return response;
        }
        Err(e) => return unavailable(&e.to_string()),
    }
    match overview(&state).await {
        Ok(body) => page(StatusCode::OK, "Dashboard", &body),
        Err(e) => unavailable(&e.to_string()),
    }
}

/// Everything on the page, read from the store.
async fn overview(state: &ServeState) -> Result<String, terapi_platform::PlatformError> {
    let platform = &state.platform;
    let store = platform.store();
    let now_ms = terapi_host::limits::unix_ms();
    let mut connections = store.connections().await?;
    let total_connections = connections.len();
    connections.truncate(MAX_CONNECTIONS);
    let mut syncs: Vec<SyncState> = Vec::new();
    let mut failing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for connection in &connections {
        for sync in store.sync_states(&connection.id).await? {
            if sync.status == "failed" {
                failing.entry(connection.id.clone()).or_default().push(sync.sync.clone());
            }
            syncs.push(sync);
        }
    }
    let runs = platform.recent_runs(None, 50).await?;
    let queue = store.sync_queue().await?;
    let events = store.events(200).await?;
    let deliveries = store.deliveries(None, 30).await?;
    let audit = store.audit_entries(30).await?;

    let mut html = String::with_capacity(32 * 1024);
    let _ = write!(
        html,
        r##"<header><div class="bar"><strong>terapi</strong> <span class="muted">operator dashboard</span>
<nav><a href="#connections">Connections</a> <a href="#syncs">Syncs</a> <a href="#runs">Runs</a> <a href="#webhooks">Webhooks</a> <a href="#tools">Tools</a></nav>
<form method="post" action="/dashboard/logout"><button type="submit">Sign out</button></form></div></header><main>"##
    );
    let failed_syncs = syncs.iter().filter(|s| s.status == "failed").count();
    let runs_today = runs.iter().filter(|r| now_ms.saturating_sub(r.started_at_ms) < 86_400_000).count();
    let failed_deliveries = events.iter().filter(|e| e.status == "failed").count();
    let _ = write!(
        html,
        r#"<section class="tiles" aria-label="Summary">
<div class="tile"><span class="figure" id="tile-connections">{total_connections}</span> connections</div>
<div class="tile{}"><span class="figure" id="tile-failing">{failed_syncs}</span> syncs failing</div>
<div class="tile"><span class="figure" id="tile-queue">{}</span> waiting, {} running<br><span class="muted">lag {}</span></div>
<div class="tile"><span class="figure">{runs_today}</span> runs in 24 h</div>
<div class="tile{}"><span class="figure">{failed_deliveries}</span> webhook events given up</div>
</section>"#,
        if failed_syncs > 0 { " bad" } else { "" },
        queue.waiting,
        queue.running,
        duration(queue.lag_ms),
        if failed_deliveries > 0 { " bad" } else { "" },
    );

    // Connections.
    html.push_str(r#"<section id="connections"><h2>Connections</h2>"#);
    if total_connections > connections.len() {
        let _ = write!(html, "<p class=muted>The first {} of {total_connections}.</p>", connections.len());
    }
    if connections.is_empty() {
        html.push_str(
            "<p class=empty>No connections yet. Send an end user a Connect link (<code>POST /connect/sessions</code>) \
             or save one with <code>terapi connection create</code>.</p>",
        );
    } else {
        table_head(&mut html, "connections-table", &["Connection", "Provider", "End user", "Health", "Created"]);
        for connection in &connections {
            let health = match failing.get(&connection.id) {
                Some(names) => format!(r#"<span class="bad">failing: {}</span>"#, esc(&names.join(", "))),
                None => match connection.verified_at {
                    Some(at) => format!(r#"<span class="ok">ok</span> · verified {}"#, ago(now_ms, at * 1000)),
                    None => "<span class=muted>never verified</span>".into(),
                },
            };
            row(
                &mut html,
                &[
                    ("Connection", format!("<code>{}</code>", esc(&connection.id))),
                    ("Provider", esc(&connection.provider)),
                    ("End user", end_user(connection)),
                    ("Health", health),
                    ("Created", ago(now_ms, connection.created_at * 1000)),
                ],
            );
        }
        html.push_str("</tbody></table></div>");
    }
    html.push_str("</section>");

    // Syncs: what needs a look first.
    html.push_str(r#"<section id="syncs"><h2>Syncs</h2>"#);
    let rank = |status: &str| match status {
        "failed" => 0,
        "running" => 1,
        "interrupted" | "lost" => 2,
        _ => 3,
    };
    syncs.sort_by(|a, b| {
        rank(&a.status)
            .cmp(&rank(&b.status))
            .then_with(|| (&a.connection_id, &a.sync).cmp(&(&b.connection_id, &b.sync)))
    });
    let all_syncs = syncs.len();
    if all_syncs > MAX_SYNCS {
        let _ = write!(html, "<p class=muted>Failing and running first; the first {MAX_SYNCS} of {all_syncs}.</p>");
        syncs.truncate(MAX_SYNCS);
    }
    if syncs.is_empty() {
        html.push_str("<p class=empty>No sync has run or been scheduled yet.</p>");
    } else {
        table_head(
            &mut html,
            "syncs-table",
            &["Connection", "Sync", "State", "Last run", "Next due", "Records", "Last error"],
        );
        for sync in &syncs {
            let state = if sync.paused { format!("{} · paused", sync.status) } else { sync.status.clone() };
            let class = match sync.status.as_str() {
                "failed" => "bad",
                "done" => "ok",
                _ => "",
            };
            let next = match (sync.paused, sync.due_at_ms) {
                (true, _) => "paused".into(),
                (false, Some(due)) if due <= now_ms => "now".into(),
                (false, Some(due)) => {
                    format!(r#"<time title="{}">in {}</time>"#, rfc3339_ms(due), duration(due - now_ms))
                }
                (false, None) => "<span class=muted>when asked</span>".into(),
            };
            let last = sync
                .last_finished_at
                .or(sync.last_started_at)
                .map_or_else(|| "<span class=muted>never</span>".into(), |at| ago(now_ms, at * 1000));
            row(
                &mut html,
                &[
                    ("Connection", format!("<code>{}</code>", esc(&sync.connection_id))),
                    ("Sync", format!("{} <span class=muted>({})</span>", esc(&sync.sync), esc(&sync.model))),
                    ("State", format!(r#"<span class="{class}">{}</span>"#, esc(&state))),
                    ("Last run", last),
                    ("Next due", next),
                    ("Records", sync.records.to_string()),
                    (
                        "Last error",
                        sync.last_error.as_deref().map_or_else(
                            || "<span class=muted>none</span>".into(),
                            |e| format!(r#"<span class="error">{}</span>"#, esc(e)),
                        ),
                    ),
                ],
            );
        }
        html.push_str("</tbody></table></div>");
    }
    html.push_str("</section>");

    // Runs.
    html.push_str(r#"<section id="runs"><h2>Recent runs</h2>"#);
    if runs.is_empty() {
        html.push_str("<p class=empty>No runs yet.</p>");
    } else {
        table_head(
            &mut html,
            "runs-table",
            &["Started", "Connection", "Sync", "Outcome", "Pages", "Records", "Duration", "Worker"],
        );
        for run in &runs {
            let took = match run.finished_at_ms {
                Some(end) => duration(end.saturating_sub(run.started_at_ms)),
                None => format!("running {}", duration(now_ms.saturating_sub(run.started_at_ms))),
            };
            let class = match run.status.as_str() {
                "failed" | "lost" => "bad",
                "done" => "ok",
                _ => "",
            };
            row(
                &mut html,
                &[
                    ("Started", ago(now_ms, run.started_at_ms)),
                    ("Connection", format!("<code>{}</code>", esc(&run.connection_id))),
                    ("Sync", esc(&run.sync)),
                    ("Outcome", format!(r#"<span class="{class}">{}</span>"#, esc(&run.status))),
                    ("Pages", run.pages.to_string()),
                    ("Records", run.records.to_string()),
                    ("Duration", took),
                    ("Worker", format!("<code>{}</code>", esc(&run.owner))),
                ],
            );
        }
        html.push_str("</tbody></table></div>");
    }
    html.push_str("</section>");

    // Webhooks.
    html.push_str(r#"<section id="webhooks"><h2>Webhook deliveries</h2>"#);
    let pending = events.iter().filter(|e| e.status == "pending").count();
    if state.config.webhooks.is_some() {
        let _ = write!(html, "<p class=muted>{pending} events waiting to be delivered.</p>");
    } else {
        let _ = write!(
            html,
            "<p class=muted>This server sends no webhooks (no <code>--webhook-url</code>); {pending} events wait in \
             the outbox for one that does.</p>"
        );
    }
    if deliveries.is_empty() {
        html.push_str(
            "<p class=empty>No deliveries yet (<code>terapi serve --webhook-url</code> sends change webhooks).</p>",
        );
    } else {
        let kinds: BTreeMap<&str, (&str, &str)> =
            events.iter().map(|e| (e.id.as_str(), (e.kind.as_str(), e.connection_id.as_str()))).collect();
        table_head(&mut html, "deliveries-table", &["At", "Event", "Attempt", "Answer", "Took", "URL"]);
        for delivery in &deliveries {
            let event = match kinds.get(delivery.event_id.as_str()) {
                Some((kind, connection)) => format!("{} <span class=muted>{}</span>", esc(kind), esc(connection)),
                None => format!("<code>{}</code>", esc(&delivery.event_id)),
            };
            let answer = match (delivery.status_code, &delivery.error) {
                (Some(code), _) if (200..300).contains(&code) => format!(r#"<span class="ok">{code}</span>"#),
                (Some(code), _) => format!(r#"<span class="bad">{code}</span>"#),
                (None, Some(error)) => format!(r#"<span class="error">{}</span>"#, esc(error)),
                (None, None) => "<span class=muted>none</span>".into(),
            };
            row(
                &mut html,
                &[
                    ("At", ago(now_ms, delivery.at_ms)),
                    ("Event", event),
                    ("Attempt", delivery.attempt.to_string()),
                    ("Answer", answer),
                    ("Took", format!("{} ms", delivery.duration_ms)),
                    ("URL", format!("<code>{}</code>", esc(&delivery.url))),
                ],
            );
        }
        html.push_str("</tbody></table></div>");
    }
    html.push_str("</section>");

    // Tools.
    html.push_str(r#"<section id="tools"><h2>Tool policy</h2>"#);
    // Connections with the same policy share a row: a fleet of hundreds
    // mostly keeps the default.
    let mut policies: BTreeMap<(String, [String; 3]), Vec<String>> = BTreeMap::new();
    for connection in &connections {
        // A provider no component serves has no tools.
        let Ok(tools) = platform.tools(&connection.id).await else { continue };
        let names = |status: terapi_platform::ToolStatus| {
            let names: Vec<String> =
                tools.tools.iter().filter(|t| t.status == status).map(|t| esc(&t.action.name)).collect();
            match names.len() {
                0 => "<span class=muted>none</span>".to_string(),
                1..=6 => names.join(", "),
                n => format!("<details><summary>{n} tools</summary>{}</details>", names.join(", ")),
            }
        };
        let key = (
            esc(tools.default.as_str()),
            [
                names(terapi_platform::ToolStatus::Approved),
                names(terapi_platform::ToolStatus::Pending),
                names(terapi_platform::ToolStatus::Denied),
            ],
        );
        policies.entry(key).or_default().push(connection.id.clone());
    }
    if policies.is_empty() {
        html.push_str("<p class=empty>No connection has tools.</p>");
    } else {
        table_head(&mut html, "tools-table", &["Connections", "Default", "Approved", "Pending review", "Denied"]);
        for ((default, [approved, pending, denied]), ids) in policies {
            let shown: Vec<String> = ids.iter().take(20).map(|id| format!("<code>{}</code>", esc(id))).collect();
            let more = if ids.len() > 20 { format!(" and {} more", ids.len() - 20) } else { String::new() };
            row(
                &mut html,
                &[
                    ("Connections", format!("{}{more}", shown.join(", "))),
                    ("Default", default),
                    ("Approved", approved),
                    ("Pending review", pending),
                    ("Denied", denied),
                ],
            );
        }
        html.push_str("</tbody></table></div>");
    }
    html.push_str("<h3>Tool calls</h3>");
    if audit.is_empty() {
        html.push_str("<p class=empty>No tool calls yet.</p>");
    } else {
        table_head(&mut html, "audit-table", &["At", "Caller", "Connection", "Tool", "Outcome", "Took"]);
        for entry in &audit {
            let outcome = match &entry.detail {
                Some(detail) => format!("{} <span class=muted>{}</span>", esc(&entry.status), esc(detail)),
                None => esc(&entry.status),
            };
            row(
                &mut html,
                &[
                    ("At", ago(now_ms, entry.at * 1000)),
                    ("Caller", esc(&entry.caller)),
                    ("Connection", format!("<code>{}</code>", esc(&entry.connection_id))),
                    ("Tool", esc(&entry.tool)),
                    ("Outcome", outcome),
                    ("Took", format!("{} ms", entry.duration_ms)),
                ],
            );
        }
        html.push_str("</tbody></table></div>");
    }
    let _ = write!(
        html,
        "</section><footer class=muted>Read from the store at {}. <a href=\"/dashboard\">Refresh</a> · \
         <a href=\"/metrics\">/metrics</a> needs the secret key as a bearer token.</footer></main>",
        rfc3339_ms(now_ms)
    );
    Ok(html)
}

fn end_user(connection: &ConnectionSummary) -> String {
    let Some(user) = connection.end_user.as_ref() else { return "<span class=muted>none</span>".into() };
    let field = |name: &str| user.get(name).and_then(|v| v.as_str()).filter(|v| !v.is_empty());
    let name = field("display_name").or_else(|| field("id")).unwrap_or("unnamed");
    let mut text = esc(name);
    if let Some(email) = field("email") {
        let _ = write!(text, " <span class=muted>{}</span>", esc(email));
    }
    if let Some(org) =
        user.get("organization").and_then(|o| o.get("display_name").or_else(|| o.get("id"))).and_then(|o| o.as_str())
    {
        let _ = write!(text, "<br><span class=muted>{}</span>", esc(org));
    }
    text
}

fn table_head(html: &mut String, id: &str, columns: &[&str]) {
    let _ = write!(html, r#"<div class="wrap"><table id="{id}" class="cards"><thead><tr>"#);
    for column in columns {
        let _ = write!(html, "<th scope=col>{column}</th>");
    }
    html.push_str("</tr></thead><tbody>");
}

/// One row; every cell carries its column's name, which a phone shows
/// beside the value when rows become cards.
fn row(html: &mut String, cells: &[(&str, String)]) {
    html.push_str("<tr>");
    for (label, value) in cells {
        // One child, so a phone's two-column cell keeps the value whole.
        let _ = write!(html, r#"<td data-label="{label}"><span>{value}</span></td>"#);
    }
    html.push_str("</tr>");
}

fn ago(now_ms: u64, at_ms: u64) -> String {
    format!(r#"<time title="{}">{} ago</time>"#, rfc3339_ms(at_ms), duration(now_ms.saturating_sub(at_ms)))
}

fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min", ms / 60_000),
        3_600_000..86_400_000 => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
        _ => format!("{} d", ms / 86_400_000),
    }
}

use crate::html::escape as esc;

fn login_body(error: Option<&str>) -> String {
    let error = error.map(|e| format!(r#"<p id="login-error" class="error" role="alert">{}</p>"#, esc(e)));
    format!(
        r#"<main class="narrow"><h1>terapi operator dashboard</h1>
<p>Sign in with one of this app's secret keys (<code>terapi key create --label operator</code> makes one). The key is checked and forgotten: your browser keeps a signed session for 12 hours, which revoking the key ends.</p>
{}<form method="post" action="/dashboard/login"><label for="secret_key">Secret key</label>
<input id="secret_key" name="secret_key" type="password" autocomplete="current-password" required placeholder="terapi_sk_…">
<button type="submit">Sign in</button></form></main>"#,
        error.unwrap_or_default()
    )
}

const STYLE: &str = include_str!("../assets/dashboard.css");

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>{} · terapi</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // `same-origin`, not `no-referrer`: browsers then send the sign-in
    // form's real `Origin` (with `no-referrer` Chromium sends `null`), and
    // still tell no other site where the operator came from.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_store_is_escaped_and_durations_read_well() {
        assert_eq!(esc(r#"<script>"x"&'y'"#), "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;");
        assert_eq!(duration(999), "999 ms");
        assert_eq!(duration(1_500), "1.5 s");
        assert_eq!(duration(125_000), "2 min");
        assert_eq!(duration(3_780_000), "1 h 3 min");
        assert_eq!(unhex("0aff"), Some(vec![0x0a, 0xff]));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn a_session_is_signed_by_the_servers_secret_and_its_key() {
        let a = signature(&[1; 32], &"a".repeat(64), "aaaaaaaaaaaa", 100);
        assert_eq!(a.len(), 64);
        assert_ne!(a, signature(&[2; 32], &"a".repeat(64), "aaaaaaaaaaaa", 100), "another master key");
        assert_ne!(a, signature(&[1; 32], &"b".repeat(64), "aaaaaaaaaaaa", 100), "another API key");
        assert_ne!(a, signature(&[1; 32], &"a".repeat(64), "aaaaaaaaaaaa", 101), "another expiry");
    }
}
