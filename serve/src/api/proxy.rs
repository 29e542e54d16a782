//! `ANY /proxy/{path}`: a raw request to the provider through the same
//! egress as the component's own: the connection's base URL, its
//! credential, its rate limits. The base URL cannot be overridden.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, StatusCode};
use axum::response::{IntoResponse, Response};
use terapi_host::{Method, OutboundRequest};

use super::connection_from_headers;
use crate::{ApiError, ServeState};

const HEADER_PREFIX: &str = "nango-proxy-";

pub async fn proxy(
    State(state): State<Arc<ServeState>>,
    Path(path): Path<String>,
    RawQuery(raw_query): RawQuery,
    method: HttpMethod,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if headers.get("base-url-override").is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::bad_request(
            "base_url_override_refused",
            "Base-Url-Override is refused: requests go only to the connection's own provider base URL",
        ));
    }
    let connection = connection_from_headers(&state, &headers).await?;
    let method: Method = method.as_str().parse().map_err(|e: String| ApiError::bad_request("invalid_method", e))?;
    let query = url::form_urlencoded::parse(raw_query.as_deref().unwrap_or("").as_bytes()).into_owned().collect();
    let mut forwarded: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.as_str().strip_prefix(HEADER_PREFIX)?;
            Some((name.to_string(), value.to_str().ok()?.to_string()))
        })
        .collect();
    if let Some(content_type) = headers.get("content-type").and_then(|v| v.to_str().ok())
        && !forwarded.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        forwarded.push(("content-type".into(), content_type.to_string()));
    }
    let request = OutboundRequest {
        method,
        path: format!("/{path}"),
        query,
        headers: forwarded,
        body: (!body.is_empty()).then(|| body.to_vec()),
        idempotent: matches!(method, Method::Get | Method::Put | Method::Delete),
    };
    let session = state.platform.session(&connection.id).await?;
    let answer = session.proxy(request).await.map_err(terapi_platform::PlatformError::from)?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, answer.body).into_response();
    for (name, value) in &answer.headers {
        if matches!(name.as_str(), "content-type" | "retry-after" | "x-ratelimit-remaining")
            && let (Ok(name), Ok(value)) = (name.parse::<axum::http::HeaderName>(), HeaderValue::from_str(value))
        {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}
