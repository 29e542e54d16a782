//! Deterministic Gong-shaped records.

use serde_json::{Value, json};
pub use terapi_time::{format_rfc3339, parse_rfc3339};

/// Gong ids are 64-bit integers sent as strings.
pub fn user_id(i: usize) -> String {
    (7_000_000_000_000_000_000u64 + i as u64).to_string()
}

pub fn users(n: usize) -> Vec<Value> {
    (0..n).map(user).collect()
}

pub fn user(i: usize) -> Value {
    json!({
        "id": user_id(i),
        "emailAddress": format!("user{i}@example.com"),
        "created": format_rfc3339(1_700_000_000 + i as i64 * 60),
        "active": i % 10 != 9,
        "emailAliases": [],
        "trustedEmailAddress": null,
        "firstName": format!("First{i}"),
        "lastName": format!("Last{i}"),
        "title": "Account Executive",
        "phoneNumber": format!("+1-555-{:04}", i % 10_000),
        "extension": null,
        "personalMeetingUrls": [],
        "settings": { "webConferencesRecorded": true, "preventWebConferenceRecording": false },
        "managerId": if i == 0 { Value::Null } else { json!(user_id(0)) },
        "meetingConsentPageUrl": null,
        "spokenLanguages": [{ "language": "en-US", "primary": true }]
    })
}

pub fn call_id(i: usize) -> String {
    (8_000_000_000_000_000_000u64 + i as u64).to_string()
}

/// Calls one hour apart from 2024-01-01T00:00:00Z.
pub fn calls(n: usize) -> Vec<Value> {
    (0..n).map(call).collect()
}

pub const FIRST_CALL_AT: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z

pub fn call(i: usize) -> Value {
    call_at(i, FIRST_CALL_AT + i as i64 * 3600)
}

/// `n` calls spread evenly over [from, to) (unix seconds), as a company
/// that had them recently would: the demo's date windows then find them.
pub fn calls_between(n: usize, from: i64, to: i64) -> Vec<Value> {
    let step = if n == 0 { 0 } else { (to - from).max(0) / n as i64 };
    (0..n).map(|i| call_at(i, from + i as i64 * step)).collect()
}

fn call_at(i: usize, started: i64) -> Value {
    json!({
        "id": call_id(i),
        "url": format!("https://app.gong.io/call?id={}", call_id(i)),
        "title": format!("Discovery call {i}"),
        "scheduled": format_rfc3339(started),
        "started": format_rfc3339(started),
        "duration": 1800 + i % 600,
        "primaryUserId": user_id(i % 10),
        "direction": "Conference",
        "system": "Zoom",
        "scope": "External",
        "media": "Video",
        "language": "eng",
        "workspaceId": "5000000000000000001",
        "sdrDisposition": null,
        "clientUniqueId": null,
        "customData": null,
        "purpose": null,
        "meetingUrl": "https://zoom.us/j/123",
        "isPrivate": false,
        "calendarEventId": null
    })
}

/// A call as `/v2/calls/extensive` answers it: metaData, parties, and CRM
/// context with the deal (opportunity) it belongs to.
pub fn extensive_call(call: &Value) -> Value {
    let id = call["id"].as_str().unwrap_or_default();
    json!({
        "metaData": call,
        "parties": [
            { "id": "1", "emailAddress": "rep@example.com", "name": "Rep", "affiliation": "Internal", "userId": call["primaryUserId"] },
            { "id": "2", "emailAddress": "buyer@customer.com", "name": "Buyer", "affiliation": "External" }
        ],
        "context": [{
            "system": "Salesforce",
            "objects": [
                { "objectType": "Account", "objectId": "001A", "fields": [{ "name": "Name", "value": "Customer Inc" }] },
                { "objectType": "Opportunity", "objectId": format!("006-{id}"), "fields": [{ "name": "StageName", "value": "Discovery" }] }
            ]
        }],
        "content": { "brief": "A short summary", "topics": [{ "name": "Pricing", "duration": 120 }] }
    })
}

pub fn transcript(call: &Value) -> Value {
    json!({
        "callId": call["id"],
        "transcript": [{
            "speakerId": "1",
            "topic": "Pricing",
            "sentences": [{ "start": 0, "end": 1500, "text": "Thanks for joining." }]
        }]
    })
}

pub fn answered_scorecard(call: &Value) -> Value {
    let id = call["id"].as_str().unwrap_or_default();
    json!({
        "answeredScorecardId": format!("9{}", &id[1..]),
        "scorecardId": "6000000000000000001",
        "scorecardName": "Discovery quality",
        "callId": id,
        "callStartTime": call["started"],
        "reviewedUserId": call["primaryUserId"],
        "reviewerUserId": user_id(0),
        // Reviewed when the test says, or two days after the call: a sync
        // windowed by call date would miss reviews of older calls.
        "reviewTime": call.get("reviewed").cloned().unwrap_or_else(|| {
            json!(call["started"].as_str().and_then(parse_rfc3339).map(|t| format_rfc3339(t + 2 * 86_400)))
        }),
        "answers": [{ "questionId": "1", "score": 4 }]
    })
}

/// The personal Engage flows of user `i`: two for every third user.
pub fn personal_flows(i: usize) -> Vec<Value> {
    let count = if i.is_multiple_of(3) { 2 } else { 0 };
    (0..count)
        .map(|k| json!({ "id": format!("621{i:012}{k:04}"), "name": format!("Flow of user {i} #{k}"), "visibility": "Personal" }))
        .collect()
}

/// The Shared flows user `i` sees: one flow shared with every even user,
/// so several owners list it.
pub fn shared_flows(i: usize) -> Vec<Value> {
    if i.is_multiple_of(2) {
        vec![json!({ "id": "6220000000000000001", "name": "Shared flow", "visibility": "Shared" })]
    } else {
        Vec::new()
    }
}

/// Items of a settings-like list, `n` of them (per workspace where it matters).
pub fn settings(key: &str, n: usize, workspace: Option<&str>) -> Vec<Value> {
    (0..n)
        .map(|i| match key {
            "scorecards" => json!({
                "scorecardId": format!("600000000000000{i:04}"), "scorecardName": format!("Scorecard {i}"),
                "workspaceId": "5000000000000000000", "enabled": true, "updated": "2024-03-01T10:00:00Z", "questions": []
            }),
            "keywordTrackers" => json!({
                "trackerId": format!("610000000000000{i:04}"), "trackerName": format!("Tracker {i}"),
                "workspaceId": "5000000000000000000",
                "languageKeywords": [{ "language": "eng", "keywords": ["price", "discount"], "includeRelatedForms": true }],
                "affiliation": "Anyone", "saidAt": "Anytime", "created": "2024-01-01T10:00:00Z", "updated": "2024-03-01T10:00:00Z"
            }),
            "workspaces" => json!({ "id": format!("500000000000000{i:04}"), "name": format!("Workspace {i}") }),
            "flows" => json!({ "id": format!("620000000000000{i:04}"), "name": format!("Flow {i}"), "visibility": "Company" }),
            "outcomes" => json!({
                "callOutcome": format!("Outcome {i}"), "displayOrder": i + 1,
                "connectStatus": if i % 2 == 0 { "CONNECTED" } else { "NOT_CONNECTED" },
                "sentiment": "NEUTRAL", "category": "ANSWERED"
            }),
            "profiles" => json!({ "id": format!("64000000000000{i:05}"), "name": format!("Profile {i}"), "workspaceId": workspace }),
            _ => json!({ "id": i.to_string() }),
        })
        .collect()
}
