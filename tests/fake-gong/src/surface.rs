//! The rest of Gong's API surface the component uses: POST lists with the
//! cursor in the body beside the resent filter, settings lists with a
//! top-level cursor, plan-gated endpoints (404 when `plan_gated`), and
//! endpoints that echo the request (so actions can be checked end to end).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{CursorAt, Shared, fixtures, gong_error, lock, page_at, request_id};

fn time_of(value: &Value) -> Option<i64> {
    value.as_str().and_then(fixtures::parse_rfc3339)
}

/// Calls matching Gong's `filter` (date window and/or ids).
fn matching_calls(shared: &Shared, filter: &Value) -> Result<Vec<Value>, Response> {
    let bound = |name: &str| match filter.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => time_of(v)
            .map(Some)
            .ok_or_else(|| gong_error(shared, StatusCode::BAD_REQUEST, &format!("{name} is invalid"))),
    };
    let (from, to) = (bound("fromDateTime")?, bound("toDateTime")?);
    let ids: Option<Vec<&str>> =
        filter.get("callIds").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect());
    Ok(lock(&shared.calls)
        .iter()
        .filter(|c| {
            let started = time_of(&c["started"]).unwrap_or(i64::MIN);
            from.is_none_or(|f| started >= f)
                && to.is_none_or(|t| started < t)
                && ids.as_ref().is_none_or(|ids| ids.contains(&c["id"].as_str().unwrap_or_default()))
        })
        .cloned()
        .collect())
}

fn body_json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// A POST list of calls (body `filter` + `cursor`), each call shown as `item`
/// shows it, under the key `list`; no match is Gong's "No calls found" 404.
fn calls_page(shared: &Shared, body: &str, list: &str, item: impl Fn(&Value) -> Value) -> Response {
    let request = body_json(body);
    let calls = match matching_calls(shared, &request["filter"]) {
        Ok(calls) => calls,
        Err(response) => return response,
    };
    if calls.is_empty() {
        return gong_error(shared, StatusCode::NOT_FOUND, "No calls found corresponding to the provided filters");
    }
    let items: Vec<String> = calls.iter().map(|c| item(c).to_string()).collect();
    page_at(shared, list, &items, request["cursor"].as_str(), &request["filter"].to_string(), CursorAt::Records)
}

pub(crate) async fn calls_extensive(State(shared): State<Arc<Shared>>, body: String) -> Response {
    // Media links only when asked for, as Gong does (`exposedFields.media`).
    let media = body_json(&body)["contentSelector"]["exposedFields"]["media"] == json!(true);
    calls_page(&shared, &body, "calls", |call| {
        let mut extensive = fixtures::extensive_call(call);
        if media {
            let id = call["id"].as_str().unwrap_or_default();
            extensive["media"] = json!({
                "audioUrl": format!("https://media.gong.example/{id}/audio.mp3?expires=8h"),
                "videoUrl": format!("https://media.gong.example/{id}/video.mp4?expires=8h")
            });
        }
        extensive
    })
}

pub(crate) async fn transcripts(State(shared): State<Arc<Shared>>, body: String) -> Response {
    calls_page(&shared, &body, "callTranscripts", fixtures::transcript)
}

pub(crate) async fn answered_scorecards(State(shared): State<Arc<Shared>>, body: String) -> Response {
    let request = body_json(&body);
    let day = |name: &str| request["filter"][name].as_str().and_then(terapi_time::parse_date);
    // As Gong's reference has them: the bounds are days in the company's
    // time zone, the first included and the last excluded ("This value is
    // exclusive"). A time's day is taken where the company is.
    let offset = i64::from(shared.config.company_utc_offset_minutes) * 60;
    let within = |t: i64, from: Option<i64>, to: Option<i64>| {
        let local_day = (t + offset).div_euclid(86_400) * 86_400;
        from.is_none_or(|f| local_day >= f) && to.is_none_or(|end| local_day < end)
    };
    let (call_from, call_to) = (day("callFromDate"), day("callToDate"));
    let (review_from, review_to) = (day("reviewFromDate"), day("reviewToDate"));
    let items: Vec<String> = lock(&shared.calls)
        .iter()
        .map(fixtures::answered_scorecard)
        .filter(|a| {
            let started = time_of(&a["callStartTime"]).unwrap_or(i64::MIN);
            let reviewed = time_of(&a["reviewTime"]).unwrap_or(i64::MIN);
            within(started, call_from, call_to) && within(reviewed, review_from, review_to)
        })
        .map(|a| a.to_string())
        .collect();
    page_at(
        &shared,
        "answeredScorecards",
        &items,
        request["cursor"].as_str(),
        &request["filter"].to_string(),
        CursorAt::Records,
    )
}

/// A GET list of fixed items: `list` is both the path's item key and the fixture.
pub(crate) async fn settings_list(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let path = uri.path();
    let (key, cursor_at) = match path {
        // As Gong's OpenAPI document has them: settings lists are one answer.
        "/v2/settings/scorecards" => ("scorecards", CursorAt::Unpaged),
        "/v2/settings/trackers" => ("keywordTrackers", CursorAt::Unpaged),
        "/v2/workspaces" => ("workspaces", CursorAt::Unpaged),
        "/v2/call-outcomes" => ("outcomes", CursorAt::TopLevel),
        "/v2/all-permission-profiles" => {
            if shared.config.plan_gated {
                return gong_error(&shared, StatusCode::NOT_FOUND, "Not found");
            }
            ("profiles", CursorAt::Records)
        }
        _ => return gong_error(&shared, StatusCode::NOT_FOUND, "Not found"),
    };
    let items = fixtures::settings(key, shared.config.extras, q.get("workspaceId").map(String::as_str));
    let items: Vec<String> = items.iter().map(Value::to_string).collect();
    let filter = q.get("workspaceId").cloned().unwrap_or_default();
    page_at(&shared, key, &items, q.get("cursor").map(String::as_str), &filter, cursor_at)
}

/// GET /v2/flows: Gong lists flows per owner and requires `flowOwnerEmail`.
/// An owner sees the company's flows and their own personal ones.
pub(crate) async fn flows(State(shared): State<Arc<Shared>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let Some(owner) = q.get("flowOwnerEmail").filter(|e| !e.is_empty()) else {
        return gong_error(&shared, StatusCode::BAD_REQUEST, "flowOwnerEmail is required");
    };
    let Some(index) = shared.config.users.iter().position(|u| u["emailAddress"] == json!(owner)) else {
        return gong_error(&shared, StatusCode::NOT_FOUND, &format!("No user found with email {owner}"));
    };
    let mut items = fixtures::settings("flows", shared.config.extras, None);
    items.extend(fixtures::personal_flows(index));
    items.extend(fixtures::shared_flows(index));
    let items: Vec<String> = items.iter().map(Value::to_string).collect();
    page_at(&shared, "flows", &items, q.get("cursor").map(String::as_str), owner, CursorAt::Records)
}

/// Endpoints the actions reach whose answers carry nothing our code reads:
/// the fake answers with what it was asked, so tests can check the request.
/// GET /v2/crm/entities as Gong answers it: the CRM ids come as a JSON
/// array in the body (up to 100); ids in the query get 415, as recorded
/// from Gong. Each id maps to its object, or null when Gong has none.
pub(crate) async fn crm_entities(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
    body: String,
) -> Response {
    if shared.config.plan_gated {
        return gong_error(&shared, StatusCode::NOT_FOUND, "Not found");
    }
    if q.contains_key("objectsCrmIds") {
        return gong_error(&shared, StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content type '' not supported");
    }
    let (Some(_), Some(object_type)) = (q.get("integrationId"), q.get("objectType")) else {
        return gong_error(&shared, StatusCode::BAD_REQUEST, "integrationId and objectType are required");
    };
    let Ok(ids) = serde_json::from_str::<Vec<String>>(&body) else {
        return gong_error(&shared, StatusCode::BAD_REQUEST, "the body must be an array of CRM ids");
    };
    let objects: serde_json::Map<String, Value> = ids
        .iter()
        .take(100)
        .map(|id| {
            // Ids starting with 0 exist in the fake's CRM; others do not.
            let object = id
                .starts_with('0')
                .then(|| json!({ "objectId": id, "objectType": object_type, "name": format!("Object {id}") }));
            (id.clone(), object.unwrap_or(Value::Null))
        })
        .collect();
    axum::Json(json!({ "requestId": request_id(&shared), "crmObjectsMap": objects })).into_response()
}

pub(crate) async fn echo(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
    body: String,
) -> Response {
    let path = uri.path().to_string();
    let gated = ["/v2/crm/", "/v2/library/", "/v2/permission-profile"].iter().any(|p| path.starts_with(p));
    if gated && shared.config.plan_gated {
        return gong_error(&shared, StatusCode::NOT_FOUND, "Not found");
    }
    if path.starts_with("/v2/calls/") && method == Method::GET {
        let id = path.trim_start_matches("/v2/calls/");
        return match lock(&shared.calls).iter().find(|c| c["id"] == json!(id)) {
            Some(call) => axum::Json(json!({ "requestId": request_id(&shared), "call": call })).into_response(),
            None => gong_error(&shared, StatusCode::NOT_FOUND, &format!("Call {id} not found")),
        };
    }
    axum::Json(json!({
        "requestId": request_id(&shared),
        "echo": { "method": method.as_str(), "path": path, "query": q, "body": body_json(&body) }
    }))
    .into_response()
}

/// POST /v2/crm/entities: Gong takes the objects as a multipart/form-data
/// upload whose `dataFile` part holds one JSON object per line (LDJSON),
/// and answers with the request id to poll `/v2/crm/request-status` with.
pub(crate) async fn crm_upload(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
    body: String,
) -> Response {
    if shared.config.plan_gated {
        return gong_error(&shared, StatusCode::NOT_FOUND, "Not found");
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(boundary) = content_type
        .strip_prefix("multipart/form-data")
        .and_then(|rest| rest.split("boundary=").nth(1))
        .map(|b| b.trim_matches('"').to_string())
    else {
        return gong_error(&shared, StatusCode::BAD_REQUEST, "Expected multipart/form-data with a dataFile part");
    };
    for required in ["integrationId", "objectType", "clientRequestId"] {
        if !q.contains_key(required) {
            return gong_error(&shared, StatusCode::BAD_REQUEST, &format!("{required} is required"));
        }
    }
    let delimiter = format!("--{boundary}");
    let data_file = body.split(delimiter.as_str()).find(|part| part.contains("name=\"dataFile\""));
    let Some(content) = data_file.and_then(|part| part.split_once("\r\n\r\n")).map(|(_, content)| content) else {
        return gong_error(&shared, StatusCode::BAD_REQUEST, "No dataFile part");
    };
    let objects: Vec<&str> = content.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if objects.is_empty()
        || objects.iter().any(|line| !line.starts_with('{') || serde_json::from_str::<Value>(line).is_err())
    {
        return gong_error(&shared, StatusCode::BAD_REQUEST, "dataFile must hold one JSON object per line");
    }
    axum::Json(
        json!({ "requestId": request_id(&shared), "clientRequestId": q["clientRequestId"], "objects": objects.len() }),
    )
    .into_response()
}
