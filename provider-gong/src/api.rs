//! Requests to Gong through the host, and Gong's error statuses mapped to
//! `provider-error`.

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
    let mut headers = vec![("accept".to_string(), "application/json".to_string())];
    if body.is_some() {
        headers.push(("content-type".to_string(), "application/json".to_string()));
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
        401 => ProviderError::Unauthorized(format!(
            "Gong rejected the credential ({detail}); check the access key and secret, or re-authorize the connection"
        )),
        403 => ProviderError::Unauthorized(format!(
            "the credential is valid but lacks permission for {path} ({detail}); grant the API scope in Gong"
        )),
        404 => ProviderError::NotFound(format!("{path}: {detail}")),
        _ => ProviderError::Remote(RemoteError { status, message: format!("{path}: {detail}") }),
    }
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
