//! Gong's endpoints as data: every generic action is a list of typed input
//! fields, each placed in the path, the query or the (possibly nested) body.
//! The same declaration checks the input before any request, builds the
//! request, and produces the input JSON Schema `list-actions` exports, so
//! the three cannot drift apart.

use crate::prelude::*;

use serde_json::{Map, Value, json};

use crate::terapi::provider::types::{Method, ProviderError};
use crate::{api, time};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A Gong id: 1 to 20 digits.
    Id,
    /// RFC 3339, e.g. 2024-05-01T10:00:00Z.
    DateTime,
    /// YYYY-MM-DD.
    Date,
    Email,
    Bool,
    /// A JSON number (Gong's `duration` is a float of seconds).
    Number,
    Ids,
    Texts,
    Object,
    Array,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Replaces `{name}` in the path.
    Path,
    Query,
    /// In the JSON body; `Some(key)` nests it under that key (Gong's `filter`).
    Body(Option<&'static str>),
    /// The request is multipart/form-data with this field's array as a
    /// file part of that name, one JSON object per line (LDJSON), as Gong's
    /// CRM upload takes it.
    LdjsonPart(&'static str),
    /// The whole JSON body is this field's array, even on a GET: Gong's
    /// `GET /v2/crm/entities` takes the CRM ids so (in the query it answers
    /// 415).
    BodyArray,
}

pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub place: Place,
    pub required: bool,
    pub description: &'static str,
}

pub struct Endpoint {
    pub name: &'static str,
    pub description: &'static str,
    pub method: Method,
    pub path: &'static str,
    pub fields: &'static [Field],
    /// Changes nothing at Gong (a GET, or a POST that only reads: Gong's
    /// filters go in POST bodies): safe to retry, and a read-only tool.
    pub reads_only: bool,
    /// Answers 404/401 when the customer's plan lacks the product.
    pub plan_gated: bool,
    /// A 404 means "nothing matched", answered as this empty result.
    pub empty_on_404: Option<&'static str>,
}

const fn f(name: &'static str, kind: Kind, place: Place, required: bool, description: &'static str) -> Field {
    Field { name, kind, place, required, description }
}

use Kind::*;
use Place::*;

const CURSOR_Q: Field = f("cursor", Text, Query, false, "nextCursor of the previous answer (records.cursor)");
const CURSOR_B: Field = f("cursor", Text, Body(None), false, "records.cursor of the previous answer");
const WORKSPACE_Q: Field = f("workspaceId", Id, Query, false, "limit to one workspace");
/// Gong's `MultipleUsersWithDates` filter (no workspace: the stats are
/// per user, and Gong's document has no `workspaceId` there).
const STATS_FILTER: &[Field] = &[
    f("fromDate", Date, Body(Some("filter")), true, "first day, YYYY-MM-DD"),
    f("toDate", Date, Body(Some("filter")), true, "day after the last, YYYY-MM-DD"),
    f("userIds", Ids, Body(Some("filter")), false, "only these users"),
    f("createdFromDateTime", DateTime, Body(Some("filter")), false, "only activity created at or after"),
    f("createdToDateTime", DateTime, Body(Some("filter")), false, "only activity created before"),
    CURSOR_B,
];

const fn read(name: &'static str, description: &'static str, path: &'static str, fields: &'static [Field]) -> Endpoint {
    Endpoint {
        name,
        description,
        method: Method::Get,
        path,
        fields,
        reads_only: true,
        plan_gated: false,
        empty_on_404: None,
    }
}

const fn post_read(
    name: &'static str,
    description: &'static str,
    path: &'static str,
    fields: &'static [Field],
) -> Endpoint {
    Endpoint {
        name,
        description,
        method: Method::Post,
        path,
        fields,
        reads_only: true,
        plan_gated: false,
        empty_on_404: None,
    }
}

const fn write(
    name: &'static str,
    description: &'static str,
    method: Method,
    path: &'static str,
    fields: &'static [Field],
) -> Endpoint {
    Endpoint { name, description, method, path, fields, reads_only: false, plan_gated: false, empty_on_404: None }
}

const fn gated(mut e: Endpoint) -> Endpoint {
    e.plan_gated = true;
    e
}

pub const ENDPOINTS: &[Endpoint] = &[
    read("list-users", "List users, one page at a time (GET /v2/users).", "/v2/users", &[CURSOR_Q]),
    read(
        "get-call",
        "Get one call's basic data (GET /v2/calls/{id}).",
        "/v2/calls/{id}",
        &[f("id", Id, Path, true, "Gong call id")],
    ),
    post_read(
        "get-call-transcripts",
        "Transcripts of calls, by id or date window (POST /v2/calls/transcript).",
        "/v2/calls/transcript",
        &[
            f("callIds", Ids, Body(Some("filter")), false, "these calls"),
            f("fromDateTime", DateTime, Body(Some("filter")), false, "calls started at or after"),
            f("toDateTime", DateTime, Body(Some("filter")), false, "calls started before"),
            CURSOR_B,
        ],
    ),
    post_read(
        "get-extensive-calls",
        "Calls with parties, content and CRM context (deals) (POST /v2/calls/extensive).",
        "/v2/calls/extensive",
        &[
            f("callIds", Ids, Body(Some("filter")), false, "these calls"),
            f("fromDateTime", DateTime, Body(Some("filter")), false, "calls started at or after"),
            f("toDateTime", DateTime, Body(Some("filter")), false, "calls started before"),
            f("contentSelector", Object, Body(None), false, "Gong's contentSelector (exposedFields, context)"),
            CURSOR_B,
        ],
    ),
    write(
        "upload-call",
        "Create a call record to upload media to (POST /v2/calls).",
        Method::Post,
        "/v2/calls",
        &[
            f("clientUniqueId", Text, Body(None), true, "your id for the call (makes retries safe on Gong's side)"),
            f("actualStart", DateTime, Body(None), true, "when the call started"),
            f("title", Text, Body(None), false, "call title"),
            f("parties", Array, Body(None), true, "participants, Gong's party objects"),
            f("direction", Text, Body(None), true, "Inbound, Outbound, Conference or Unknown"),
            f("primaryUser", Id, Body(None), true, "Gong user id of the host"),
            f("duration", Number, Body(None), false, "length in seconds (a number)"),
            f("downloadMediaUrl", Text, Body(None), false, "URL Gong downloads the media from"),
        ],
    ),
    read(
        "list-scorecards",
        "Scorecard definitions (GET /v2/settings/scorecards).",
        "/v2/settings/scorecards",
        &[WORKSPACE_Q],
    ),
    post_read(
        "list-answered-scorecards",
        "Answered scorecards in a date range (POST /v2/stats/activity/scorecards).",
        "/v2/stats/activity/scorecards",
        &[
            f("callFromDate", Date, Body(Some("filter")), false, "calls from this day, YYYY-MM-DD"),
            f("callToDate", Date, Body(Some("filter")), false, "calls before this day"),
            f("reviewFromDate", Date, Body(Some("filter")), false, "reviews from this day"),
            f("reviewToDate", Date, Body(Some("filter")), false, "reviews before this day"),
            f("scorecardIds", Ids, Body(Some("filter")), false, "only these scorecards"),
            CURSOR_B,
        ],
    ),
    read(
        "list-trackers",
        "Keyword tracker definitions (GET /v2/settings/trackers).",
        "/v2/settings/trackers",
        &[WORKSPACE_Q],
    ),
    read("list-workspaces", "Workspaces of the company (GET /v2/workspaces).", "/v2/workspaces", &[]),
    read(
        "list-flows",
        "Engage flows (sequences) of an owner (GET /v2/flows).",
        "/v2/flows",
        &[f("flowOwnerEmail", Email, Query, true, "the flows' owner"), WORKSPACE_Q, CURSOR_Q],
    ),
    post_read(
        "list-flow-prospects",
        "Flows the given CRM prospects are in (POST /v2/flows/prospects).",
        "/v2/flows/prospects",
        &[f("crmProspectsIds", Texts, Body(None), true, "CRM ids of the prospects")],
    ),
    write(
        "assign-flow-prospects",
        "Add CRM prospects to a flow (POST /v2/flows/prospects/assign).",
        Method::Post,
        "/v2/flows/prospects/assign",
        &[
            f("crmProspectsIds", Texts, Body(None), true, "CRM ids of the prospects"),
            f("flowId", Id, Body(None), true, "the flow"),
            f("flowInstanceOwnerEmail", Email, Body(None), true, "who owns the flow instances"),
        ],
    ),
    write(
        "unassign-flow-prospects",
        "Remove a CRM prospect from flows (POST /v2/flows/prospects/unassign-flows-by-crm-id).",
        Method::Post,
        "/v2/flows/prospects/unassign-flows-by-crm-id",
        &[
            f("crmProspectId", Text, Body(None), true, "CRM id of the prospect"),
            f("flowId", Id, Body(None), false, "only this flow"),
        ],
    ),
    gated(read(
        "list-permission-profiles",
        "Permission profiles of a workspace (GET /v2/all-permission-profiles).",
        "/v2/all-permission-profiles",
        &[f("workspaceId", Id, Query, true, "the workspace")],
    )),
    gated(read(
        "list-permission-profile-users",
        "Users of a permission profile (GET /v2/permission-profile/users).",
        "/v2/permission-profile/users",
        &[f("profileId", Id, Query, true, "the permission profile")],
    )),
    gated(read(
        "crm-get-entities",
        "CRM objects (accounts, deals, contacts) Gong holds (GET /v2/crm/entities, the ids in the body; at most 100).",
        "/v2/crm/entities",
        &[
            f("integrationId", Id, Query, true, "the CRM integration"),
            f("objectType", Text, Query, true, "ACCOUNT, CONTACT, DEAL, LEAD or BUSINESS_USER"),
            f("objectsCrmIds", Texts, BodyArray, true, "the objects' CRM ids, at most 100"),
        ],
    )),
    gated(write(
        "crm-upload-entities",
        "Upload CRM objects (POST /v2/crm/entities).",
        Method::Post,
        "/v2/crm/entities",
        &[
            f("integrationId", Id, Query, true, "the CRM integration"),
            f("objectType", Text, Query, true, "ACCOUNT, CONTACT, DEAL, LEAD or BUSINESS_USER"),
            f("clientRequestId", Text, Query, true, "your id for this upload"),
            f("entities", Array, LdjsonPart("dataFile"), true, "the objects, sent as Gong's LDJSON dataFile"),
        ],
    )),
    gated(read(
        "crm-get-entity-schema",
        "Fields of a CRM object type (GET /v2/crm/entity-schema).",
        "/v2/crm/entity-schema",
        &[
            f("integrationId", Id, Query, true, "the CRM integration"),
            f("objectType", Text, Query, true, "object type"),
        ],
    )),
    post_read(
        "stats-activity-aggregate",
        "Activity totals per user (POST /v2/stats/activity/aggregate).",
        "/v2/stats/activity/aggregate",
        STATS_FILTER,
    ),
    post_read(
        "stats-activity-day-by-day",
        "Activity per user per day (POST /v2/stats/activity/day-by-day).",
        "/v2/stats/activity/day-by-day",
        STATS_FILTER,
    ),
    post_read(
        "stats-interaction",
        "Interaction stats per user (POST /v2/stats/interaction).",
        "/v2/stats/interaction",
        STATS_FILTER,
    ),
    gated(read(
        "list-library-folders",
        "Call library folders (GET /v2/library/folders).",
        "/v2/library/folders",
        &[WORKSPACE_Q],
    )),
    read(
        "get-logs",
        "Audit logs of one type in a time window (GET /v2/logs).",
        "/v2/logs",
        &[
            f(
                "logType",
                Text,
                Query,
                true,
                "AccessLog, UserActivityLog, UserCallPlay, ExternallySharedCallAccess, ...",
            ),
            f("fromDateTime", DateTime, Query, true, "from"),
            f("toDateTime", DateTime, Query, false, "to"),
            CURSOR_Q,
        ],
    ),
    read(
        "data-privacy-lookup",
        "Everything Gong holds that mentions an email address (GET /v2/data-privacy/data-for-email-address).",
        "/v2/data-privacy/data-for-email-address",
        &[f("emailAddress", Email, Query, true, "the address")],
    ),
    write(
        "data-privacy-erase",
        "Erase everything Gong holds for an email address (POST /v2/data-privacy/erase-data-for-email-address).",
        Method::Post,
        "/v2/data-privacy/erase-data-for-email-address",
        &[f("emailAddress", Email, Query, true, "the address")],
    ),
    read("list-call-outcomes", "Call outcome definitions (GET /v2/call-outcomes).", "/v2/call-outcomes", &[]),
    gated(read(
        "list-library-folder-content",
        "The calls in a library folder (GET /v2/library/folder-content).",
        "/v2/library/folder-content",
        &[f("folderId", Id, Query, true, "the folder (from list-library-folders)")],
    )),
];

pub fn find(name: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.name == name)
}

/// The input JSON Schema of an endpoint, from its fields.
pub fn input_schema(endpoint: &Endpoint) -> String {
    let mut properties = Map::new();
    for field in endpoint.fields {
        let mut schema = match field.kind {
            Text => json!({"type": "string"}),
            Id => json!({"type": "string", "pattern": "^[0-9]{1,20}$"}),
            DateTime => json!({"type": "string", "format": "date-time"}),
            Date => json!({"type": "string", "format": "date"}),
            Email => json!({"type": "string", "format": "email"}),
            Bool => json!({"type": "boolean"}),
            Number => json!({"type": "number", "minimum": 0}),
            Ids => json!({"type": "array", "items": {"type": "string", "pattern": "^[0-9]{1,20}$"}}),
            Texts => json!({"type": "array", "items": {"type": "string"}}),
            Object => json!({"type": "object"}),
            Array => json!({"type": "array"}),
        };
        schema["description"] = json!(field.description);
        properties.insert(field.name.to_string(), schema);
    }
    let required: Vec<&str> = endpoint.fields.iter().filter(|f| f.required).map(|f| f.name).collect();
    json!({"type": "object", "additionalProperties": false, "required": required, "properties": properties}).to_string()
}

/// A request checked against an endpoint's fields, ready to send.
#[derive(Debug, PartialEq)]
pub struct Built {
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    /// (part name, LDJSON) for a multipart upload instead of a JSON body.
    pub file: Option<(&'static str, String)>,
}

/// Checks `input` (a JSON object) and places each field; every error names
/// the field and is raised before any request.
pub fn build(endpoint: &Endpoint, input: &str) -> Result<Built, ProviderError> {
    let invalid = |m: String| ProviderError::InvalidInput(format!("input of `{}`: {m}", endpoint.name));
    let input = if input.trim().is_empty() { "{}" } else { input };
    let value: Value = serde_json::from_str(input)
        .map_err(|e| invalid(format!("not JSON: {}", crate::actions::without_values(&e))))?;
    let Value::Object(mut given) = value else {
        return Err(invalid("must be a JSON object".into()));
    };
    if let Some(unknown) = given.keys().find(|k| !endpoint.fields.iter().any(|f| f.name == k.as_str())) {
        let known: Vec<&str> = endpoint.fields.iter().map(|f| f.name).collect();
        return Err(invalid(format!("unknown field `{unknown}`; expected one of: {}", known.join(", "))));
    }
    let mut path = endpoint.path.to_string();
    let mut query = Vec::new();
    let mut body = Map::new();
    let mut file = None;
    let mut whole_body = None;
    for field in endpoint.fields {
        let Some(value) = given.remove(field.name).filter(|v| !v.is_null()) else {
            if field.required {
                return Err(invalid(format!("`{}` is required ({})", field.name, field.description)));
            }
            continue;
        };
        check(field, &value).map_err(|m| invalid(format!("`{}` {m}", field.name)))?;
        match field.place {
            Path => path = path.replace(&format!("{{{}}}", field.name), &scalar(&value)),
            Query => query.push((field.name.to_string(), scalar(&value))),
            Body(None) => {
                body.insert(field.name.to_string(), value);
            }
            Body(Some(parent)) => {
                let nested = body.entry(parent).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(nested) = nested {
                    nested.insert(field.name.to_string(), value);
                }
            }
            LdjsonPart(part) => {
                let lines: Vec<String> = value.as_array().into_iter().flatten().map(Value::to_string).collect();
                file = Some((part, lines.join("\n") + "\n"));
            }
            BodyArray => {
                // Gong answers only the first 100 and says nothing of the rest.
                if value.as_array().is_some_and(|ids| ids.len() > 100) {
                    return Err(invalid(format!("`{}` holds at most 100 ids; split the request", field.name)));
                }
                whole_body = Some(value);
            }
        }
    }
    if whole_body.is_some() {
        return Ok(Built { path, query, body: whole_body, file });
    }
    // Gong requires the `filter` object of its POST lists even when no
    // filter field is set (`{"filter": {}}` means everything).
    for field in endpoint.fields {
        if let Body(Some(parent)) = field.place {
            body.entry(parent).or_insert_with(|| Value::Object(Map::new()));
        }
    }
    let has_body = endpoint.method != Method::Get
        && (!body.is_empty() || endpoint.fields.iter().any(|f| matches!(f.place, Body(_))));
    Ok(Built { path, query, body: has_body.then_some(Value::Object(body)), file })
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn check(field: &Field, value: &Value) -> Result<(), String> {
    // Errors say what was wrong, never the value: it may be an email, an
    // id or other personal data, and errors are logged and audited.
    let text = || value.as_str().ok_or_else(|| format!("must be a string, got {}", kind(value)));
    match field.kind {
        Text => text().map(drop),
        Id => {
            text().and_then(|t| is_id(t).then_some(()).ok_or_else(|| "must be a Gong id (1 to 20 digits)".to_string()))
        }
        DateTime => text().and_then(|t| {
            time::is_rfc3339(t)
                .then_some(())
                .ok_or_else(|| "must be an RFC 3339 date-time such as 2024-05-01T10:00:00Z".to_string())
        }),
        Date => {
            text().and_then(|t| time::is_date(t).then_some(()).ok_or_else(|| "must be a date YYYY-MM-DD".to_string()))
        }
        Email => text().and_then(|t| is_email(t).then_some(()).ok_or_else(|| "must be an email address".to_string())),
        Bool => value.is_boolean().then_some(()).ok_or_else(|| format!("must be true or false, got {}", kind(value))),
        Number => match value.as_f64() {
            Some(n) if n >= 0.0 => Ok(()),
            Some(_) => Err("must not be negative".into()),
            None => Err(format!("must be a number, got {}", kind(value))),
        },
        Ids | Texts => {
            let items = value.as_array().ok_or_else(|| format!("must be an array, got {}", kind(value)))?;
            if items.is_empty() {
                return Err("must not be empty".into());
            }
            for item in items {
                let t = item.as_str().ok_or_else(|| format!("must hold strings, got {}", kind(item)))?;
                if field.kind == Ids && !is_id(t) {
                    return Err("must hold Gong ids (1 to 20 digits)".into());
                }
            }
            Ok(())
        }
        Object => value.is_object().then_some(()).ok_or_else(|| format!("must be an object, got {}", kind(value))),
        Array => value.is_array().then_some(()).ok_or_else(|| format!("must be an array, got {}", kind(value))),
    }
}

/// What a JSON value is, for errors that must not quote it.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub fn is_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit())
}

fn is_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !text.chars().any(|c| c.is_whitespace() || c.is_control())
                && !domain.contains('@')
        }
        None => false,
    }
}

/// Runs a catalogued action: Gong's answer is returned as it is, with
/// plan-gated 404s and "nothing matched" 404s given their meaning.
pub fn run(endpoint: &Endpoint, input: &str) -> Result<String, ProviderError> {
    let built = build(endpoint, input)?;
    let (body, content_type) = match (&built.file, &built.body) {
        (Some((part, ldjson)), _) => {
            let (body, content_type) = multipart(part, ldjson);
            (Some(body), content_type)
        }
        (None, Some(body)) => (
            Some(serde_json::to_vec(body).map_err(|e| ProviderError::BadResponse(e.to_string()))?),
            "application/json".to_string(),
        ),
        (None, None) => (None, "application/json".to_string()),
    };
    let query: Vec<(&str, &str)> = built.query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let answer = api::send_typed(endpoint.method, &built.path, &query, body, &content_type, endpoint.reads_only)?;
    if answer.status == 404
        && let Some(empty) = endpoint.empty_on_404
    {
        return Ok(empty.to_string());
    }
    if endpoint.plan_gated && matches!(answer.status, 401 | 403 | 404) {
        return Err(not_available(endpoint.path));
    }
    if !(200..300).contains(&answer.status) {
        return Err(api::error_for_status(&built.path, answer.status, &answer.body));
    }
    // Gong's JSON, unchanged; checked to be JSON so callers can rely on it.
    let text =
        String::from_utf8(answer.body).map_err(|_| ProviderError::BadResponse(format!("{}: not UTF-8", built.path)))?;
    if text.trim().is_empty() {
        return Ok("{}".into());
    }
    serde_json::from_str::<serde::de::IgnoredAny>(&text)
        .map_err(|e| ProviderError::BadResponse(format!("{}: not JSON ({e})", built.path)))?;
    Ok(text)
}

/// A multipart/form-data body with one file part; its content type.
fn multipart(part: &str, content: &str) -> (Vec<u8>, String) {
    // A boundary the content does not contain.
    let mut boundary = String::from("terapi-part-7d1f");
    while content.contains(&boundary) {
        boundary.push('x');
    }
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{part}\"; filename=\"{part}.ldjson\"\r\n\
         Content-Type: application/x-ndjson\r\n\r\n{content}\r\n--{boundary}--\r\n"
    );
    (body.into_bytes(), format!("multipart/form-data; boundary={boundary}"))
}

pub fn not_available(path: &str) -> ProviderError {
    ProviderError::NotAvailable(format!(
        "{path} is not available for this Gong account (the plan or product is not enabled, or the credential lacks its scope)"
    ))
}

/// The OAuth scope an endpoint's request takes.
pub fn scopes(endpoint: &Endpoint) -> Vec<String> {
    let method = match endpoint.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    };
    crate::gong::scope_for(method, endpoint.path).map(str::to_string).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_schema_is_json_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        for e in ENDPOINTS {
            assert!(names.insert(e.name), "duplicate {}", e.name);
            let schema: Value = serde_json::from_str(&input_schema(e)).unwrap();
            assert_eq!(schema["properties"].as_object().unwrap().len(), e.fields.len());
            for f in e.fields {
                if f.place == Path {
                    assert!(e.path.contains(&format!("{{{}}}", f.name)), "{}: {} not in path", e.name, f.name);
                }
            }
        }
    }

    #[test]
    fn fields_land_where_gong_expects_them() {
        let built = build(
            find("get-extensive-calls").unwrap(),
            r#"{"callIds":["1","2"],"cursor":"c","contentSelector":{"context":"Extended"}}"#,
        )
        .unwrap();
        assert_eq!(built.path, "/v2/calls/extensive");
        assert_eq!(
            built.body.unwrap(),
            json!({"filter":{"callIds":["1","2"]},"cursor":"c","contentSelector":{"context":"Extended"}})
        );
        let built = build(find("get-call").unwrap(), r#"{"id":"42"}"#).unwrap();
        assert_eq!((built.path.as_str(), built.body), ("/v2/calls/42", None));
        let built = build(find("list-flows").unwrap(), r#"{"flowOwnerEmail":"a@b.co"}"#).unwrap();
        assert_eq!(built.query, vec![("flowOwnerEmail".to_string(), "a@b.co".to_string())]);
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases = [
            ("get-call", r#"{"id":"../x"}"#, "`id` must be a Gong id"),
            ("get-call", r#"{}"#, "`id` is required"),
            ("list-flows", r#"{"flowOwnerEmail":"nobody"}"#, "`flowOwnerEmail` must be an email"),
            ("get-logs", r#"{"logType":"AccessLog","fromDateTime":"yesterday"}"#, "`fromDateTime` must be an RFC 3339"),
            ("stats-interaction", r#"{"fromDate":"2024-01-01","toDate":"2024-13-01"}"#, "`toDate` must be a date"),
            ("get-call-transcripts", r#"{"callIds":[]}"#, "`callIds` must not be empty"),
            ("get-call-transcripts", r#"{"callIds":[1]}"#, "`callIds` must hold strings"),
            ("list-workspaces", r#"{"x":1}"#, "unknown field `x`"),
            ("list-workspaces", r#"[]"#, "must be a JSON object"),
        ];
        for (action, input, expected) in cases {
            let err = build(find(action).unwrap(), input).unwrap_err();
            assert!(
                matches!(&err, ProviderError::InvalidInput(m) if m.contains(expected)),
                "{action} {input}: {err:?}"
            );
        }
    }

    #[test]
    fn bad_input_is_never_quoted_back() {
        let cases = [
            ("list-flows", r#"{"flowOwnerEmail":"jane.doe.private"}"#),
            ("get-call", r#"{"id":"jane.doe.private"}"#),
            ("get-call-transcripts", r#"{"callIds":["jane.doe.private"]}"#),
            ("list-flows", r#"{"flowOwnerEmail":"jane.doe.private""#),
        ];
        for (action, input) in cases {
            let err = build(find(action).unwrap(), input).unwrap_err();
            assert!(!format!("{err:?}").contains("jane.doe"), "{action} {input}: {err:?}");
        }
        let typed =
            crate::actions::parse_input::<crate::actions::GetUserInput>("get-user", r#"{"id":7, "x":"jane.doe"}"#);
        let err = format!("{:?}", typed.unwrap_err());
        assert!(err.contains("invalid type") && !err.contains("jane.doe"), "{err}");
    }

    #[test]
    fn each_sync_and_action_names_the_scopes_it_takes() {
        let syncs = |name: &str| crate::syncs::SYNCS.iter().find(|s| s.name == name).unwrap().scopes();
        assert_eq!(syncs("users"), ["api:users:read"]);
        assert_eq!(syncs("calls"), ["api:calls:read:extensive"]);
        assert_eq!(syncs("permission-profiles"), ["api:permission-profile:read", "api:workspaces:read"]);
        assert_eq!(scopes(find("upload-call").unwrap()), ["api:calls:create"]);
        for endpoint in ENDPOINTS {
            assert!(!scopes(endpoint).is_empty(), "{} names no scope", endpoint.name);
        }
        for sync in crate::syncs::SYNCS {
            assert!(!sync.scopes().is_empty(), "{} names no scope", sync.name);
        }
    }

    #[test]
    fn the_oauth_scopes_cover_every_sync_and_action() {
        let method = |m: &Method| match m {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        };
        let scopes = crate::gong::oauth_scopes();
        let mut needed: Vec<(&str, &str)> = ENDPOINTS.iter().map(|e| (method(&e.method), e.path)).collect();
        needed.extend(crate::syncs::SYNCS.iter().map(|s| (if s.reads_by_post() { "POST" } else { "GET" }, s.path())));
        needed.extend([("GET", "/v2/users/{id}"), ("GET", "/v2/calls"), ("GET", "/v2/workspaces")]);
        for (m, path) in needed {
            let scope = crate::gong::scope_for(m, path).unwrap_or_else(|| panic!("no scope known for {m} {path}"));
            assert!(scopes.contains(&scope), "{scope} missing");
        }
        assert_eq!(crate::gong::scope_for("GET", "/v2/users/7000000000000000001"), Some("api:users:read"));
        assert_eq!(crate::gong::scope_for("GET", "/v2/users/"), None);
    }

    #[test]
    fn posts_follow_gongs_document() {
        // `filter` is required by Gong even when no filter field is given.
        let built = build(find("get-call-transcripts").unwrap(), "{}").unwrap();
        assert_eq!(built.body, Some(json!({"filter": {}})));
        // Stats filters have no workspace; upload-call's duration is a number.
        let err = build(
            find("stats-interaction").unwrap(),
            r#"{"fromDate":"2024-01-01","toDate":"2024-02-01","workspaceId":"1"}"#,
        );
        assert!(format!("{:?}", err.unwrap_err()).contains("unknown field `workspaceId`"));
        let upload = r#"{"clientUniqueId":"u1","actualStart":"2024-01-01T10:00:00Z","parties":[],"direction":"Inbound","primaryUser":"7","duration":"60"}"#;
        assert!(
            format!("{:?}", build(find("upload-call").unwrap(), upload).unwrap_err())
                .contains("`duration` must be a number")
        );
        let built = build(find("upload-call").unwrap(), &upload.replace(r#""60""#, "61.5")).unwrap();
        assert_eq!(built.body.unwrap()["duration"], json!(61.5));
    }
}
