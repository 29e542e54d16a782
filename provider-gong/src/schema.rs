//! JSON Schemas of the record models and action inputs, exported through
//! `list-syncs` and `list-actions` so hosts can show and check them.

pub const USER: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"GongUser","type":"object","required":["id","active"],"properties":{"id":{"type":"string","description":"Gong user id"},"email":{"type":["string","null"]},"firstName":{"type":["string","null"]},"lastName":{"type":["string","null"]},"title":{"type":["string","null"]},"phoneNumber":{"type":["string","null"]},"active":{"type":"boolean"},"managerId":{"type":["string","null"]},"createdAt":{"type":["string","null"],"format":"date-time"}}}"#;

pub const GET_USER_INPUT: &str = r#"{"type":"object","required":["id"],"additionalProperties":false,"properties":{"id":{"type":"string","pattern":"^[0-9]+$","description":"Gong user id"}}}"#;

pub const GET_CALL_MEDIA_INPUT: &str = r#"{"type":"object","required":["id"],"additionalProperties":false,"properties":{"id":{"type":"string","pattern":"^[0-9]{1,20}$","description":"Gong call id"}}}"#;

pub const CALL_MEDIA: &str = r#"{"type":"object","required":["callId"],"properties":{"callId":{"type":"string"},"audioUrl":{"type":["string","null"],"format":"uri","description":"expires after a few hours"},"videoUrl":{"type":["string","null"],"format":"uri","description":"expires after a few hours"}}}"#;

pub const LIST_CALLS_INPUT: &str = r#"{"type":"object","additionalProperties":false,"properties":{"fromDateTime":{"type":"string","format":"date-time","description":"calls started at or after (RFC 3339)"},"toDateTime":{"type":"string","format":"date-time","description":"calls started before (RFC 3339)"},"workspaceId":{"type":"string","pattern":"^[0-9]+$"},"cursor":{"type":"string","description":"nextCursor of the previous answer"}}}"#;

pub const LIST_CALLS_OUTPUT: &str = r#"{"type":"object","required":["calls"],"properties":{"calls":{"type":"array","items":{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"GongCall","type":"object","required":["id","isPrivate"],"properties":{"id":{"type":"string","description":"Gong call id"},"title":{"type":["string","null"]},"url":{"type":["string","null"]},"scheduledAt":{"type":["string","null"],"format":"date-time"},"startedAt":{"type":["string","null"],"format":"date-time"},"durationSeconds":{"type":["number","null"]},"primaryUserId":{"type":["string","null"]},"direction":{"type":["string","null"]},"system":{"type":["string","null"]},"scope":{"type":["string","null"]},"media":{"type":["string","null"]},"language":{"type":["string","null"]},"workspaceId":{"type":["string","null"]},"meetingUrl":{"type":["string","null"]},"isPrivate":{"type":"boolean"}}}},"totalRecords":{"type":["integer","null"]},"nextCursor":{"type":["string","null"]}}}"#;

pub const GONG_ANSWER: &str =
    r#"{"type":"object","description":"Gong's answer as it is (see Gong's API reference for the endpoint)"}"#;

/// Records passed on as Gong sends them, with a string `id` guaranteed.
pub const GONG_RECORD: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","required":["id"],"properties":{"id":{"type":"string"}},"additionalProperties":true}"#;

pub const CALL_EXTENSIVE: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"GongCallExtensive","type":"object","required":["id","metaData"],"properties":{"id":{"type":"string"},"metaData":{"type":"object","description":"Gong's call metaData (title, started, duration, url, ...)"},"parties":{"type":"array","description":"participants"},"context":{"type":"array","description":"CRM context: objects[] holds the accounts and deals/opportunities the call belongs to"},"content":{"type":"object"},"collaboration":{"type":"object"}},"additionalProperties":true}"#;
