//! The README's examples, run line by line against the demo fake.

use std::path::PathBuf;

use fake_gong::{FakeGong, FakeGongConfig};

use crate::common::*;

/// The shell words of one README line: single quotes kept together, a
/// comment dropped, `[optional]` brackets taken off (the option is run).
pub(crate) fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut started) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            '#' if !quoted && !started => break,
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words.into_iter().map(|w| w.trim_start_matches('[').trim_end_matches(']').to_string()).collect()
}

/// The lines of the first ```sh block after `heading` in README.md.
pub(crate) fn readme_block(heading: &str) -> Vec<String> {
    let readme = include_str!("../../../README.md");
    let after = &readme[readme.find(heading).unwrap_or_else(|| panic!("README has no `{heading}`"))..];
    let block = &after[after.find("```sh\n").expect("a sh block") + 6..];
    block[..block.find("```").expect("the block ends")].lines().map(str::to_string).collect()
}

/// The README's examples for a Gong account, saved connections and
/// gong-oauth, run as written against the demo's fake Gong (what
/// `fake-gong` serves: `FakeGongConfig::demo`), each return data.
#[test]
fn every_readme_example_returns_data_against_the_demo_fake() {
    use std::io::BufRead;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let gong = tokio().block_on(FakeGong::start(FakeGongConfig::demo(250, 48, now))).unwrap();
    let oauth_gong = tokio()
        .block_on(FakeGong::start(FakeGongConfig {
            oauth: Some(fake_gong::OAuthConfig::default()),
            ..FakeGongConfig::demo(250, 48, now)
        }))
        .unwrap();
    let providers = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("readme-oauth-providers.yaml");
    std::fs::write(&providers, FakeGongConfig::oauth_providers_yaml(&oauth_gong.base_url())).unwrap();
    let dir = data_dir("readme");
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("readme-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();

    let mut ran = Vec::new();
    for (heading, oauth) in [
        ("## Using it against your Gong account", false),
        ("### Saved connections, resumable syncs, stored records", false),
        ("### gong-oauth", true),
    ] {
        for line in readme_block(heading) {
            let words = shell_words(&line);
            // The environment gives what `export` lines would, for the fake.
            let args: Vec<String> = match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                [] | ["export", ..] => continue,
                ["cargo", "run", "--release", "-p", "terapi", "--", args @ ..] | ["terapi", args @ ..] => {
                    args.iter().map(|a| a.to_string()).collect()
                }
                other => panic!("a README line this test cannot run: {other:?}"),
            };
            let mut command = terapi(Some(if oauth { &oauth_gong } else { &gong }));
            command.env("TERAPI_DATA_DIR", &dir).current_dir(&work).args(&args);
            if oauth {
                let client = fake_gong::OAuthConfig::default();
                command
                    .env("TERAPI_PROVIDERS", &providers)
                    .env("GONG_OAUTH_CLIENT_ID", &client.client_id)
                    .env("GONG_OAUTH_CLIENT_SECRET", &client.client_secret);
            }
            let output = if args.get(1).map(String::as_str) == Some("authorize") {
                // The person at the browser: open the printed URL (the fake
                // approves and redirects to terapi's listener).
                let mut child =
                    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
                let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
                let url = stderr.find_map(|l| l.trim().starts_with("http").then(|| l.trim().to_string())).unwrap();
                assert!(url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A53682%2Fcallback"), "{url}");
                let page = tokio().block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() });
                assert!(page.contains("authorized"), "{page}");
                child.wait_with_output().unwrap()
            } else {
                command.output().unwrap()
            };
            let (stdout, stderr) = text(&output);
            assert!(output.status.success(), "`{line}` failed:\n{stdout}\n{stderr}");
            let sub: Vec<&str> = args.iter().map(String::as_str).take(2).collect();
            let data = match sub.as_slice() {
                ["verify"] => stdout.contains("250 users visible"),
                ["sync", "run"] if args.contains(&"--output".to_string()) => {
                    let file = work.join(&args[args.iter().position(|a| a == "--output").unwrap() + 1]);
                    std::fs::read_to_string(file).unwrap().lines().count() == 250
                }
                ["sync", "run"] if args[2] == "users" => stderr.contains("250 records"),
                ["sync", "run"] => stderr.contains("48 records"),
                ["action", "run"] => {
                    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
                    answer["calls"].as_array().is_some_and(|calls| calls.len() == 48)
                }
                ["proxy", ..] => stdout.contains("\"workspaces\""),
                ["connection", "list"] => stdout.contains("acme"),
                ["connection", "authorize"] => stdout.contains("authorized (credential accepted; 250 users visible"),
                ["connection", _] => true,
                ["sync", "status"] => stdout.contains("records=250"),
                ["records", "list"] => stdout.lines().count() == 250,
                other => panic!("no expectation for {other:?}"),
            };
            assert!(data, "`{line}` returned no data:\n{stdout}\n{stderr}");
            ran.push(line);
        }
    }
    assert_eq!(ran.len(), 14, "{ran:#?}");

    // A misspelt model is an error naming the real ones, not 0 records.
    let wrong = terapi(None).env("TERAPI_DATA_DIR", &dir).args(["records", "list", "Users", "-c", "acme"]).output();
    let wrong = wrong.unwrap();
    let (_, stderr) = text(&wrong);
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`Users` is not a model of `acme`") && stderr.contains("GongUser"), "{stderr}");
}
