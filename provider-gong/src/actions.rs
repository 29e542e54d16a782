//! The actions this provider offers. Each checks its JSON input before any
//! request is made, so a bad input costs no call against Gong's daily budget.

use crate::prelude::*;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::gong::{Call, CallsPage, User, UserEnvelope};
use crate::syncs::to_json;
use crate::terapi::provider::types::{Method, ProviderError};
use crate::{api, catalog, schema, time};

pub struct ActionDef {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: &'static str,
    pub output_schema: &'static str,
    /// The OAuth scopes its requests take.
    pub scopes: &'static [&'static str],
}

pub const ACTIONS: &[ActionDef] = &[
    ActionDef {
        name: "get-user",
        description: "Get one Gong user by id (GET /v2/users/{id}).",
        input_schema: schema::GET_USER_INPUT,
        output_schema: schema::USER,
        scopes: &["api:users:read"],
    },
    ActionDef {
        name: "list-calls",
        description: "List calls in a date window, one page at a time (GET /v2/calls).",
        input_schema: schema::LIST_CALLS_INPUT,
        output_schema: schema::LIST_CALLS_OUTPUT,
        scopes: &["api:calls:read:basic"],
    },
    ActionDef {
        name: "get-call-media",
        description: "Download links of a call's recording: audio and video URLs, valid for hours, not forever \
                      (POST /v2/calls/extensive with media).",
        input_schema: schema::GET_CALL_MEDIA_INPUT,
        output_schema: schema::CALL_MEDIA,
        scopes: &["api:calls:read:extensive", "api:calls:read:media-url"],
    },
];

pub fn run(name: &str, input: &str) -> Result<String, ProviderError> {
    match name {
        "get-user" => get_user(parse_input(name, input)?),
        "get-call-media" => get_call_media(parse_input(name, input)?),
        "list-calls" => list_calls(parse_input(name, input)?),
        other => match catalog::find(other) {
            Some(endpoint) => catalog::run(endpoint, input),
            None => Err(ProviderError::Unknown(format!(
                "no action named `{other}`; `action list` shows the {} this provider offers",
                ACTIONS.len() + catalog::ENDPOINTS.len()
            ))),
        },
    }
}

pub fn parse_input<T: DeserializeOwned>(action: &str, input: &str) -> Result<T, ProviderError> {
    // An empty input means "no arguments", which is `{}`.
    let input = if input.trim().is_empty() { "{}" } else { input };
    serde_json::from_str(input)
        .map_err(|e| ProviderError::InvalidInput(format!("input of `{action}` is invalid: {}", without_values(&e))))
}

/// serde's message with any quoted value replaced by `"…"`: "invalid type:
/// string \"jane@example.com\", expected u32" would echo personal data into
/// logs and audit entries. Field names stay: serde puts them in backticks.
pub fn without_values(error: &serde_json::Error) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in error.to_string().chars() {
        match (c, quoted) {
            ('"', false) => {
                out.push_str("\"…");
                quoted = true;
            }
            ('"', true) => {
                out.push('"');
                quoted = false;
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetUserInput {
    pub id: String,
}

fn get_user(input: GetUserInput) -> Result<String, ProviderError> {
    check_numeric_id("id", &input.id)?;
    let path = format!("/v2/users/{}", input.id);
    let answer = api::send(Method::Get, &path, &[], None)?;
    if answer.status == 404 {
        return Err(ProviderError::NotFound(format!("no Gong user has id {}", input.id)));
    }
    let envelope: UserEnvelope = api::decode_success(&path, answer)?;
    to_json(&User::from(envelope.user))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetCallMediaInput {
    pub id: String,
}

/// Gong hands out media only as short-lived links inside the extensive
/// call data; the host never streams the recording itself.
fn get_call_media(input: GetCallMediaInput) -> Result<String, ProviderError> {
    check_numeric_id("id", &input.id)?;
    let path = "/v2/calls/extensive";
    let body = serde_json::json!({
        "filter": { "callIds": [input.id] },
        "contentSelector": { "exposedFields": { "media": true } }
    });
    let bytes = serde_json::to_vec(&body).map_err(|e| ProviderError::BadResponse(e.to_string()))?;
    let answer = api::send_with(Method::Post, path, &[], Some(bytes), true)?;
    if answer.status == 404 {
        return Err(ProviderError::NotFound(format!("no Gong call has id {}", input.id)));
    }
    let page: serde_json::Value = api::decode_success(path, answer)?;
    let call =
        page["calls"].get(0).ok_or_else(|| ProviderError::NotFound(format!("no Gong call has id {}", input.id)))?;
    let url = |kind: &str| call["media"][kind].as_str().map(str::to_string);
    let (audio, video) = (url("audioUrl"), url("videoUrl"));
    if audio.is_none() && video.is_none() {
        return Err(ProviderError::NotFound(format!(
            "call {} has no recording Gong can hand out (not recorded, or still processing)",
            input.id
        )));
    }
    to_json(&serde_json::json!({ "callId": input.id, "audioUrl": audio, "videoUrl": video }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListCallsInput {
    pub from_date_time: Option<String>,
    pub to_date_time: Option<String>,
    pub workspace_id: Option<String>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListCallsOutput {
    calls: Vec<Call>,
    total_records: Option<u64>,
    next_cursor: Option<String>,
}

pub fn check_list_calls(input: &ListCallsInput) -> Result<(), ProviderError> {
    if let Some(t) = &input.from_date_time {
        check_rfc3339("fromDateTime", t)?;
    }
    if let Some(t) = &input.to_date_time {
        check_rfc3339("toDateTime", t)?;
    }
    if let Some(id) = &input.workspace_id {
        check_numeric_id("workspaceId", id)?;
    }
    Ok(())
}

fn list_calls(input: ListCallsInput) -> Result<String, ProviderError> {
    check_list_calls(&input)?;
    let query: Vec<(&str, &str)> = [
        ("fromDateTime", &input.from_date_time),
        ("toDateTime", &input.to_date_time),
        ("workspaceId", &input.workspace_id),
        ("cursor", &input.cursor),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    .collect();
    let answer = api::send(Method::Get, "/v2/calls", &query, None)?;
    // Gong answers 404 "No calls found corresponding to the provided filters"
    // for an empty window: that is an empty list, not an error.
    if answer.status == 404 {
        return to_json(&ListCallsOutput { calls: vec![], total_records: Some(0), next_cursor: None });
    }
    let page: CallsPage = api::decode_success("/v2/calls", answer)?;
    to_json(&ListCallsOutput {
        next_cursor: page.records.next_cursor().map(str::to_string),
        total_records: page.records.total_records,
        calls: page.calls.into_iter().map(Call::from).collect(),
    })
}

fn check_numeric_id(field: &str, id: &str) -> Result<(), ProviderError> {
    if !catalog::is_id(id) {
        return Err(ProviderError::InvalidInput(format!("`{field}` must be a Gong id (1 to 20 digits)")));
    }
    Ok(())
}

/// RFC 3339 check with an error naming the field.
pub fn check_rfc3339(field: &str, text: &str) -> Result<(), ProviderError> {
    if time::is_rfc3339(text) {
        Ok(())
    } else {
        Err(ProviderError::InvalidInput(format!(
            "`{field}` must be an RFC 3339 date-time such as 2024-05-01T10:00:00Z"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_names_the_field() {
        let err = parse_input::<GetUserInput>("get-user", r#"{"idd":"1"}"#).unwrap_err();
        assert!(matches!(&err, ProviderError::InvalidInput(m) if m.contains("idd")), "{err:?}");
        let input: ListCallsInput = parse_input("list-calls", r#"{"fromDateTime":"yesterday"}"#).unwrap();
        let err = check_list_calls(&input).unwrap_err();
        assert!(matches!(&err, ProviderError::InvalidInput(m) if m.contains("fromDateTime")), "{err:?}");
        assert!(check_numeric_id("id", "12a").is_err());
        assert!(check_numeric_id("id", "123").is_ok());
    }
}
