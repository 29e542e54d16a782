//! Shaping raw requests sent through the proxy.
//!
//! Only cosmetic normalisation happens here. Anything that would leave the
//! connection's origin (an absolute URL, `..`) is passed on untouched on
//! purpose: refusing it is the host's job, and the host does it for every
//! request, whoever built it.

use crate::prelude::*;

use crate::terapi::provider::types::HttpRequest;

pub fn prepare(mut request: HttpRequest) -> HttpRequest {
    let raw = core::mem::take(&mut request.path);
    let (path, inline_query) = split_query(raw.trim());
    request.path = normalize_path(path);
    if let Some(inline_query) = inline_query {
        // Query given inline in the path comes first, as the caller wrote it.
        let mut merged = parse_query(inline_query);
        merged.append(&mut request.query);
        request.query = merged;
    }
    if !has_header(&request.headers, "accept") {
        request.headers.push(("accept".into(), "application/json".into()));
    }
    if request.body.is_some() && !has_header(&request.headers, "content-type") {
        request.headers.push(("content-type".into(), "application/json".into()));
    }
    request
}

fn has_header(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

fn split_query(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

/// `v2/users` and `//v2//users/` become `/v2/users`.
pub fn normalize_path(path: &str) -> String {
    if path.contains("://") {
        return path.to_string();
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segments.join("/"))
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

/// Decodes `%XX` and `+`; a malformed escape is kept as written.
fn percent_decode(text: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::terapi::provider::types::Method;

    fn request(path: &str) -> HttpRequest {
        HttpRequest {
            method: Method::Get,
            path: path.into(),
            query: vec![],
            headers: vec![],
            body: None,
            idempotent: true,
        }
    }

    #[test]
    fn paths_are_normalised() {
        assert_eq!(normalize_path("v2/users"), "/v2/users");
        assert_eq!(normalize_path("//v2//users/"), "/v2/users");
        assert_eq!(normalize_path(""), "/");
    }

    #[test]
    fn absolute_urls_are_left_for_the_host_to_refuse() {
        assert_eq!(prepare(request("https://evil.example/x")).path, "https://evil.example/x");
    }

    #[test]
    fn inline_query_moves_into_the_query_list() {
        let mut r = request("/v2/calls?fromDateTime=2024-01-01T00%3A00%3A00Z&x");
        r.query.push(("cursor".into(), "c".into()));
        let r = prepare(r);
        assert_eq!(r.path, "/v2/calls");
        assert_eq!(
            r.query,
            vec![
                ("fromDateTime".into(), "2024-01-01T00:00:00Z".into()),
                ("x".into(), "".into()),
                ("cursor".into(), "c".into())
            ]
        );
        assert!(r.headers.contains(&("accept".into(), "application/json".into())));
    }

    #[test]
    fn malformed_escapes_survive() {
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
        assert_eq!(percent_decode("%e2%9c%93"), "✓");
    }
}
