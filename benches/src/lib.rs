//! What the benchmarks share: the fake Gong, a host with rate limits off, and
//! the native baseline the component is compared with. The baseline lives
//! here, not in the product: it is the same work (same reqwest client, same
//! Gong parsing code, compiled natively) without the sandbox.

use std::collections::BTreeMap;

use base64::Engine as _;
use fake_gong::{FakeGong, FakeGongConfig, fixtures};
use provider_gong::gong::{User, UserEnvelope, UsersPage};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use terapi_host::{BASE_URL_CONFIG_KEY, Connection, Credentials, PageSink, Runtime, RuntimeConfig, Secret, SyncPage};

pub async fn fake_gong(users: usize) -> FakeGong {
    let config = FakeGongConfig { users: fixtures::users(users), ..FakeGongConfig::default() };
    FakeGong::start(config).await.expect("fake Gong starts")
}

/// Rate limits off: the fake is local and the point is the host's own cost.
pub fn runtime(pooled: bool) -> Runtime {
    Runtime::new(RuntimeConfig {
        rate_limits: false,
        pooled_instances: pooled.then_some(64),
        // The fake Gong is on loopback.
        egress_policy: terapi_host::EgressPolicy::allow_private(),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

pub fn connection(gong: &FakeGong) -> Connection {
    Connection {
        id: "bench".into(),
        provider: "gong".into(),
        credentials: Credentials::Basic {
            username: gong.config().access_key.clone(),
            password: Secret::new(gong.config().access_key_secret.clone()),
        },
        config: BTreeMap::from([(BASE_URL_CONFIG_KEY.to_string(), gong.base_url())]),
    }
}

/// The native equivalent of the component's HTTP setup.
pub struct Native {
    pub client: reqwest::Client,
    pub base: String,
    pub authorization: HeaderValue,
}

impl Native {
    pub fn new(client: reqwest::Client, gong: &FakeGong) -> Native {
        let pair = format!("{}:{}", gong.config().access_key, gong.config().access_key_secret);
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        let authorization = HeaderValue::from_str(&format!("Basic {encoded}")).expect("header");
        Native { client, base: gong.base_url(), authorization }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> impl AsRef<[u8]> + use<> {
        let url = url::Url::parse_with_params(&format!("{}{path}", self.base), query).expect("url");
        let response = self
            .client
            .get(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .expect("request");
        response.bytes().await.expect("body")
    }

    /// `get-user` without the sandbox.
    pub async fn get_user(&self, id: &str) -> String {
        let body = self.get(&format!("/v2/users/{id}"), &[]).await;
        let envelope: UserEnvelope = serde_json::from_slice(body.as_ref()).expect("user");
        serde_json::to_string(&User::from(envelope.user)).expect("json")
    }

    /// The `users` sync without the sandbox: every page, every record mapped
    /// and encoded the same way; returns the record count.
    pub async fn sync_users(&self) -> u64 {
        let mut cursor: Option<String> = None;
        let mut records = 0;
        loop {
            let query: Vec<(&str, &str)> = cursor.as_deref().map(|c| ("cursor", c)).into_iter().collect();
            let body = self.get("/v2/users", &query).await;
            let page: UsersPage = serde_json::from_slice(body.as_ref()).expect("page");
            let next = page.records.next_cursor().map(str::to_string);
            for user in page.users {
                let user = User::from(user);
                let json = serde_json::to_string(&user).expect("json");
                std::hint::black_box((user.id, json));
                records += 1;
            }
            match next {
                Some(next) => cursor = Some(next),
                None => return records,
            }
        }
    }
}

/// Counts records and drops them: the sink costs nothing, so the figures are
/// the host's and the component's.
#[derive(Default)]
pub struct CountingSink {
    pub records: u64,
}

impl PageSink for CountingSink {
    async fn accept(&mut self, page: &SyncPage) -> Result<(), String> {
        self.records += page.records.len() as u64;
        std::hint::black_box(page);
        Ok(())
    }
}

/// Peak resident memory of this process since the last `reset_peak_rss`, in
/// bytes (Linux; `None` elsewhere).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn current_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resets the peak (Linux: writing 5 to clear_refs).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The platform a benchmark measures: the repository's providers.yaml and
/// the Gong component serving `gong`, on `store`, with the compiled
/// component cached in `dir`.
pub fn gong_platform(
    store: std::sync::Arc<dyn terapi_store::Store>,
    dir: &std::path::Path,
    rate_limits: bool,
) -> terapi_platform::Platform {
    terapi_platform::Platform::new(terapi_platform::PlatformConfig {
        runtime: RuntimeConfig {
            rate_limits,
            cache_dir: Some(dir.join("cache")),
            egress_policy: terapi_host::EgressPolicy::allow_private(),
            ..RuntimeConfig::default()
        },
        providers: terapi_host::Providers::parse(include_str!("../../providers.yaml"), "providers.yaml")
            .expect("providers.yaml"),
        components: vec![terapi_platform::ComponentSource {
            providers: vec!["gong".into()],
            origin: "provider_gong.wasm".into(),
            wasm: std::borrow::Cow::Borrowed(terapi_artifacts::PROVIDER_GONG),
        }],
        store,
        oauth_clients: Default::default(),
    })
    .expect("platform")
}
