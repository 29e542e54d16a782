//! TLS to PostgreSQL with rustls, configured the way libpq users expect:
//! `sslmode` (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`)
//! and `sslrootcert` in the URL. tokio-postgres itself parses only the
//! first three modes and no root certificate, so both are taken out of the
//! URL here and turned into a rustls configuration.
//!
//! As in libpq, `prefer` and `require` encrypt without checking who
//! answers (unless `sslrootcert` is given, which makes `require` act as
//! `verify-ca`); `verify-ca` checks the chain against the root
//! certificates; `verify-full` also checks the host name. Without
//! `sslrootcert`, or with `sslrootcert=system`, the system's roots are used.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `None`: the system's roots.
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL or a
/// `key=value` connection string; returns what is left for tokio-postgres.
pub fn split_tls_params(url: &str) -> Result<(String, TlsSettings), String> {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => {
                mode = Some(match value {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode={other} is not a mode; use disable, prefer, require, verify-ca or verify-full"
                        ));
                    }
                });
                Ok(true)
            }
            "sslrootcert" => {
                root_cert = (value != "system").then(|| PathBuf::from(value));
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut parsed = url::Url::parse(url).map_err(|e| format!("not a PostgreSQL URL ({e})"))?;
        let mut kept = Vec::new();
        for (key, value) in parsed.query_pairs() {
            if !take(&key, &value)? {
                kept.push((key.into_owned(), value.into_owned()));
            }
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        parsed.to_string()
    } else {
        let mut kept = Vec::new();
        for pair in url.split_whitespace() {
            match pair.split_once('=') {
                Some((key, value)) if take(key, value.trim_matches('\''))? => {}
                _ => kept.push(pair),
            }
        }
        kept.join(" ")
    };
    let mode = mode.unwrap_or(SslMode::Prefer);
    if root_cert.is_some() && mode == SslMode::Disable {
        return Err("sslrootcert is given but sslmode=disable; drop one of them".into());
    }
    Ok((rest, TlsSettings { mode, root_cert }))
}

impl TlsSettings {
    /// The mode tokio-postgres negotiates with.
    pub fn negotiation(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }

    /// The rustls configuration for this mode (`None`: no TLS at all).
    pub fn client_config(&self) -> Result<Option<rustls::ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verify = match (self.mode, &self.root_cert) {
            (SslMode::Disable, _) => return Ok(None),
            (SslMode::Prefer | SslMode::Require, None) => Check::Nothing,
            (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, Some(_)) | (SslMode::VerifyCa, None) => {
                Check::Chain
            }
            (SslMode::VerifyFull, _) => Check::ChainAndName,
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let config = match verify {
            Check::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly { provider }))
                .with_no_client_auth(),
            Check::Chain | Check::ChainAndName => {
                let (roots, pinned) = self.roots()?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| format!("TLS setup: {e}"))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOrPinned {
                        webpki,
                        pinned,
                        check_name: verify == Check::ChainAndName,
                    }))
                    .with_no_client_auth()
            }
        };
        Ok(Some(config))
    }

    /// The trusted roots, and the certificates of `sslrootcert` as given
    /// (a server may present one of them itself, as libpq accepts).
    fn roots(&self) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), String> {
        let mut roots = RootCertStore::empty();
        let mut pinned = Vec::new();
        match &self.root_cert {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("sslrootcert {}: cannot be read ({e})", path.display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("sslrootcert {}: not PEM certificates ({e})", path.display()))?;
                if certs.is_empty() {
                    return Err(format!("sslrootcert {}: holds no certificate", path.display()));
                }
                for cert in certs {
                    roots
                        .add(cert.clone())
                        .map_err(|e| format!("sslrootcert {}: a certificate was refused ({e})", path.display()))?;
                    pinned.push(cert);
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(
                        "no system root certificates were found; give the server's CA as sslrootcert=/path/ca.pem"
                            .into(),
                    );
                }
            }
        }
        Ok((roots, pinned))
    }
}

/// `verify-ca` and `verify-full`: the chain must lead to a trusted root,
/// and with `check_name` (`verify-full`) the certificate must name the host.
/// As libpq (OpenSSL) does, the server's certificate may also be one of
/// those in `sslrootcert` itself, even a self-signed one marked CA:TRUE,
/// which webpki alone refuses as `CaUsedAsEndEntity`.
#[derive(Debug)]
struct ChainOrPinned {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
    check_name: bool,
}

impl ServerCertVerifier for ChainOrPinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused = match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Ok(verified) => return Ok(verified),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => return Ok(ServerCertVerified::assertion()),
            Err(refused) => refused,
        };
        if !self.pinned.iter().any(|pinned| pinned.as_ref() == end_entity.as_ref()) {
            return Err(refused);
        }
        if self.check_name {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&parsed, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// `prefer`/`require` without a root certificate: encrypted, but whoever
/// answers is believed (libpq's meaning of those modes). Signatures are
/// still checked, so the handshake is a real one.
#[derive(Debug)]
struct EncryptOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
