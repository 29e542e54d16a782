//! Property-based fuzzing of what users and remotes control on the host side:
//! providers.yaml, `${connectionConfig.x}` templates, and guest request paths.
//! CI runs a short smoke (the default case count); run longer with e.g.
//! `PROPTEST_CASES=200000 cargo test -p terapi-host --test fuzz --release`.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use terapi_host::egress::{Authorizer, Egress};
use terapi_host::limits::Budget;
use terapi_host::template::Template;
use terapi_host::{Credentials, EgressLimits, Providers, Secret};

const SHIPPED: &str = include_str!("../../providers.yaml");

fn egress() -> Egress {
    let creds = Credentials::Basic { username: "k".into(), password: Secret::new("s") };
    let base = url::Url::parse("https://us-44392.api.gong.io/api").unwrap();
    let auth = Authorizer::from_credentials(&creds);
    Egress::new(
        terapi_host::HttpClient::new(Default::default(), std::time::Duration::from_secs(1)).unwrap(),
        base,
        auth,
        EgressLimits::default(),
        Arc::new(Budget::unlimited()),
        vec![],
    )
}

/// The CI smoke's case count, or `PROPTEST_CASES` for a longer run.
fn cases(smoke: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(smoke)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), ..ProptestConfig::default() })]

    #[test]
    fn providers_yaml_never_panics_on_any_text(text in "\\PC{0,400}") {
        let _ = Providers::parse(&text, "fuzz.yaml");
    }

    #[test]
    fn providers_yaml_never_panics_on_a_mutated_real_file(at in 0usize..SHIPPED.len(), cut in 0usize..40, insert in "[ -~\\n\\t]{0,12}") {
        let at = (0..=at).rev().find(|i| SHIPPED.is_char_boundary(*i)).unwrap_or(0);
        let end = (at + cut).min(SHIPPED.len());
        let end = (end..=SHIPPED.len()).find(|i| SHIPPED.is_char_boundary(*i)).unwrap_or(SHIPPED.len());
        let mutated = format!("{}{}{}", &SHIPPED[..at], insert, &SHIPPED[end..]);
        if let Err(e) = Providers::parse(&mutated, "fuzz.yaml") {
            prop_assert!(e.to_string().starts_with("fuzz.yaml"));
        }
    }

    #[test]
    fn templates_never_panic(text in "\\PC{0,80}", value in "\\PC{0,40}") {
        if let Ok(template) = Template::parse(&text) {
            let config: BTreeMap<_, _> = template.variables().map(|v| (v.to_string(), value.clone())).collect();
            let _ = template.render(&config);
            let _ = template.to_string();
        }
    }

    #[test]
    fn a_spliced_value_never_changes_the_host(value in "\\PC{0,40}") {
        let template = Template::parse("https://${connectionConfig.sub}.example.com/api").unwrap();
        let config = BTreeMap::from([("sub".to_string(), value)]);
        if let Ok(rendered) = template.render(&config)
            && let Ok(url) = url::Url::parse(&rendered) {
                let host = url.host_str().unwrap_or_default().to_string();
                prop_assert!(host.ends_with(".example.com") || host == "example.com", "{rendered} -> {host}");
                prop_assert!(url.path().starts_with("/api"));
            }
    }

    #[test]
    fn a_guest_path_never_leaves_the_base_url(path in "(/|%2[eEfF]|\\.|\\\\|[a-z]|//|\\?|#|@|:|%|[\\x00-\\x20]|\\PC){0,24}", key in "\\PC{0,8}", value in "\\PC{0,8}") {
        let egress = egress();
        if let Ok(url) = egress.url_for(&path, &[(key, value)]) {
            prop_assert_eq!(url.origin(), egress.base_url().origin());
            prop_assert!(url.path().starts_with("/api/"), "{} -> {}", path, url);
            prop_assert!(!url.path().split('/').any(|s| s == ".." || s == "."), "{} -> {}", path, url);
        }
    }
}
