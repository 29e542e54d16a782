//! JSON Schemas of the record models and action inputs, exported through
//! `list-syncs` and `list-actions` so hosts can show and check them.

pub const USER: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"GongUser","type":"object","required":["id","active"],"properties":{"id":{"type":"string","description":"Gong user id"},"email":{"type":["string","null"]},"firstName":{"type":["string","null"]},"lastName":{"type":["string","null"]},"title":{"type":["string","null"]},"phoneNumber":{"type":["string","null"]},"active":{"type":"boolean"},"managerId":{"type":["string","null"]},"createdAt":{"type":["string","null"],"format":"date-time"}}}"#;

#[allow(dead_code)] // the `calls` sync (issue 7) exports it; `list-calls` refers to it by name
pub const CALL: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"GongCall","type":"object","required":["id","isPrivate"],"properties":{"id":{"type":"string","description":"Gong call id"},"title":{"type":["string","null"]},"url":{"type":["string","null"]},"scheduledAt":{"type":["string","null"],"format":"date-time"},"startedAt":{"type":["string","null"],"format":"date-time"},"durationSeconds":{"type":["number","null"]},"primaryUserId":{"type":["string","null"]},"direction":{"type":["string","null"]},"system":{"type":["string","null"]},"scope":{"type":["string","null"]},"media":{"type":["string","null"]},"language":{"type":["string","null"]},"workspaceId":{"type":["string","null"]},"meetingUrl":{"type":["string","null"]},"isPrivate":{"type":"boolean"}}}"#;

pub const GET_USER_INPUT: &str = r#"{"type":"object","required":["id"],"additionalProperties":false,"properties":{"id":{"type":"string","pattern":"^[0-9]+$","description":"Gong user id"}}}"#;

pub const LIST_CALLS_INPUT: &str = r#"{"type":"object","additionalProperties":false,"properties":{"fromDateTime":{"type":"string","format":"date-time","description":"calls started at or after (RFC 3339)"},"toDateTime":{"type":"string","format":"date-time","description":"calls started before (RFC 3339)"},"workspaceId":{"type":"string","pattern":"^[0-9]+$"},"cursor":{"type":"string","description":"nextCursor of the previous answer"}}}"#;

pub const LIST_CALLS_OUTPUT: &str = r#"{"type":"object","required":["calls"],"properties":{"calls":{"type":"array","items":{"$ref":"GongCall"}},"totalRecords":{"type":["integer","null"]},"nextCursor":{"type":["string","null"]}}}"#;
