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
pub use terapi_platform;
pub use terapi_serve;
pub use terapi_store;
pub use terapi_store_postgres;
pub use tokio_postgres;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use terapi_platform::{ComponentSource, Platform, PlatformConfig};
use terapi_store::SqliteStore;

/// One multi-threaded runtime for the whole test binary, so the host's
/// pooled HTTP connections never outlive the runtime they were made on.
pub fn block_on<F: Future>(future: F) -> F::Output {
    static TOKIO: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    TOKIO
        .get_or_init(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime"))
        .block_on(future)
}

/// The host's defaults with private egress allowed: the fake Gong listens
/// on loopback, which the default policy refuses (the egress tests use
/// `RuntimeConfig::default()` to show that).
pub fn loopback_runtime() -> RuntimeConfig {
    RuntimeConfig { egress_policy: terapi_host::EgressPolicy::allow_private(), ..RuntimeConfig::default() }
}

pub fn host() -> &'static Runtime {
    static HOST: OnceLock<Runtime> = OnceLock::new();
    HOST.get_or_init(|| Runtime::new(loopback_runtime()).expect("host runtime"))
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

/// A fresh, private data directory for one test.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("terapi-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Compiled components are cached here, so each platform a test builds
/// loads the component in milliseconds instead of compiling it again.
fn component_cache() -> PathBuf {
    std::env::temp_dir().join(format!("terapi-e2e-cache-{}", std::process::id()))
}

/// The platform as an embedder builds it: the repository's providers.yaml,
/// the Gong component for gong and gong-oauth, a SQLite store in `dir`.
pub fn platform_in(dir: &Path) -> Platform {
    platform_with(dir, providers().clone(), loopback_runtime())
}

pub fn platform_with(dir: &Path, providers: Providers, runtime: RuntimeConfig) -> Platform {
    platform_on(Arc::new(SqliteStore::open_in(dir).expect("store opens")), providers, runtime)
}

fn platform_on(store: Arc<dyn terapi_store::Store>, providers: Providers, runtime: RuntimeConfig) -> Platform {
    platform_full(store, providers, runtime, Default::default())
}

/// `platform_with` with OAuth apps, so that sessions refresh their tokens.
pub fn platform_with_oauth(
    dir: &Path,
    providers: Providers,
    oauth_clients: std::collections::BTreeMap<String, terapi_host::OAuthClient>,
) -> Platform {
    let store = Arc::new(SqliteStore::open_in(dir).expect("store opens"));
    platform_full(store, providers, loopback_runtime(), oauth_clients)
}

fn platform_full(
    store: Arc<dyn terapi_store::Store>,
    providers: Providers,
    runtime: RuntimeConfig,
    oauth_clients: std::collections::BTreeMap<String, terapi_host::OAuthClient>,
) -> Platform {
    Platform::new(PlatformConfig {
        runtime: RuntimeConfig { cache_dir: Some(component_cache()), ..runtime },
        providers,
        components: vec![gong_source()],
        store,
        oauth_clients,
    })
    .expect("platform starts")
}

/// The test PostgreSQL server (`scripts/test.sh` starts one and sets this).
pub fn test_database_url() -> String {
    std::env::var("TERAPI_TEST_DATABASE_URL").expect(
        "TERAPI_TEST_DATABASE_URL is not set: run ./scripts/test.sh, which starts a PostgreSQL server for the tests",
    )
}

/// A new, empty database on the test server; its URL.
pub async fn fresh_database(name: &str) -> String {
    let admin = test_database_url();
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("test PostgreSQL");
    tokio::spawn(connection);
    let database = format!("t_{}_{name}", std::process::id()).to_lowercase().replace('-', "_");
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {database}")).await.expect("drop database");
    client.batch_execute(&format!("CREATE DATABASE {database}")).await.expect("create database");
    match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{database}"),
        None => panic!("TERAPI_TEST_DATABASE_URL has no database name: {admin}"),
    }
}

/// The platform on PostgreSQL at `url`, with the master key of `dir`
/// (platforms given the same `dir` share a key, like hosts given one
/// TERAPI_MASTER_KEY).
pub async fn postgres_platform(url: &str, dir: &Path, providers: Providers, runtime: RuntimeConfig) -> Platform {
    let key = terapi_store::MasterKey::from_env_or_file(dir).expect("master key");
    let store = terapi_store_postgres::PostgresStore::open(url, key, 8).await.expect("PostgreSQL store opens");
    platform_on(Arc::new(store), providers, runtime)
}

/// The platform on a fresh database of the test PostgreSQL (named `name`),
/// as an embedder on PostgreSQL runs it: for tests run on both stores.
pub async fn fresh_postgres_platform(name: &str) -> Platform {
    let url = fresh_database(name).await;
    let dir = fresh_dir(&format!("{name}-postgres"));
    postgres_platform(&url, &dir, providers().clone(), loopback_runtime()).await
}

fn gong_source() -> ComponentSource {
    ComponentSource {
        providers: vec!["gong".into(), "gong-oauth".into()],
        origin: "provider_gong.wasm".into(),
        wasm: std::borrow::Cow::Borrowed(terapi_artifacts::PROVIDER_GONG),
    }
}

/// A query for every record of `model` of `connection`, deleted ones too,
/// in change order (up to 1,000 a page).
pub fn all_records_query(connection: &str, model: &str) -> terapi_store::RecordQuery {
    terapi_store::RecordQuery {
        connection_id: connection.into(),
        model: model.into(),
        modified_after_ms: None,
        cursor: None,
        limit: 1000,
        include_deleted: true,
        actions: Vec::new(),
        ids: Vec::new(),
    }
}

/// Every stored record id of `model`, oldest first.
pub async fn stored_ids(platform: &Platform, connection: &str, model: &str) -> Vec<String> {
    let mut query = terapi_store::RecordQuery {
        connection_id: connection.into(),
        model: model.into(),
        modified_after_ms: None,
        cursor: None,
        limit: 1000,
        include_deleted: false,
        actions: Vec::new(),
        ids: Vec::new(),
    };
    let mut ids = Vec::new();
    loop {
        let page = platform.store().records(&query).await.expect("records");
        for record in page.records {
            let value: serde_json::Value = serde_json::from_str(&record.json).expect("stored JSON");
            assert_eq!(value["id"], record.id.as_str(), "the stored id is the record's");
            ids.push(record.id);
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return ids,
        }
    }
}
