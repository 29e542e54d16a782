//! Requests to Gong through the host, and Gong's error statuses mapped to
//! `provider-error`.

use crate::prelude::*;

use serde::de::DeserializeOwned;

use crate::gong;
use crate::terapi::provider::http;
use crate::terapi::provider::log::{Level, log};
use crate::terapi::provider::types::{HttpRequest, Method, ProviderError, RemoteError};

/// What a Gong call answered, before it is judged a success or an error.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

pub fn send(
    method: Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Answer, ProviderError> {
    send_with(method, path, query, body, matches!(method, Method::Get))
}

/// `idempotent`: a POST that only reads (Gong puts filters in POST bodies)
/// may be retried by the host after a server error.
pub fn send_with(
    method: Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Vec<u8>>,
    idempotent: bool,
) -> Result<Answer, ProviderError> {
    send_typed(method, path, query, body, "application/json", idempotent)
}

/// `send_with` for a body that is not JSON (a multipart upload).
pub fn send_typed(
    method: Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Vec<u8>>,
    content_type: &str,
    idempotent: bool,
) -> Result<Answer, ProviderError> {
    let mut headers = vec![("accept".to_string(), "application/json".to_string())];
    if body.is_some() {
        headers.push(("content-type".to_string(), content_type.to_string()));
    }
    let request = HttpRequest {
        method,
        path: path.to_string(),
        query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        headers,
        body,
        idempotent,
    };
    log(Level::Debug, &format!("{} {path}", method_name(method)));
    let response = http::send(&request).map_err(ProviderError::Http)?;
    Ok(Answer { status: response.status, body: response.body })
}

/// GET and decode a JSON success; any other status becomes a `provider-error`.
pub fn get_json<T: DeserializeOwned>(path: &str, query: &[(&str, &str)]) -> Result<T, ProviderError> {
    let answer = send(Method::Get, path, query, None)?;
    decode_success(path, answer)
}

pub fn decode_success<T: DeserializeOwned>(path: &str, answer: Answer) -> Result<T, ProviderError> {
    if !(200..300).contains(&answer.status) {
        return Err(error_for_status(path, answer.status, &answer.body));
    }
    gong::decode(&answer.body)
        .map_err(|e| ProviderError::BadResponse(format!("Gong's answer to {path} could not be read: {e}")))
}

/// Maps a non-2xx Gong answer to the error a user can act on.
pub fn error_for_status(path: &str, status: u16, body: &[u8]) -> ProviderError {
    let detail = gong::error_message(body);
    match status {
        // Gong answers a token that lacks a scope with 401 "You don't have
        // permission to use 'api:…'": the credential is fine, the grant is short.
        401 if detail.to_ascii_lowercase().contains("permission") => {
            let scope = scope_named(&detail)
                .or_else(|| gong::scope_for("GET", path))
                .or_else(|| gong::scope_for("POST", path))
                .unwrap_or("the scope of this endpoint");
            ProviderError::NotAvailable(format!(
                "the connection's OAuth grant lacks the scope `{scope}` that {path} needs ({detail}); re-authorize the \
                 connection with that scope (terapi's default scopes cover every sync and action)"
            ))
        }
        // What to do about it depends on the credential's kind, which the
        // host knows and adds.
        401 => ProviderError::Unauthorized(format!("Gong rejected the credential ({detail})")),
        403 => ProviderError::NotAvailable(format!(
            "the credential is valid but lacks permission for {path} ({detail}); grant the API scope in Gong"
        )),
        404 => ProviderError::NotFound(format!("{path}: {detail}")),
        _ => ProviderError::Remote(RemoteError { status, message: format!("{path}: {detail}") }),
    }
}

/// The first `api:…` scope named in Gong's message, if any.
fn scope_named(detail: &str) -> Option<&str> {
    let start = detail.find("api:")?;
    let len = detail[start..].bytes().take_while(|b| b.is_ascii_alphanumeric() || b":-_".contains(b)).count();
    Some(&detail[start..start + len])
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}
