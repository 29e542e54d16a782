//! Certificates made for one test run: a CA, and a server certificate for
//! 127.0.0.1 and localhost signed by it, for fakes (and a PostgreSQL) that
//! speak TLS to a host told to trust that CA.

use std::path::Path;

/// Writes `ca.pem`, `server.crt` and `server.key` to `dir`.
pub fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).expect("a directory for the test's certificates");
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "terapi test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("the CA certificate");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("a server key");
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server parameters");
    let server_cert = server.signed_by(&server_key, &issuer).expect("the server certificate");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("writing ca.pem");
    std::fs::write(dir.join("server.crt"), server_cert.pem()).expect("writing server.crt");
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).expect("writing server.key");
}
