//! providers.yaml as shipped, and what a broken one tells its author.

use terapi_e2e::providers;
use terapi_e2e::terapi_host::{AuthMode, Providers};

#[test]
fn the_shipped_file_describes_gong_both_ways() {
    let gong = providers().get("gong").unwrap();
    assert_eq!(gong.auth_mode, AuthMode::Basic);
    assert_eq!(gong.proxy.base_url, "${connectionConfig.api_base_url_for_customer} || https://api.gong.io");
    let limit = gong.proxy.rate_limit.unwrap();
    assert_eq!((limit.per_second, limit.per_day), (Some(3), Some(10_000)));
    assert_eq!(gong.credentials["username"].title.as_deref(), Some("Access Key"));

    let oauth = providers().get("gong-oauth").unwrap();
    assert_eq!(oauth.auth_mode, AuthMode::OAuth2);
    assert_eq!(oauth.token_url.as_deref(), Some("https://app.gong.io/oauth2/generate-customer-token"));
    assert_eq!(oauth.token_response_metadata, ["api_base_url_for_customer"]);
    assert_eq!(oauth.token_request_auth_method.as_deref(), Some("basic"));
}

#[test]
fn a_malformed_file_names_the_line_and_the_field() {
    let shipped = terapi_e2e::PROVIDERS_YAML;
    let cases = [
        (shipped.replacen("auth_mode: BASIC", "auth_mode: BASICS", 1), "auth_mode", "BASICS"),
        (shipped.replacen("    proxy:\n", "    proxi:\n", 1), "proxy", "missing field"),
        (shipped.replacen("per_second: 3", "per_second: three", 1), "per_second", "invalid"),
        (
            shipped.replacen("|| https://api.gong.io", "|| https://${connectionConfig.x", 1),
            "gong.proxy.base_url",
            "unclosed",
        ),
        (shipped.replacen("token_url: https", "token_urll: https", 1), "gong-oauth.token_url", "required"),
        (shipped.replacen("display_name: Gong (Basic Auth)", "display_name: [unclosed", 1), "line", ""),
    ];
    for (text, field, detail) in cases {
        let error = Providers::parse(&text, "providers.yaml").unwrap_err().to_string();
        assert!(error.starts_with("providers.yaml"), "{error}");
        assert!(error.contains(", line "), "no line in: {error}");
        assert!(error.contains(field) && error.contains(detail), "{field}/{detail} not in: {error}");
    }
}

#[test]
fn the_line_points_at_the_bad_field() {
    let shipped = terapi_e2e::PROVIDERS_YAML;
    let broken = shipped.replacen("auth_mode: BASIC", "auth_mode: BASICS", 1);
    let line = shipped.lines().position(|l| l.contains("auth_mode: BASIC")).unwrap() + 1;
    let error = Providers::parse(&broken, "providers.yaml").unwrap_err().to_string();
    assert!(error.contains(&format!("line {line}")), "expected line {line}: {error}");
}
