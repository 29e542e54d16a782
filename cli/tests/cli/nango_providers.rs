//! Nango's own providers.yaml, loaded whole, and its API-key and client-credentials providers without a component.

use std::path::PathBuf;

use crate::common::*;
use crate::*;

/// Nango's own providers.yaml (the npm package tests/node installs).
pub(crate) fn nangos_providers_yaml() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/node/node_modules/@nangohq/providers/providers.yaml");
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/test.sh (it runs `npm ci --prefix tests/node`)",
        path.display()
    );
    path
}

/// Providers of Nango's file that no component serves (an API_KEY one and
/// an OAUTH2_CC one) through the Connect page and the proxy, against fakes
/// in tests/node/providers.browser.test.mjs; the Auth0 fake speaks TLS with
/// a certificate made here, from a CA terapi is told to trust.
#[test]
fn nangos_api_key_and_client_credentials_providers_connect_and_proxy_without_a_component() {
    let dir = data_dir("serve-nango-providers");
    std::fs::create_dir_all(&dir).unwrap();
    let tls = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nango-providers-tls");
    fake_gong::tls::make_certificates(&tls);

    let nango = nangos_providers_yaml();
    let ca = tls.join("ca.pem");
    let (_server, url, key) = serve_with_key(
        &dir,
        &[
            "--providers",
            "bundled",
            "--providers",
            nango.to_str().unwrap(),
            "--ca-cert",
            ca.to_str().unwrap(),
            "--allow-private-egress",
            "--integration",
            "meilisearch",
            "--integration",
            "auth0-cc",
        ],
        &[],
    );
    node_test(
        "providers.browser.test.mjs",
        &[
            ("TERAPI_HOST", url),
            ("TERAPI_SECRET_KEY", key),
            ("TLS_CERT", tls.join("server.crt").display().to_string()),
            ("TLS_KEY", tls.join("server.key").display().to_string()),
        ],
    );
}

#[test]
fn nangos_providers_yaml_loads_whole_and_providers_list_says_what_terapi_does_with_each() {
    let nango = nangos_providers_yaml();
    let output = terapi(None)
        .args(["--providers", "bundled", "--providers", nango.to_str().unwrap(), "providers", "list"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("1013 entries") && stderr.contains("0 not readable"), "{stderr}");
    let line = |key: &str| stdout.lines().find(|l| l.split_whitespace().next() == Some(key)).unwrap().to_string();
    assert!(line("gong").contains("auth, proxy, syncs, actions"), "{}", line("gong"));
    assert!(line("meilisearch").contains("API_KEY") && line("meilisearch").contains("auth, proxy"));
    let two_step = stdout.lines().find(|l| l.contains("TWO_STEP")).unwrap();
    assert!(two_step.contains("read only") && two_step.contains("not served"), "{two_step}");

    let json = terapi(None)
        .args(["--providers", "bundled", "--providers", nango.to_str().unwrap(), "providers", "list", "--json"])
        .output()
        .unwrap();
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(entries.len(), 1013, "the same entries as the text");
    let entry = |key: &str| entries.iter().find(|e| e["key"] == key).unwrap();
    assert_eq!(entry("gong")["serves"], serde_json::json!(["auth", "proxy", "syncs", "actions"]));
    assert_eq!(entry("meilisearch")["auth_mode"], "API_KEY");
    let served = entries.iter().filter(|e| e["not_served"].is_null()).count();
    assert!(stderr.contains(&format!(": {served} served,")), "as the text says: {served} in {stderr}");
}
