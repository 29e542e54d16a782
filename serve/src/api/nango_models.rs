//! Nango's Gong models, as views over terapi's: an app written against
//! Nango's Gong templates (`integration-templates/integrations/gong`) reads
//! `User`, `GongCallOutput` and `GongCallTranscriptSyncOutput` (snake_case
//! fields) and gets terapi's `GongUser`, `GongCallExtensive` and
//! `GongCallTranscript` records in those shapes, with the same cursors,
//! change order and `_nango_metadata`. The stored records stay Gong's own.

use serde_json::{Map, Value, json};

/// A Nango model served from one of terapi's.
pub struct View {
    pub nango: &'static str,
    pub model: &'static str,
    pub map: fn(&Value) -> Value,
}

const VIEWS: &[View] = &[
    View { nango: "User", model: "GongUser", map: user },
    View { nango: "GongCallOutput", model: "GongCallExtensive", map: call },
    View { nango: "GongCallTranscriptSyncOutput", model: "GongCallTranscript", map: transcript },
];

/// The view `name` of a Gong integration's records, if there is one.
pub fn view(provider: &str, name: &str) -> Option<&'static View> {
    (provider == "gong" || provider.starts_with("gong-")).then(|| VIEWS.iter().find(|v| v.nango == name)).flatten()
}

/// The names a Gong app may ask for beside terapi's own.
pub fn names(provider: &str) -> Vec<&'static str> {
    if provider == "gong" || provider.starts_with("gong-") { VIEWS.iter().map(|v| v.nango).collect() } else { vec![] }
}

fn field(value: &Value, key: &str) -> Value {
    value.get(key).cloned().unwrap_or(Value::Null)
}

fn list(value: &Value, key: &str, each: impl Fn(&Value) -> Value) -> Value {
    Value::Array(
        value.get(key).and_then(Value::as_array).map(|items| items.iter().map(each).collect()).unwrap_or_default(),
    )
}

fn user(gong: &Value) -> Value {
    json!({
        "id": field(gong, "id"),
        "firstName": field(gong, "firstName"),
        "lastName": field(gong, "lastName"),
        // terapi's GongUser already names it `email`; Gong says `emailAddress`.
        "email": gong.get("email").or_else(|| gong.get("emailAddress")).cloned().unwrap_or(Value::Null),
    })
}

fn call(gong: &Value) -> Value {
    let meta = gong.get("metaData").cloned().unwrap_or(Value::Null);
    // Gong answers a list of CRM contexts; Nango's model holds one.
    let context = gong.get("context").and_then(Value::as_array).and_then(|c| c.first()).cloned().unwrap_or(Value::Null);
    let object = context.get("objects").and_then(Value::as_array).and_then(|o| o.first()).cloned();
    let interaction = gong.get("interaction").cloned().unwrap_or(Value::Null);
    let questions = interaction.get("questions").cloned().unwrap_or(Value::Null);
    let media = gong.get("media").cloned().unwrap_or(Value::Null);
    let mut out = Map::new();
    for (nango, gong_key) in [
        ("id", "id"),
        ("url", "url"),
        ("title", "title"),
        ("scheduled", "scheduled"),
        ("started", "started"),
        ("duration", "duration"),
        ("direction", "direction"),
        ("scope", "scope"),
        ("media", "media"),
        ("language", "language"),
        ("workspace_id", "workspaceId"),
        ("purpose", "purpose"),
        ("meeting_url", "meetingUrl"),
        ("is_private", "isPrivate"),
        ("calendar_event_id", "calendarEventId"),
    ] {
        out.insert(nango.into(), field(&meta, gong_key));
    }
    out.insert(
        "context".into(),
        json!({
            "system": field(&context, "system"),
            "objects": object.map(|o| json!({
                "object_type": field(&o, "objectType"),
                "object_id": field(&o, "objectId"),
                "fields": o.get("fields").cloned().unwrap_or_else(|| json!([])),
            })),
        }),
    );
    out.insert(
        "parties".into(),
        list(gong, "parties", |p| {
            json!({
                "id": field(p, "id"),
                "email_address": field(p, "emailAddress"),
                "name": field(p, "name"),
                "title": field(p, "title"),
                "user_id": field(p, "userId"),
                "speaker_id": field(p, "speakerId"),
                "affiliation": field(p, "affiliation"),
                "methods": field(p, "methods"),
            })
        }),
    );
    out.insert(
        "interaction".into(),
        json!({
            "speakers": list(&interaction, "speakers", |s| json!({
                "id": field(s, "id"), "user_id": field(s, "userId"), "talkTime": field(s, "talkTime"),
            })),
            "interaction_stats": list(&interaction, "interactionStats", |s| json!({
                "name": field(s, "name"), "value": field(s, "value"),
            })),
            "video": list(&interaction, "video", |v| json!({ "name": field(v, "name"), "duration": field(v, "duration") })),
            "questions": {
                "company_count": field(&questions, "companyCount"),
                "non_company_count": field(&questions, "nonCompanyCount"),
            },
        }),
    );
    let collaboration = gong.get("collaboration").cloned().unwrap_or(Value::Null);
    out.insert(
        "collaboration".into(),
        json!({
            "public_comments": list(&collaboration, "publicComments", |c| json!({
                "id": field(c, "id"),
                "audio_start_time": field(c, "audioStartTime"),
                "audio_end_time": field(c, "audioEndTime"),
                "commenter_user_id": field(c, "commenterUserId"),
                "comment": field(c, "comment"),
                "posted": field(c, "posted"),
                "during_call": field(c, "duringCall"),
            })),
        }),
    );
    out.insert(
        "media_urls".into(),
        json!({ "audio_url": field(&media, "audioUrl"), "video_url": field(&media, "videoUrl") }),
    );
    Value::Object(out)
}

fn transcript(gong: &Value) -> Value {
    json!({
        "id": field(gong, "callId"),
        "transcript": list(gong, "transcript", |part| json!({
            "speaker_id": field(part, "speakerId"),
            "topic": field(part, "topic"),
            "sentences": part.get("sentences").cloned().unwrap_or_else(|| json!([])),
        })),
    })
}
