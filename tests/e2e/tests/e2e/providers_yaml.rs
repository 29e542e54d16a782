//! providers.yaml as shipped, and what a broken one tells its author.

use terapi_e2e::providers;
use terapi_e2e::terapi_host::{AuthMode, Providers};

#[test]
fn the_shipped_file_describes_gong_both_ways() {
    let gong = providers().get("gong").unwrap();
    assert_eq!(gong.auth_mode, AuthMode::Basic);
    let gong_proxy = gong.proxy.as_ref().unwrap();
    assert_eq!(gong_proxy.base_url, "${connectionConfig.api_base_url_for_customer} || https://api.gong.io");
    let limit = gong_proxy.rate_limit.unwrap();
    assert_eq!((limit.per_second, limit.per_day), (Some(3), Some(10_000)));
    assert_eq!(gong.credentials["username"].title.as_deref(), Some("Access Key"));

    let oauth = providers().get("gong-oauth").unwrap();
    assert_eq!(oauth.auth_mode, AuthMode::OAuth2);
    assert_eq!(oauth.token_url.as_deref(), Some("https://app.gong.io/oauth2/generate-customer-token"));
    assert_eq!(oauth.token_response_metadata, ["api_base_url_for_customer"]);
    assert_eq!(oauth.token_request_auth_method.as_deref(), Some("basic"));
}

/// What a file's author is told: the whole file's error (YAML that does
/// not parse), or the first of its Gong entries' (each entry loads on its
/// own; using a broken one says why).
fn problem(text: &str) -> String {
    match Providers::parse(text, "providers.yaml") {
        Err(e) => e.to_string(),
        Ok(providers) => ["gong", "gong-oauth"]
            .iter()
            .find_map(|key| providers.get(key).err())
            .map(|e| e.to_string())
            .unwrap_or_default(),
    }
}

#[test]
fn a_malformed_file_names_the_line_and_the_field() {
    let shipped = terapi_e2e::PROVIDERS_YAML;
    let cases = [
        (shipped.replacen("auth_mode: BASIC", "auth_mode: BASICS", 1), "auth_mode", "BASICS"),
        (shipped.replacen("    proxy:\n", "    proxi:\n", 1), "gong.proxy", "no `proxy.base_url`"),
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
        let error = problem(&text);
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
    let error = problem(&broken);
    assert!(error.contains(&format!("line {line}")), "expected line {line}: {error}");
}

/// Nango's own providers.yaml (@nangohq/providers 0.71.10, which
/// tests/node installs) loads whole: every entry is read, aliases
/// followed, and each auth mode counted; terapi serves BASIC, API_KEY,
/// OAUTH2 and OAUTH2_CC entries whose fields it can fill in.
#[test]
fn nangos_whole_providers_yaml_loads_with_every_auth_mode_counted() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/node_modules/@nangohq/providers/providers.yaml");
    let nango =
        Providers::load(&path).unwrap_or_else(|e| panic!("{e} (run ./scripts/test.sh: it installs tests/node)"));
    assert_eq!(nango.broken().count(), 0, "{:?}", nango.broken().collect::<Vec<_>>());
    let mut modes = std::collections::BTreeMap::<String, usize>::new();
    for (_, spec) in nango.iter() {
        *modes.entry(spec.auth_mode.as_str().to_string()).or_default() += 1;
    }
    let expected: std::collections::BTreeMap<String, usize> = [
        ("OAUTH2", 354),
        ("API_KEY", 332),
        ("OAUTH2_CC", 112),
        ("BASIC", 99),
        ("TWO_STEP", 66),
        ("MCP_OAUTH2", 30),
        ("JWT", 4),
        ("OAUTH1", 4),
        ("BILL", 2),
        ("MCP_OAUTH2_GENERIC", 2),
        ("NONE", 2),
        ("APP", 1),
        ("AWS_SIGV4", 1),
        ("CUSTOM", 1),
        ("INSTALL_PLUGIN", 1),
        ("SIGNATURE", 1),
        ("TBA", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(modes, expected);
    assert_eq!(modes.values().sum::<usize>(), 1013);
    let served = nango.iter().filter(|(_, spec)| spec.not_served.is_none()).count();
    assert_eq!(served, 878, "entries terapi can connect to");
    // Every entry of a mode terapi does not serve says so; none of the
    // served modes is refused for its mode.
    for (key, spec) in nango.iter() {
        let served_mode =
            matches!(spec.auth_mode, AuthMode::Basic | AuthMode::ApiKey | AuthMode::OAuth2 | AuthMode::OAuth2Cc);
        let reason = spec.not_served.as_deref().unwrap_or("");
        assert_eq!(served_mode, !reason.contains("not served by terapi"), "{key}: {reason}");
    }
    // An alias takes the base's fields under its own.
    let lyric = nango.entry("adp-lyric").unwrap();
    assert_eq!((lyric.display_name.as_str(), &lyric.auth_mode), ("ADP Lyric", &AuthMode::OAuth2Cc));
    assert_eq!(lyric.token_url.as_deref(), Some("https://accounts.adp.com/auth/oauth/v2/token"));
    // Placeholders of the forms Nango's file uses parse: a bare
    // `${apiSubdomain}` (aws) and a dotted `${connectionConfig.installation.apiEndPoint}` (teamwork).
    for key in ["aws", "teamwork"] {
        let reason = nango.entry(key).unwrap().not_served.clone().unwrap_or_default();
        assert!(!reason.contains("base_url"), "{key}: {reason}");
    }
    let meilisearch = nango.get("meilisearch").unwrap();
    assert_eq!(meilisearch.auth_mode, AuthMode::ApiKey);
    assert_eq!(meilisearch.proxy.as_ref().unwrap().verification.as_ref().unwrap().endpoints, ["/version"]);

    // Both files, terapi's first: its Gong entries (with Gong's limits) win.
    let both = terapi_e2e::providers().clone().merged_over(nango);
    let gong = both.get("gong").unwrap();
    assert!(gong.proxy.as_ref().unwrap().rate_limit.is_some(), "terapi's gong entry, not Nango's");
    assert!(both.get("meilisearch").is_ok());
}
