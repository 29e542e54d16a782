//! Secrets at rest: XChaCha20-Poly1305 under a 256-bit master key kept outside
//! the database (an env var, or a key file created with mode 0600). Each
//! ciphertext is bound to its connection id (associated data), so sealed
//! credentials cannot be swapped between rows.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use serde::{Deserialize, Serialize};
use terapi_domain::{Credentials, Secret};

use crate::StoreError;

/// The secret part of a credential, as sealed.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum SealedCredentials {
    Basic { username: String, password: String },
    Oauth2 { access_token: String, refresh_token: Option<String>, expires_at: Option<u64> },
    ApiKey { api_key: String },
    Oauth2ClientCredentials { client_id: String, client_secret: String },
}

pub const KEY_ENV_VAR: &str = "TERAPI_MASTER_KEY";
pub const KEY_FILE: &str = "master.key";
const KEY_CHECK_AAD: &[u8] = b"terapi:key-check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"terapi key check v1";
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;

#[derive(Clone)]
pub struct MasterKey(XChaCha20Poly1305);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A key given as base64 of 32 bytes (what `master.key` holds).
    /// A new random key, as `TERAPI_MASTER_KEY` takes it (base64 of 32
    /// bytes): for a fleet sharing one PostgreSQL store.
    pub fn generate_base64() -> String {
        STANDARD.encode(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    pub fn from_base64(text: &str) -> Result<Self, StoreError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| StoreError::Key(format!("{KEY_ENV_VAR} (or the key file) is not base64")))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| StoreError::Key("the master key must be 32 bytes (44 base64 characters)".into()))?;
        Ok(MasterKey(XChaCha20Poly1305::new(&bytes.into())))
    }

    /// `TERAPI_MASTER_KEY` if set; otherwise `DATA_DIR/master.key`, created
    /// with a fresh random key and mode 0600 on first use. A store that
    /// already holds secrets but whose key file is gone stops here: a new key
    /// would make every saved credential unreadable.
    pub fn from_env_or_file(data_dir: &Path) -> Result<Self, StoreError> {
        if let Some(value) = std::env::var_os(KEY_ENV_VAR).filter(|v| !v.is_empty()) {
            return Self::from_base64(&value.to_string_lossy());
        }
        let path = data_dir.join(KEY_FILE);
        // Looked at before the key: a store created after this point was
        // created with a key file another process wrote, which we then read.
        let store_existed = data_dir.join(crate::DATABASE_FILE).exists();
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if store_existed {
                    return Err(StoreError::Key(format!(
                        "{} is missing, but the store beside it holds secrets sealed with it; restore the key file \
                         (or set {KEY_ENV_VAR} to the key). No new key was made, since it could not open them.",
                        path.display()
                    )));
                }
                crate::sqlite::create_private_dir(data_dir)
                    .map_err(|e| StoreError::Key(format!("creating {}: {e}", data_dir.display())))?;
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                match publish_new_private(&path, STANDARD.encode(key).as_bytes()) {
                    Ok(()) => Ok(MasterKey(XChaCha20Poly1305::new(&key))),
                    // Another process made one first: everyone uses theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(&path)
                            .map_err(|e| StoreError::Key(format!("reading {}: {e}", path.display())))?;
                        Self::from_base64(&text)
                    }
                    Err(e) => Err(StoreError::Key(format!("creating {}: {e}", path.display()))),
                }
            }
            Err(e) => Err(StoreError::Key(format!("reading {}: {e}", path.display()))),
        }
    }

    /// A 32-byte secret for `purpose` (signing operator sessions, …) that
    /// only holders of this key can compute and that is never stored:
    /// every server of a fleet sharing the key derives the same one, and a
    /// copy of the database alone cannot. It is the SHA-256 of the AEAD
    /// sealing of `purpose` under a nonce reserved for derivation (sealed
    /// secrets use random nonces).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use sha2::Digest as _;
        let nonce = chacha20poly1305::XNonce::from(*b"terapi-key-derivation-00");
        let sealed = self.0.encrypt(&nonce, purpose.as_bytes()).unwrap_or_default();
        sha2::Sha256::digest(&sealed).into()
    }

    /// Seals a connection's credential, bound to its id: what every store
    /// keeps in place of the secret.
    pub fn seal_credentials(&self, id: &str, credentials: &Credentials) -> Vec<u8> {
        let sealed = match credentials {
            Credentials::Basic { username, password } => {
                SealedCredentials::Basic { username: username.clone(), password: password.expose().to_string() }
            }
            Credentials::OAuth2 { access_token, refresh_token, expires_at } => SealedCredentials::Oauth2 {
                access_token: access_token.expose().to_string(),
                refresh_token: refresh_token.as_ref().map(|t| t.expose().to_string()),
                expires_at: *expires_at,
            },
            Credentials::ApiKey { api_key } => SealedCredentials::ApiKey { api_key: api_key.expose().to_string() },
            Credentials::OAuth2ClientCredentials { client_id, client_secret } => {
                SealedCredentials::Oauth2ClientCredentials {
                    client_id: client_id.clone(),
                    client_secret: client_secret.expose().to_string(),
                }
            }
        };
        // Serialising plain strings cannot fail.
        let plain = serde_json::to_vec(&sealed).unwrap_or_default();
        self.seal(id.as_bytes(), &plain)
    }

    /// The credential sealed for connection `id`.
    pub fn open_credentials(&self, id: &str, sealed: &[u8]) -> Result<Credentials, StoreError> {
        let plain = self.open(id.as_bytes(), sealed).map_err(|_| StoreError::WrongKey)?;
        let sealed: SealedCredentials = serde_json::from_slice(&plain)
            .map_err(|e| StoreError::Corrupt { id: id.to_string(), message: e.to_string() })?;
        Ok(match sealed {
            SealedCredentials::Basic { username, password } => {
                Credentials::Basic { username, password: Secret::new(password) }
            }
            SealedCredentials::Oauth2 { access_token, refresh_token, expires_at } => Credentials::OAuth2 {
                access_token: Secret::new(access_token),
                refresh_token: refresh_token.map(Secret::new),
                expires_at,
            },
            SealedCredentials::ApiKey { api_key } => Credentials::ApiKey { api_key: Secret::new(api_key) },
            SealedCredentials::Oauth2ClientCredentials { client_id, client_secret } => {
                Credentials::OAuth2ClientCredentials { client_id, client_secret: Secret::new(client_secret) }
            }
        })
    }

    /// The value a store keeps to tell, before writing anything, whether it
    /// was given the key it was created with.
    pub fn key_check(&self) -> Vec<u8> {
        self.seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)
    }

    /// Whether `sealed` (from `key_check`) was made with this key.
    pub fn matches(&self, sealed: &[u8]) -> Result<(), StoreError> {
        self.open(KEY_CHECK_AAD, sealed).map(drop).map_err(|_| StoreError::WrongKey)
    }

    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption only fails for inputs over ~256 GiB.
        let ciphertext = self.0.encrypt(&nonce, Payload { msg: plaintext, aad }).unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, ()> {
        match sealed {
            [FORMAT_V1, rest @ ..] if rest.len() > NONCE_LEN => {
                let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
                self.0.decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad }).map_err(|_| ())
            }
            _ => Err(()),
        }
    }
}

/// Creates `path` with mode 0600 and its whole content at once: written to
/// a temporary file, then hard-linked into place, which fails if `path`
/// exists. So no reader ever sees half a key, and no key is clobbered.
fn publish_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let temp = path.with_extension(format!("tmp{}-{}", std::process::id(), rand_suffix()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
    let _ = std::fs::remove_file(&temp);
    linked
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::thread::current().id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_only_with_the_same_key_and_id() {
        let key = MasterKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let other = MasterKey::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        let sealed = key.seal(b"conn-a", b"secret");
        assert_eq!(key.open(b"conn-a", &sealed).unwrap(), b"secret");
        assert!(key.open(b"conn-b", &sealed).is_err());
        assert!(other.open(b"conn-a", &sealed).is_err());
        assert!(key.open(b"conn-a", &sealed[..10]).is_err());
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_ne!(key.seal(b"conn-a", b"secret"), sealed, "fresh nonce each time");
    }

    #[test]
    fn bad_keys_are_clear_errors() {
        assert!(MasterKey::from_base64("not base64!").unwrap_err().to_string().contains("base64"));
        assert!(MasterKey::from_base64(&STANDARD.encode([1u8; 16])).unwrap_err().to_string().contains("32 bytes"));
    }
}
