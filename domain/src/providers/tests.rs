use super::*;

const GOOD: &str = "gong:\n    display_name: Gong\n    auth_mode: BASIC\n    proxy:\n        base_url: ${connectionConfig.api_base_url_for_customer} || https://api.gong.io\n";

#[test]
fn duplicate_keys_are_refused_with_their_line() {
    let twice = format!("{GOOD}{GOOD}");
    let err = Providers::parse(&twice, "p.yaml").unwrap_err().to_string();
    assert!(err.contains("p.yaml, line 6") && err.contains("`gong` is defined twice"), "{err}");
    let field_twice = GOOD.replace("    auth_mode: BASIC\n", "    auth_mode: BASIC\n    auth_mode: OAUTH2\n");
    let err = Providers::parse(&field_twice, "p.yaml").unwrap_err().to_string();
    assert!(err.contains("line 4") && err.contains("`auth_mode` is defined twice"), "{err}");
}

#[test]
fn parses_a_minimal_entry() {
    let p = Providers::parse(GOOD, "p.yaml").unwrap();
    assert_eq!(p.get("gong").unwrap().auth_mode, AuthMode::Basic);
    let err = p.get("gon").unwrap_err().to_string();
    assert!(err.contains("known providers: gong"), "{err}");
}

/// An entry terapi cannot serve loads; using it says why, and where.
fn refused(text: &str) -> String {
    let p = Providers::parse(text, "p.yaml").unwrap();
    assert!(p.entry("gong").is_ok(), "the entry itself is read");
    p.get("gong").unwrap_err().to_string()
}

#[test]
fn a_bad_enum_names_line_and_field() {
    let err = refused(&GOOD.replace("BASIC", "BASICC"));
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("auth_mode") && err.contains("BASICC") && err.contains("not one Nango defines"), "{err}");
    let err = refused(&GOOD.replace("BASIC", "TWO_STEP"));
    assert!(err.contains("read but not served"), "{err}");
}

#[test]
fn a_bad_template_names_line_and_field() {
    let err = refused(&GOOD.replace("${connectionConfig.api_base_url_for_customer}", "${connectionConfig.x"));
    assert!(err.contains("p.yaml, line 5: gong.proxy.base_url"), "{err}");
}

#[test]
fn oauth2_needs_its_urls() {
    let err = refused(&GOOD.replace("BASIC", "OAUTH2"));
    assert!(err.contains("gong.authorization_url: required"), "{err}");
}

#[test]
fn aliases_are_followed_and_circles_refused() {
    let text = format!(
        "{GOOD}gong-eu:\n    alias: gong\n    display_name: Gong EU\na:\n    alias: b\nb:\n    alias: a\nc:\n    alias: nowhere\n"
    );
    let p = Providers::parse(&text, "p.yaml").unwrap();
    let eu = p.get("gong-eu").unwrap();
    assert_eq!((eu.display_name.as_str(), &eu.auth_mode), ("Gong EU", &AuthMode::Basic));
    let circle = p.get("a").unwrap_err().to_string();
    assert!(circle.contains("circle (a → b → a)"), "{circle}");
    assert!(p.get("c").unwrap_err().to_string().contains("`nowhere` is not an entry"));
    assert_eq!(p.broken().count(), 3);
}

#[test]
fn odd_values_and_unknown_keys_do_not_stop_an_entry() {
    let text = GOOD.to_string()
        + "    authorization_params:\n        prompt: true\n        nested: {a: 1}\n    colour: blue\n    credentials:\n        username:\n            example: 42\n";
    let p = Providers::parse(&text, "p.yaml").unwrap();
    let spec = p.get("gong").unwrap();
    assert_eq!(spec.authorization_params.get("prompt").map(String::as_str), Some("true"));
    assert!(!spec.authorization_params.contains_key("nested"));
    assert_eq!(spec.unknown_keys, ["colour"]);
    assert_eq!(spec.credentials["username"].example.as_deref(), Some("42"));
}
