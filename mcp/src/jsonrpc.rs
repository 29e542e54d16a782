//! JSON-RPC 2.0 at the door, before rmcp sees a message: rmcp drops
//! unparsable input without a word, answers a malformed request with an
//! id-less "Invalid request", and takes a known method with wrong params
//! for an unknown one (-32601). Clients need the error JSON-RPC 2.0 names,
//! with their request's id, to tell their own bug from ours.
//!
//! | what came in | answer |
//! | --- | --- |
//! | not JSON | -32700 Parse error, `id: null` |
//! | JSON, but not a JSON-RPC 2.0 message | -32600 Invalid Request, with its `id` if it has one |
//! | `params` neither an object nor an array | -32600 Invalid Request, with its `id` |
//! | a known method with params of the wrong shape | -32602 Invalid params, with its `id` |
//! | a notification (no `id`) | never an answer, whatever is wrong with it |

use rmcp::model::{CallToolRequestParams, ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
use serde_json::{Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INVALID_PARAMS: i64 = -32602;

/// The client requests of MCP that rmcp types. A message naming one of
/// these that rmcp could only read as a custom request had params of the
/// wrong shape.
const TYPED_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
];

/// The JSON-RPC error response to send instead of passing `message` on.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: i64,
    pub response: Value,
}

fn refusal(id: Value, code: i64, message: String) -> Refusal {
    Refusal { code, response: json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}) }
}

/// `Ok` when rmcp can take `message` as it is.
pub fn check(message: &[u8]) -> Result<(), Refusal> {
    let value: Value = serde_json::from_slice(message)
        .map_err(|e| refusal(Value::Null, PARSE_ERROR, format!("Parse error: the message is not JSON ({e})")))?;
    let Value::Object(object) = &value else {
        let what = if value.is_array() { "a batch; send one message at a time" } else { "not a JSON object" };
        return Err(refusal(Value::Null, INVALID_REQUEST, format!("Invalid Request: the message is {what}")));
    };
    // A notification is never answered (JSON-RPC 2.0, section 4.1); rmcp
    // ignores the ones it does not know.
    let Some(id) = object.get("id").cloned() else { return Ok(()) };
    if !(id.is_string() || id.is_i64() || id.is_u64()) {
        return Err(refusal(
            Value::Null,
            INVALID_REQUEST,
            "Invalid Request: `id` must be a string or an integer".into(),
        ));
    }
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(refusal(id, INVALID_REQUEST, "Invalid Request: `jsonrpc` must be \"2.0\"".into()));
    }
    // JSON-RPC 2.0 section 4.2: `params`, when present, MUST be an object
    // or an array; anything else makes the Request object invalid.
    if object.get("params").is_some_and(|p| !(p.is_object() || p.is_array())) {
        return Err(refusal(id, INVALID_REQUEST, "Invalid Request: `params` must be an object or an array".into()));
    }
    // The method and params are kept only for the error paths; the typed
    // parse takes the value itself (no copy of a message that is fine).
    let method = object.get("method").cloned();
    let params =
        || serde_json::from_slice::<Value>(message).ok().and_then(|mut v| v.get_mut("params").map(Value::take));
    match serde_json::from_value::<ClientJsonRpcMessage>(value) {
        Ok(JsonRpcMessage::Request(request)) => match &request.request {
            ClientRequest::CustomRequest(custom) if TYPED_METHODS.contains(&custom.method.as_str()) => {
                Err(invalid_params(id, &custom.method, params().as_ref()))
            }
            _ => Ok(()),
        },
        Ok(_) => Ok(()),
        Err(_) => match method {
            Some(Value::String(name)) if TYPED_METHODS.contains(&name.as_str()) => {
                Err(invalid_params(id, &name, params().as_ref()))
            }
            Some(Value::String(_)) | None => Err(refusal(
                id,
                INVALID_REQUEST,
                "Invalid Request: not a JSON-RPC 2.0 request (`method` with an object of `params`)".into(),
            )),
            Some(_) => Err(refusal(id, INVALID_REQUEST, "Invalid Request: `method` must be a string".into())),
        },
    }
}

fn invalid_params(id: Value, method: &str, params: Option<&Value>) -> Refusal {
    // The one method whose shape the caller most needs spelled out.
    let detail = match (method, params) {
        ("tools/call", Some(params)) => serde_json::from_value::<CallToolRequestParams>(params.clone())
            .err()
            .map(|e| format!(": {e}"))
            .unwrap_or_default(),
        ("tools/call", None) => ": `params` with the tool's `name` is required".into(),
        _ => String::new(),
    };
    refusal(id, INVALID_PARAMS, format!("Invalid params for `{method}`{detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_and_id(message: &str) -> Option<(i64, Value)> {
        check(message.as_bytes()).err().map(|r| (r.code, r.response["id"].clone()))
    }

    #[test]
    fn errors_have_json_rpc_codes_and_the_request_id() {
        assert_eq!(code_and_id("garbage{"), Some((PARSE_ERROR, Value::Null)));
        assert_eq!(code_and_id("[1, 2]"), Some((INVALID_REQUEST, Value::Null)));
        assert_eq!(code_and_id(r#"{"id": 3, "method": "ping"}"#), Some((INVALID_REQUEST, json!(3))));
        assert_eq!(
            code_and_id(r#"{"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {"name": 5}}"#),
            Some((INVALID_PARAMS, json!("a")))
        );
        assert_eq!(
            code_and_id(r#"{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": "x"}"#),
            Some((INVALID_REQUEST, json!(7))),
            "params that are not structured make the request invalid (JSON-RPC 2.0, 4.2)"
        );
        assert_eq!(
            code_and_id(
                r#"{"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "get-user", "arguments": "x"}}"#
            ),
            Some((INVALID_PARAMS, json!(8)))
        );
        assert_eq!(code_and_id(r#"{"jsonrpc": "2.0", "id": 9, "method": 5}"#), Some((INVALID_REQUEST, json!(9))));
    }

    #[test]
    fn good_messages_unknown_methods_and_notifications_pass() {
        for fine in [
            r#"{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get-user", "arguments": {}}}"#,
            r#"{"jsonrpc": "2.0", "id": 2, "method": "tools/list"}"#,
            r#"{"jsonrpc": "2.0", "id": 3, "method": "ping"}"#,
            // rmcp answers these itself: -32601 with the id.
            r#"{"jsonrpc": "2.0", "id": 4, "method": "nope/x", "params": {}}"#,
            r#"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#,
            r#"{"jsonrpc": "2.0", "method": "notifications/whatever", "params": 5}"#,
            r#"{"jsonrpc": "2.0", "id": 5, "result": {}}"#,
        ] {
            assert_eq!(check(fine.as_bytes()), Ok(()), "{fine}");
        }
    }

    #[test]
    fn the_message_says_what_is_wrong() {
        let refusal =
            check(br#"{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 5}}"#).unwrap_err();
        let message = refusal.response["error"]["message"].as_str().unwrap();
        assert!(message.contains("tools/call") && message.contains("invalid type"), "{message}");
    }
}
