//! PostgreSQL over TLS, as managed databases require it: a server that
//! takes TLS connections only, with a certificate signed by a CA made here.

use std::path::{Path, PathBuf};
use std::process::Command;

use terapi_e2e::terapi_store::MasterKey;
use terapi_e2e::terapi_store::prelude::*;
use terapi_e2e::terapi_store_postgres::PostgresStore;
use terapi_e2e::*;

fn other_ca(dir: &Path) -> PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let path = dir.join("other-ca.pem");
    std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
    path
}

/// A PostgreSQL server of its own, stopped and removed when dropped.
pub(crate) struct OwnPostgres {
    pub(crate) url: String,
    pub(crate) data: String,
}

impl OwnPostgres {
    pub(crate) fn start(args: &[&str]) -> OwnPostgres {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres.sh");
        let output = Command::new("bash").arg(&script).arg("start").args(args).output().unwrap();
        assert!(output.status.success(), "postgres.sh start: {}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8(output.stdout).unwrap();
        let var = |name: &str| {
            text.lines().find_map(|l| l.strip_prefix(&format!("export {name}="))).unwrap().trim().to_string()
        };
        OwnPostgres { url: var("TERAPI_TEST_DATABASE_URL"), data: var("TERAPI_TEST_PGDATA") }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres.sh");
        let _ = Command::new("bash").arg(script).args(["stop", &self.data]).output();
    }
}

fn key() -> MasterKey {
    MasterKey::from_base64("AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=").unwrap()
}

async fn open(url: &str) -> Result<PostgresStore, String> {
    PostgresStore::open(url, key(), 2).await.map_err(|e| e.to_string())
}

async fn refused(url: &str) -> String {
    match open(url).await {
        Ok(_) => panic!("{url} was accepted"),
        Err(e) => e,
    }
}

#[test]
fn a_tls_only_postgres_is_reached_with_verify_full_and_a_wrong_ca_is_refused() {
    block_on(async {
        let dir = fresh_dir("pg-tls");
        std::fs::create_dir_all(&dir).unwrap();
        terapi_e2e::fake_gong::tls::make_certificates(&dir);
        let server = OwnPostgres::start(&["--tls", dir.to_str().unwrap()]);
        let ca = dir.join("ca.pem");
        let with = |query: &str| format!("{}?{query}", server.url);

        // verify-full: the chain leads to our CA and the certificate names
        // 127.0.0.1. The server takes TLS only, so this is TLS.
        let store = open(&with(&format!("sslmode=verify-full&sslrootcert={}", ca.display()))).await.unwrap();
        store.create_api_key("ab".repeat(32).as_str(), "tls").await.unwrap();
        assert_eq!(store.api_keys().await.unwrap().len(), 1);
        drop(store);
        // verify-ca and require work too; the default (prefer) takes TLS
        // when the server offers it.
        open(&with(&format!("sslmode=verify-ca&sslrootcert={}", ca.display()))).await.unwrap();
        open(&with("sslmode=require")).await.unwrap();
        open(&server.url).await.unwrap();

        // A CA that did not sign the server's certificate is refused, and
        // the error says what to check.
        let other = other_ca(&dir);
        let error = refused(&with(&format!("sslmode=verify-full&sslrootcert={}", other.display()))).await;
        assert!(error.contains("certificate") && error.contains("sslrootcert"), "{error}");
        // Without TLS the server refuses, and its reason is in the error.
        let error = refused(&with("sslmode=disable")).await;
        assert!(error.contains("no pg_hba.conf entry") && error.contains("no encryption"), "{error}");
        // Modes libpq does not have are named.
        let error = refused(&with("sslmode=verify-everything")).await;
        assert!(error.contains("sslmode=verify-everything is not a mode"), "{error}");
        let error = refused(&with("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")).await;
        assert!(error.contains("/nonexistent/ca.pem") && error.contains("cannot be read"), "{error}");
        assert!(!error.contains("password"), "{error}");
    });
}

/// libpq accepts `verify-full` with `sslrootcert` set to the server's own
/// self-signed certificate, even one marked CA:TRUE (as `openssl req
/// -x509` makes them); so must terapi, and the name is still checked.
#[test]
fn verify_full_accepts_the_servers_own_self_signed_certificate_as_its_root() {
    block_on(async {
        let dir = fresh_dir("pg-tls-self-signed");
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        let server = OwnPostgres::start(&["--tls", dir.to_str().unwrap()]);
        let root = dir.join("server.crt");
        let with = |query: &str| format!("{}?{query}", server.url);

        let by_name =
            with(&format!("sslmode=verify-full&sslrootcert={}", root.display())).replace("127.0.0.1", "localhost");
        let store = open(&by_name).await.unwrap_or_else(|e| panic!("libpq accepts this: {e}"));
        store.create_api_key("cd".repeat(32).as_str(), "tls").await.unwrap();
        open(&with(&format!("sslmode=verify-ca&sslrootcert={}", root.display()))).await.unwrap();
        // Reached by a name the certificate does not hold, verify-full refuses.
        let error = refused(&with(&format!("sslmode=verify-full&sslrootcert={}", root.display()))).await;
        assert!(error.contains("certificate"), "{error}");
        // And a CA that is not the server's own is refused.
        let other = other_ca(&dir);
        let error = refused(&with(&format!("sslmode=verify-full&sslrootcert={}", other.display()))).await;
        assert!(error.contains("sslrootcert"), "{error}");
    });
}
