use super::*;
use crate::secret::Secret;

fn egress(base: &str) -> Egress {
    let creds = Credentials::Basic { username: "key".into(), password: Secret::new("s3cret") };
    let budget = Arc::new(Budget::unlimited());
    let auth = Authorizer::from_credentials(&creds);
    let client = HttpClient::new(Default::default(), Duration::from_secs(1)).unwrap();
    Egress::new(client, Url::parse(base).unwrap(), auth, EgressLimits::default(), budget, vec![])
}

#[test]
fn urls_stay_on_the_base() {
    let e = egress("https://us-1.api.gong.io/api");
    let url = e.url_for("/v2/users", &[("cursor".into(), "a b&c".into())]).unwrap();
    assert_eq!(url.as_str(), "https://us-1.api.gong.io/api/v2/users?cursor=a+b%26c");
    for evil in [
        "https://evil.example/x",
        "//evil.example/x",
        "v2/users",
        "/v2/../../admin",
        "/v2/%2e%2e/admin",
        "/v2/%2E%2e/x",
        "/v2/a%2fb",
        "/v2\\..\\x",
        "/v2/users?x=1",
        "/v2/users#f",
        "/v2/\nHost: evil",
        "",
    ] {
        assert!(matches!(e.url_for(evil, &[]), Err(EgressError::Refused(_))), "{evil:?}");
    }
}

/// `wit/conformance/egress.json`: the rules every host of the world
/// keeps (the Node host under jco runs the same file).
#[test]
fn the_conformance_cases_hold() {
    use serde_json::Value;
    let cases: Value = serde_json::from_str(include_str!("../../../wit/conformance/egress.json")).unwrap();
    let text = |v: &Value| v.as_str().unwrap().to_string();
    for case in cases["base_urls"].as_array().unwrap() {
        let got = crate::connection::parse_base_url(case["given"].as_str().unwrap());
        match (&case["refused"], got) {
            (Value::String(why), Err(e)) => assert!(e.to_string().contains(why.as_str()), "{case}: {e}"),
            (Value::Null, Ok(url)) => assert_eq!(url.as_str(), case["base"], "{case}"),
            (_, got) => panic!("{case}: {got:?}"),
        }
    }
    for case in cases["urls"].as_array().unwrap() {
        let query: Vec<(String, String)> = case["query"]
            .as_array()
            .map(|pairs| pairs.iter().map(|p| (text(&p[0]), text(&p[1]))).collect())
            .unwrap_or_default();
        let base = crate::connection::parse_base_url(case["base"].as_str().unwrap()).unwrap();
        let got = egress(base.as_str()).url_for(case["path"].as_str().unwrap(), &query);
        match (&case["refused"], got) {
            (Value::String(why), Err(EgressError::Refused(e))) => assert!(e.contains(why.as_str()), "{case}: {e}"),
            (Value::Null, Ok(url)) => assert_eq!(url.as_str(), case["url"], "{case}"),
            (_, got) => panic!("{case}: {got:?}"),
        }
    }
    let e = egress("https://api.gong.io");
    for case in cases["headers"].as_array().unwrap() {
        let got = e.headers_for(&[(text(&case["name"]), text(&case["value"]))]);
        match (&case["refused"], got) {
            (Value::String(why), Err(EgressError::Refused(e))) => assert!(e.contains(why.as_str()), "{case}: {e}"),
            (Value::Null, Ok(headers)) => assert_eq!(headers.len(), 1, "{case}"),
            (_, got) => panic!("{case}: {got:?}"),
        }
    }
    for case in cases["authorization"].as_array().unwrap() {
        let given = &case["credentials"];
        let credentials = match given["type"].as_str().unwrap() {
            "basic" => Credentials::Basic {
                username: text(&given["username"]),
                password: Secret::new(given["password"].as_str().unwrap()),
            },
            _ => Credentials::OAuth2 {
                access_token: Secret::new(given["access_token"].as_str().unwrap()),
                refresh_token: None,
                expires_at: None,
            },
        };
        assert_eq!(authorization_header(&credentials).to_str().unwrap(), case["header"], "{case}");
    }
}

#[test]
fn retry_after_is_read_as_seconds_or_as_an_http_date() {
    let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
    assert_eq!(retry_after_value("3", now), Some(Duration::from_secs(3)));
    assert_eq!(retry_after_value(" 1.5 ", now), Some(Duration::from_millis(1500)));
    assert_eq!(retry_after_value("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
    assert_eq!(retry_after_value("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO), "past: now");
    assert_eq!(retry_after_value("Mon, 07 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(86_400)));
    assert_eq!(retry_after_value("-1", now), None);
    assert_eq!(retry_after_value("soon", now), None);
}

#[test]
fn host_only_headers_are_refused_and_the_credential_is_injected() {
    let e = egress("https://api.gong.io");
    for name in ["Authorization", "host", "Cookie", "Proxy-Foo", "Content-Length"] {
        assert!(matches!(e.headers_for(&[(name.into(), "x".into())]), Err(EgressError::Refused(_))), "{name}");
    }
    assert!(e.headers_for(&[("x-ok".into(), "a\r\nb".into())]).is_err());
    let Authorizer::Static(auth) = &e.auth else { panic!("basic auth is static") };
    assert!(auth.is_sensitive());
    assert_eq!(auth.to_str().unwrap(), "Basic a2V5OnMzY3JldA==");
    let debug = format!("{e:?}");
    assert!(!debug.contains("s3cret") && !debug.contains("a2V5OnMzY3JldA"), "{debug}");
}
