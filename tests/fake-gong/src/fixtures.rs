//! Deterministic Gong-shaped records.

use serde_json::{Value, json};

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
    let started = FIRST_CALL_AT + i as i64 * 3600;
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

pub fn format_rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `2024-01-01T10:00:00Z`, `2024-01-01T10:00:00.5+02:00` → unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok()).flatten()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d, h, mi, s) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[n..];
    }
    let offset = match rest.as_bytes() {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) => {
            let digit = |c: &u8| i64::from(c - b'0');
            let v = (digit(h1) * 10 + digit(h2)) * 3600 + (digit(m1) * 10 + digit(m2)) * 60;
            if *sign == b'+' { v } else { -v }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
}

// Howard Hinnant's civil calendar algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
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
        "reviewTime": call["started"],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(format_rfc3339(FIRST_CALL_AT), "2024-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00Z"), Some(FIRST_CALL_AT));
        assert_eq!(parse_rfc3339("2024-01-01T02:00:00.250+02:00"), Some(FIRST_CALL_AT));
        assert_eq!(parse_rfc3339("2024-01-01"), None);
        for t in [0, 951_782_400, 1_709_164_800, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        }
    }
}
