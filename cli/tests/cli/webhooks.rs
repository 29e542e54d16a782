//! Gong webhooks received into the store, and serve refusing an unsigned outbound webhook setup.

use std::path::PathBuf;

use fake_gong::fixtures;

use crate::common::*;

#[test]
fn webhooks_store_a_signed_call_once_and_reject_the_rest() {
    use sha2::Digest as _;
    use std::io::BufRead;
    let gong = gong(1);
    let dir = saved_connection(&gong, "webhooks");

    let fixtures_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut server = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args([
            "webhooks",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--connection",
            "acme",
            "--max-body-bytes",
            "65536",
            "--public-url",
            "https://hooks.example.com/webhooks/gong",
            "--public-key",
        ])
        .arg(fixtures_dir.join("webhook-test-public.pem"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url =
        first.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("{first}")).to_string();
    std::thread::spawn(move || lines.for_each(drop)); // keep draining the logs

    let private =
        jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(fixtures_dir.join("webhook-test-private.pem")).unwrap())
            .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let sign_as = |body: &[u8], iat: u64, url: &str| {
        let hash: String = sha2::Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
        let claims = serde_json::json!({ "body_sha256": hash, "iat": iat, "exp": iat + 3600, "webhook_url": url });
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &private).unwrap()
    };
    let sign = |body: &[u8]| sign_as(body, now, "https://hooks.example.com/webhooks/gong");
    let post = |body: Vec<u8>, token: Option<String>| -> u16 {
        tokio().block_on(async {
            let mut request = reqwest::Client::new().post(&url).header("content-type", "application/json").body(body);
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            request.send().await.unwrap().status().as_u16()
        })
    };

    let call = fake_gong::fixtures::extensive_call(&fixtures::call(1));
    let payload = serde_json::to_vec(&serde_json::json!({ "callData": call, "isTest": false })).unwrap();
    let first = sign(&payload);
    assert_eq!(post(payload.clone(), Some(first.clone())), 200);
    assert_eq!(post(payload.clone(), Some(sign(&payload))), 200, "delivered twice");
    // The call is renamed in Gong and delivered again; then the first
    // delivery is replayed: it must not roll the call back.
    let mut renamed = call.clone();
    renamed["metaData"]["title"] = "Renamed after the first delivery".into();
    let newer = serde_json::to_vec(&serde_json::json!({ "callData": renamed, "isTest": false })).unwrap();
    assert_eq!(post(newer.clone(), Some(sign(&newer))), 200);
    assert_eq!(post(payload.clone(), Some(first)), 200, "a replay is acknowledged, not applied");
    let stale = sign_as(&payload, now - 3_600, "https://hooks.example.com/webhooks/gong");
    assert_eq!(post(payload.clone(), Some(stale)), 401, "signed an hour ago");
    let elsewhere = sign_as(&payload, now, "https://attacker.example.net/hook");
    assert_eq!(post(payload.clone(), Some(elsewhere)), 401, "signed for another receiver");
    assert_eq!(post(payload.clone(), None), 401, "unsigned");
    assert_eq!(post(payload.clone(), Some(sign(b"another body"))), 401, "signed for another body");
    assert_eq!(post(payload.clone(), Some("not.a.jwt".into())), 401);
    let huge = vec![b' '; 70_000];
    assert_eq!(post(huge.clone(), Some(sign(&huge))), 413, "over --max-body-bytes");
    assert_eq!(post(b"garbage".to_vec(), Some(sign(b"garbage"))), 400);
    let test = serde_json::to_vec(
        &serde_json::json!({ "callData": fake_gong::fixtures::extensive_call(&fixtures::call(2)), "isTest": true }),
    )
    .unwrap();
    assert_eq!(post(test.clone(), Some(sign(&test))), 200, "a test delivery is acknowledged");
    assert_eq!(post(payload.clone(), Some(sign(&payload))), 200, "still up after garbage");
    let _ = server.kill();
    let _ = server.wait();

    let output = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["records", "list", "GongCallExtensive", "--connection", "acme"])
        .output()
        .unwrap();
    let (stdout, _) = text(&output);
    let ids: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [fixtures::call_id(1)], "stored once; the test delivery not at all");
    let stored: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(stored["metaData"]["title"], "Renamed after the first delivery", "the replay rolled nothing back");
}

#[test]
fn serve_refuses_a_webhook_url_without_a_signing_key() {
    let dir = data_dir("serve-no-signing-key");
    let output = terapi(None)
        .env("TERAPI_DATA_DIR", &dir)
        .args(["serve", "--bind", "127.0.0.1:0", "--webhook-url", "http://127.0.0.1:9/"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(text(&output).1.contains("TERAPI_WEBHOOK_SIGNING_KEY"), "{}", text(&output).1);
}
