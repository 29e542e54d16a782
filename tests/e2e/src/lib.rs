//! Harness for the end-to-end tests: the real Gong component in the real host,
//! against a fake Gong on loopback. The component is compiled once per test
//! binary and shared; every test starts its own fake Gong.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use fake_gong::{FakeGong, FakeGongConfig};
use terapi_host::{
    BASE_URL_CONFIG_KEY, Connection, Credentials, PageSink, ProviderComponent, Providers, Runtime, RuntimeConfig,
    Secret, SyncPage, SyncRecord,
};

pub use fake_gong;
pub use terapi_host;
pub use terapi_store;

/// One multi-threaded runtime for the whole test binary, so the host's
/// pooled HTTP connections never outlive the runtime they were made on.
pub fn block_on<F: Future>(future: F) -> F::Output {
    static TOKIO: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    TOKIO
        .get_or_init(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime"))
        .block_on(future)
}

pub fn host() -> &'static Runtime {
    static HOST: OnceLock<Runtime> = OnceLock::new();
    HOST.get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("host runtime"))
}

pub fn gong_component() -> &'static ProviderComponent {
    static GONG: OnceLock<ProviderComponent> = OnceLock::new();
    GONG.get_or_init(|| host().load_component(terapi_artifacts::PROVIDER_GONG).expect("Gong component loads"))
}

pub fn hostile_component() -> &'static ProviderComponent {
    static HOSTILE: OnceLock<ProviderComponent> = OnceLock::new();
    HOSTILE.get_or_init(|| host().load_component(terapi_artifacts::GUEST_HOSTILE).expect("hostile component loads"))
}

/// The text of the repository's own providers.yaml.
pub const PROVIDERS_YAML: &str = include_str!("../../../providers.yaml");

/// The repository's own providers.yaml, as users get it.
pub fn providers() -> &'static Providers {
    static PROVIDERS: OnceLock<Providers> = OnceLock::new();
    PROVIDERS.get_or_init(|| Providers::parse(PROVIDERS_YAML, "providers.yaml").expect("providers.yaml"))
}

pub async fn start_gong(config: FakeGongConfig) -> FakeGong {
    FakeGong::start(config).await.expect("fake Gong starts")
}

/// A `gong` (basic auth) connection to `fake` with the given secret. Each
/// gets its own id, so tests running at once do not share a rate budget.
pub fn connection_with_secret(fake: &FakeGong, secret: &str) -> Connection {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    Connection {
        id: format!("test-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        provider: "gong".into(),
        credentials: Credentials::Basic { username: fake.config().access_key.clone(), password: Secret::new(secret) },
        config: BTreeMap::from([(BASE_URL_CONFIG_KEY.to_string(), fake.base_url())]),
    }
}

pub fn connection(fake: &FakeGong) -> Connection {
    connection_with_secret(fake, &fake.config().access_key_secret.clone())
}

/// Keeps every page, as a store would.
#[derive(Default)]
pub struct CollectingSink {
    pub pages: Vec<(Vec<SyncRecord>, Option<String>)>,
}

impl CollectingSink {
    pub fn records(&self) -> impl Iterator<Item = &SyncRecord> {
        self.pages.iter().flat_map(|(records, _)| records)
    }
}

impl PageSink for CollectingSink {
    async fn accept(&mut self, page: &SyncPage) -> Result<(), String> {
        self.pages.push((page.records.clone(), page.next_checkpoint.clone()));
        Ok(())
    }
}
