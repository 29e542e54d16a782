//! Gong's wire shapes and the stable record models we map them to.
//!
//! Gong's answers are read leniently (unknown fields ignored, ids accepted as
//! strings or numbers) and written strictly (our models are fixed and
//! documented by the JSON Schemas in `schema`).

use crate::prelude::*;

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

use crate::terapi::provider::types::ProviderError;

/// The scopes our syncs and actions need when connected through `gong-oauth`.
/// The OAuth scope each endpoint this provider calls needs, from Gong's
/// OpenAPI document (`api:permission-profile:read` and
/// `api:call-outcomes:read` from Gong's scope list: the document names none
/// for those). `{id}` stands for a path segment.
const SCOPES: &[(&str, &str, &str)] = &[
    ("GET", "/v2/users", "api:users:read"),
    ("GET", "/v2/users/{id}", "api:users:read"),
    ("GET", "/v2/calls", "api:calls:read:basic"),
    ("GET", "/v2/calls/{id}", "api:calls:read:basic"),
    ("POST", "/v2/calls", "api:calls:create"),
    ("POST", "/v2/calls/extensive", "api:calls:read:extensive"),
    ("POST", "/v2/calls/transcript", "api:calls:read:transcript"),
    ("GET", "/v2/settings/scorecards", "api:settings:scorecards:read"),
    ("GET", "/v2/settings/trackers", "api:settings:trackers:read"),
    ("POST", "/v2/stats/activity/scorecards", "api:stats:scorecards"),
    ("POST", "/v2/stats/activity/aggregate", "api:stats:user-actions"),
    ("POST", "/v2/stats/activity/day-by-day", "api:stats:user-actions:detailed"),
    ("POST", "/v2/stats/interaction", "api:stats:interaction"),
    ("GET", "/v2/workspaces", "api:workspaces:read"),
    ("GET", "/v2/flows", "api:flows:read"),
    ("POST", "/v2/flows/prospects", "api:flows:read"),
    ("POST", "/v2/flows/prospects/assign", "api:flows:write"),
    ("POST", "/v2/flows/prospects/unassign-flows-by-crm-id", "api:flows:write"),
    ("GET", "/v2/all-permission-profiles", "api:permission-profile:read"),
    ("GET", "/v2/permission-profile/users", "api:users:read"),
    ("GET", "/v2/crm/entities", "api:crm:get-objects"),
    ("POST", "/v2/crm/entities", "api:crm:upload"),
    ("GET", "/v2/crm/entity-schema", "api:crm:schema"),
    ("GET", "/v2/library/folders", "api:library:read"),
    ("GET", "/v2/library/folder-content", "api:library:read"),
    ("GET", "/v2/logs", "api:logs:read"),
    ("GET", "/v2/data-privacy/data-for-email-address", "api:data-privacy:read"),
    ("POST", "/v2/data-privacy/erase-data-for-email-address", "api:data-privacy:delete"),
    ("GET", "/v2/call-outcomes", "api:call-outcomes:read"),
];

/// The scope `method path` needs (`path` as written in a sync or action:
/// `{id}` placeholders, or concrete ids).
pub fn scope_for(method: &str, path: &str) -> Option<&'static str> {
    let same = |pattern: &str| {
        let (mut a, mut b) = (pattern.split('/'), path.split('/'));
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some(p), Some(s)) if p == s || (p.starts_with('{') && !s.is_empty()) => {}
                _ => return false,
            }
        }
    };
    SCOPES.iter().find(|(m, p, _)| *m == method && same(p)).map(|(_, _, scope)| *scope)
}

/// Every scope the provider's syncs and actions need, for the OAuth
/// authorization: a connection authorized with these can run all of them.
pub fn oauth_scopes() -> Vec<&'static str> {
    // `get-call-media` asks /v2/calls/extensive for media URLs, which takes
    // a scope of its own besides the endpoint's.
    let mut scopes: Vec<&str> = SCOPES.iter().map(|(_, _, scope)| *scope).chain(["api:calls:read:media-url"]).collect();
    scopes.sort_unstable();
    scopes.dedup();
    scopes
}

/// Decodes a JSON body, with serde's message (line, column, what was expected).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// Gong answers errors as `{"requestId": "...", "errors": ["..."]}`.
pub fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct GongErrors {
        #[serde(default)]
        errors: Vec<String>,
        #[serde(rename = "requestId")]
        request_id: Option<String>,
    }
    match serde_json::from_slice::<GongErrors>(body) {
        Ok(e) if !e.errors.is_empty() => {
            let joined = e.errors.join("; ");
            match e.request_id {
                Some(id) => format!("{joined} [Gong request id {id}]"),
                None => joined,
            }
        }
        _ if body.is_empty() => "no details given".to_string(),
        // Not Gong's shape (a proxy's HTML page, say): show a short, printable prefix.
        _ => {
            let text = String::from_utf8_lossy(body);
            let printable: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
            printable
        }
    }
}

/// The `records` block of every paginated Gong list.
/// Gong names no company in its answers, but user ids are unique across
/// Gong and every key of a company lists the same users: the smallest id
/// on the first users page names the company (two companies never share
/// it). `None` when the page lists nobody.
pub fn company_key(page: &UsersPage) -> Option<String> {
    page.users.iter().filter_map(|u| u.id.parse::<u64>().ok()).min().map(|id| format!("gong-company-of-user-{id}"))
}

/// The connection config key of a tenant's API base URL.
pub const BASE_URL_KEY: &str = "api_base_url_for_customer";

/// Gong's API lives at `https://api.gong.io` or a regional
/// `https://<name>.api.gong.io`. Plain http to this machine is let through
/// for a local fake Gong: the host refuses it unless its operator allows
/// private egress, which the component cannot know.
pub fn check_config(config: &[(String, String)]) -> Result<(), ProviderError> {
    for (key, value) in config {
        if key == BASE_URL_KEY && !value.is_empty() && !is_gong_api_base(value) {
            return Err(ProviderError::InvalidInput(format!(
                "`{BASE_URL_KEY}` must be Gong's API host, https://api.gong.io or https://<name>.api.gong.io as \
                 Gong shows it (Company settings > Ecosystem > API); the value given is not (it is not repeated here)"
            )));
        }
    }
    Ok(())
}

pub fn is_gong_api_base(value: &str) -> bool {
    let value = value.strip_suffix('/').unwrap_or(value);
    if let Some(host) = value.strip_prefix("https://") {
        let host = host.to_ascii_lowercase();
        let label = host.strip_suffix(".api.gong.io");
        return host == "api.gong.io"
            || label.is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }
    if let Some(rest) = value.strip_prefix("http://") {
        let (host, port) = rest.split_once(':').unwrap_or((rest, "80"));
        return matches!(host, "127.0.0.1" | "localhost")
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit());
    }
    false
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Records {
    pub total_records: Option<u64>,
    pub current_page_size: Option<u64>,
    pub current_page_number: Option<u64>,
    /// Present only while more records remain.
    pub cursor: Option<String>,
}

impl Records {
    /// Gong omits the cursor on the last page; an empty string means the same.
    pub fn next_cursor(&self) -> Option<&str> {
        self.cursor.as_deref().filter(|c| !c.is_empty())
    }
}

#[derive(Debug, Deserialize)]
pub struct UsersPage {
    #[serde(default)]
    pub records: Records,
    /// Required: an answer without it is not a users page, and reading it as
    /// an empty one would end a sync silently.
    #[serde(deserialize_with = "capped_list")]
    pub users: Vec<GongUser>,
}

/// The most records one page may hold. Gong's pages hold 100; a page this
/// big (a misbehaving upstream) is refused with a clear error before it
/// can fill the guest's memory: 100,000 records within the host's 32 MiB
/// response cap fit in the guest's 256 MiB with room to spare.
pub const MAX_RECORDS_PER_PAGE: usize = 100_000;

/// The refusal of a page over `MAX_RECORDS_PER_PAGE`.
pub fn too_many_records(path: &str) -> ProviderError {
    ProviderError::BadResponse(format!("{path}: {}", too_many_records_text()))
}

fn too_many_records_text() -> String {
    format!(
        "the page holds more than {MAX_RECORDS_PER_PAGE} records (Gong's pages hold 100), more than a page may; \
         refused before it fills the sandbox's memory"
    )
}

/// A list read item by item that stops past `MAX_RECORDS_PER_PAGE`.
fn capped_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
    struct Capped<T>(core::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> de::Visitor<'de> for Capped<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                if items.len() == MAX_RECORDS_PER_PAGE {
                    return Err(de::Error::custom(too_many_records_text()));
                }
                items.push(item);
            }
            Ok(items)
        }
    }
    deserializer.deserialize_seq(Capped(core::marker::PhantomData))
}

#[derive(Debug, Deserialize)]
pub struct UserEnvelope {
    pub user: GongUser,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GongUser {
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    pub email_address: Option<String>,
    pub created: Option<String>,
    pub active: Option<bool>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub title: Option<String>,
    pub phone_number: Option<String>,
    #[serde(default, deserialize_with = "opt_id_string")]
    pub manager_id: Option<String>,
}

/// Our stable `GongUser` record.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub title: Option<String>,
    pub phone_number: Option<String>,
    pub active: bool,
    pub manager_id: Option<String>,
    pub created_at: Option<String>,
}

impl From<GongUser> for User {
    fn from(u: GongUser) -> Self {
        User {
            id: u.id,
            email: u.email_address,
            first_name: u.first_name,
            last_name: u.last_name,
            title: u.title,
            phone_number: u.phone_number,
            // Gong leaves `active` out for active users in some answers.
            active: u.active.unwrap_or(true),
            manager_id: u.manager_id,
            created_at: u.created,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CallsPage {
    #[serde(default)]
    pub records: Records,
    pub calls: Vec<GongCall>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GongCall {
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    pub url: Option<String>,
    pub title: Option<String>,
    pub scheduled: Option<String>,
    pub started: Option<String>,
    /// Seconds, passed on as Gong wrote the number.
    pub duration: Option<serde_json::Number>,
    #[serde(default, deserialize_with = "opt_id_string")]
    pub primary_user_id: Option<String>,
    pub direction: Option<String>,
    pub system: Option<String>,
    pub scope: Option<String>,
    pub media: Option<String>,
    pub language: Option<String>,
    #[serde(default, deserialize_with = "opt_id_string")]
    pub workspace_id: Option<String>,
    pub meeting_url: Option<String>,
    pub is_private: Option<bool>,
}

/// Our stable `GongCall` record.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub id: String,
    pub title: Option<String>,
    pub url: Option<String>,
    pub scheduled_at: Option<String>,
    pub started_at: Option<String>,
    pub duration_seconds: Option<serde_json::Number>,
    pub primary_user_id: Option<String>,
    pub direction: Option<String>,
    pub system: Option<String>,
    pub scope: Option<String>,
    pub media: Option<String>,
    pub language: Option<String>,
    pub workspace_id: Option<String>,
    pub meeting_url: Option<String>,
    pub is_private: bool,
}

impl From<GongCall> for Call {
    fn from(c: GongCall) -> Self {
        Call {
            id: c.id,
            title: c.title,
            url: c.url,
            scheduled_at: c.scheduled,
            started_at: c.started,
            duration_seconds: c.duration,
            primary_user_id: c.primary_user_id,
            direction: c.direction,
            system: c.system,
            scope: c.scope,
            media: c.media,
            language: c.language,
            workspace_id: c.workspace_id,
            meeting_url: c.meeting_url,
            is_private: c.is_private.unwrap_or(false),
        }
    }
}

/// An id as text from a JSON string or integer; `None` for anything else.
pub fn id_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// Gong ids are 64-bit integers, sent as strings; accept numbers too so an id
/// never loses precision or fails on a representation change.
fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    opt_id_string(d)?.ok_or_else(|| de::Error::custom("id is null"))
}

fn opt_id_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    // A visitor rather than an untagged enum: untagged buffers every value and
    // retries each variant.
    struct IdVisitor;

    impl<'de> de::Visitor<'de> for IdVisitor {
        type Value = Option<String>;

        fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
            f.write_str("an id as a string or an integer")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            if s.is_empty() { Err(E::custom("id is empty")) } else { Ok(Some(s.to_string())) }
        }

        fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
            if s.is_empty() { Err(E::custom("id is empty")) } else { Ok(Some(s)) }
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Some(n.to_string()))
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(n.to_string()))
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(IdVisitor)
        }
    }

    d.deserialize_option(IdVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_text_from_strings_or_integers_and_nothing_else() {
        let user = |id: &str| decode::<GongUser>(format!(r#"{{"id":{id},"managerId":{id}}}"#).as_bytes());
        assert_eq!(user(r#""77""#).unwrap().id, "77");
        assert_eq!(user("18446744073709551615").unwrap().manager_id.as_deref(), Some("18446744073709551615"));
        assert_eq!(user("-5").unwrap().id, "-5");
        for bad in [r#""""#, "1.5", "true", "[]", "{}"] {
            assert!(user(bad).is_err(), "{bad}");
        }
        let no_manager: GongUser = decode(br#"{"id":"1","managerId":null}"#).unwrap();
        assert_eq!(no_manager.manager_id, None);
        assert!(decode::<GongUser>(br#"{"id":null}"#).is_err());
    }

    #[test]
    fn only_gong_api_hosts_pass_as_base_urls() {
        for good in [
            "https://api.gong.io",
            "https://us-44392.api.gong.io/",
            "https://EU-1.api.gong.io",
            "http://127.0.0.1:8080",
        ] {
            assert!(is_gong_api_base(good), "{good}");
        }
        for bad in [
            "https://evil.example",
            "https://api.gong.io.evil.example",
            "https://evil.example/api.gong.io",
            "https://a.b.api.gong.io",
            "https://.api.gong.io",
            "http://api.gong.io",
            "https://api.gong.io:8443",
            "https://user@api.gong.io",
            "http://10.0.0.1:80",
            "http://127.0.0.1:80/x",
        ] {
            assert!(!is_gong_api_base(bad), "{bad}");
        }
        let error = check_config(&[(BASE_URL_KEY.into(), "https://evil.example".into())]).unwrap_err();
        assert!(matches!(&error, ProviderError::InvalidInput(m) if !m.contains("evil")), "{error:?}");
        assert!(check_config(&[("other".into(), "https://evil.example".into())]).is_ok());
    }

    #[test]
    fn the_company_is_named_by_its_smallest_user_id() {
        let body =
            br#"{"records":{},"users":[{"id":"9","emailAddress":"a@x.io"},{"id":"12","emailAddress":"b@x.io"}]}"#;
        let page: UsersPage = decode(body).unwrap();
        assert_eq!(company_key(&page).as_deref(), Some("gong-company-of-user-9"));
    }

    #[test]
    fn users_page_reads_cursor_and_ids_of_either_type() {
        let body = br#"{"requestId":"r1","records":{"totalRecords":3,"currentPageSize":2,"currentPageNumber":0,"cursor":"abc"},
            "users":[{"id":"7782342274025937895","emailAddress":"a@x.io","firstName":"A","active":true},
                     {"id":12,"emailAddress":"b@x.io","managerId":7782342274025937895}]}"#;
        let page: UsersPage = decode(body).unwrap();
        assert_eq!(page.records.next_cursor(), Some("abc"));
        assert_eq!(page.users[0].id, "7782342274025937895");
        let second = User::from(page.users.into_iter().nth(1).unwrap());
        assert_eq!(second.id, "12");
        assert_eq!(second.manager_id.as_deref(), Some("7782342274025937895"));
        assert!(second.active);
    }

    #[test]
    fn last_page_has_no_cursor_and_empty_cursor_means_none() {
        let page: UsersPage = decode(br#"{"records":{"totalRecords":1},"users":[]}"#).unwrap();
        assert_eq!(page.records.next_cursor(), None);
        let page: UsersPage = decode(br#"{"records":{"cursor":""},"users":[]}"#).unwrap();
        assert_eq!(page.records.next_cursor(), None);
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        for body in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"users":[{"id":null}]}"#,
            br#"{"users":[{"id":""}]}"#,
            br#"{"users":[{"id":1.5}]}"#,
        ] {
            assert!(decode::<UsersPage>(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn error_message_reads_gong_errors_and_survives_anything_else() {
        assert_eq!(error_message(br#"{"requestId":"q","errors":["Invalid key"]}"#), "Invalid key [Gong request id q]");
        assert_eq!(error_message(b""), "no details given");
        assert_eq!(error_message(b"<html>\n502</html>"), "<html>502</html>");
    }
}
