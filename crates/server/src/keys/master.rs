//! The master key: encrypts private signing keys at rest with XChaCha20-Poly1305.
//!
//! The key file holds 64 hex characters (32 bytes), e.g. from `openssl rand -hex 32`.
//! Ciphertexts are `nonce (24) ‖ ciphertext+tag`, with the signing key's id as associated
//! data so a ciphertext cannot be swapped onto another key's row.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use chacha20poly1305::aead::Aead as _;
use chacha20poly1305::aead::Payload;
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305, XNonce};
use rand::Rng as _;
use zeroize::Zeroizing;

use crate::config::MasterKeySource;

const NONCE_LEN: usize = 24;

/// Why the master key could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    /// The key file could not be read or written.
    #[error("master key file {path}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not hold 64 hex characters.
    #[error("master key file {0} must hold exactly 64 hex characters (openssl rand -hex 32)")]
    Format(String),
    /// The file is missing and may not be created.
    #[error("master key file {0} does not exist (create it with: openssl rand -hex 32 > FILE)")]
    Missing(String),
    /// The file is readable by others, or by its group while it belongs to this user
    /// (the rule ssh applies to private keys).
    #[error("master key file {path} is too open (mode {mode:03o}): chmod 600 {path}")]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A ciphertext did not decrypt: wrong master key or tampered data.
    #[error("a private key does not decrypt under this master key (wrong key, or tampered data)")]
    Decrypt,
}

/// The master key. Zeroized on drop; `Debug` shows nothing.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Builds a key from raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A key for another purpose, derived from this one (HMAC-SHA-256 with `label`), so
    /// every replica holding the master key derives the same.
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        use hmac::{KeyInit as _, Mac as _};
        let mut out = Zeroizing::new([0u8; 32]);
        if let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0[..]) {
            mac.update(label.as_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        out
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(&mut bytes[..]);
        Self(bytes)
    }

    /// Loads the key file, creating it (mode 0600, with a warning) when allowed.
    ///
    /// # Errors
    /// [`MasterKeyError`] when the file is missing and may not be created, unreadable,
    /// too open (see [`MasterKeyError::TooOpen`]), or malformed.
    pub fn load(source: &MasterKeySource) -> Result<Self, MasterKeyError> {
        let path = &source.path;
        let shown = path.display().to_string();
        match read_private(path) {
            Ok(Err(mode)) => Err(MasterKeyError::TooOpen { path: shown, mode }),
            Ok(Ok(bytes)) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| Self::parse_hex(text.trim()))
                .ok_or(MasterKeyError::Format(shown)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && source.create_if_missing => {
                let key = Self::generate();
                write_new_key_file(path, &key).map_err(|source| MasterKeyError::Io {
                    path: shown.clone(),
                    source,
                })?;
                tracing::warn!(path = %shown, "generated a new development master key; back it up, and use an explicit key file in production");
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(MasterKeyError::Missing(shown))
            }
            Err(source) => Err(MasterKeyError::Io {
                path: shown,
                source,
            }),
        }
    }

    fn parse_hex(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = Zeroizing::new([0u8; 32]);
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            out[i] = u8::try_from(hi * 16 + lo).ok()?;
        }
        Some(Self(out))
    }

    fn to_hex(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(65));
        for b in self.0.iter() {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
        s
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.0).into())
    }

    /// Encrypts `plaintext`, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let nonce = XNonce::from(nonce);
        // Encryption fails only for inputs of gigabytes; ours are 32 bytes.
        let sealed = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`MasterKey::seal`] produced with the same `aad`.
    ///
    /// # Errors
    /// [`MasterKeyError::Decrypt`] for a wrong key, wrong `aad` or tampered data.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, MasterKeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(MasterKeyError::Decrypt);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| MasterKeyError::Decrypt)?;
        self.cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| MasterKeyError::Decrypt)
    }
}

/// Reads a file that must be private: its bytes (zeroized when dropped), or its mode
/// when others may read it, or its group may while it belongs to this user. A file of
/// another owner may be group-readable: that is how a container user is given a key
/// file it does not own (see docker-compose.yml).
fn read_private(path: &Path) -> std::io::Result<Result<Zeroizing<Vec<u8>>, u32>> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let meta = file.metadata()?;
        let mode = meta.mode() & 0o777;
        let ours = meta.uid() == rustix::process::geteuid().as_raw();
        if mode & 0o007 != 0 || (ours && mode & 0o070 != 0) {
            return Ok(Err(mode));
        }
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(128));
    file.read_to_end(&mut bytes)?;
    Ok(Ok(bytes))
}

fn write_new_key_file(path: &Path, key: &MasterKey) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(key.to_hex().as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"secret seed", b"k4.pid.a");
        assert_eq!(&*key.open(&sealed, b"k4.pid.a").unwrap(), b"secret seed");
        assert!(key.open(&sealed, b"k4.pid.b").is_err(), "aad binds the row");
        assert!(
            MasterKey::generate().open(&sealed, b"k4.pid.a").is_err(),
            "other key"
        );
        let mut tampered = sealed.clone();
        tampered[30] ^= 1;
        assert!(key.open(&tampered, b"k4.pid.a").is_err());
        assert!(key.open(&sealed[..10], b"k4.pid.a").is_err());
    }

    #[test]
    fn key_file_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let source = MasterKeySource {
            path: dir.path().join("mayfly.key"),
            create_if_missing: true,
        };
        let first = MasterKey::load(&source).unwrap();
        let second = MasterKey::load(&source).unwrap();
        assert_eq!(*first.0, *second.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&source.path)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(format!("{first:?}").contains("redacted"));
    }

    /// Writes `text` to `path` with owner-only permissions, as an operator should.
    fn write_private(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_files_others_can_read_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_private(&path, &format!("{}\n", "0a".repeat(32)));
        let strict = MasterKeySource {
            path: path.clone(),
            create_if_missing: false,
        };
        for mode in [0o644, 0o640, 0o604, 0o660, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = MasterKey::load(&strict).unwrap_err();
            assert!(
                matches!(err, MasterKeyError::TooOpen { mode: m, .. } if m == mode),
                "{mode:o}"
            );
            assert!(err.to_string().contains("chmod 600"));
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(*MasterKey::load(&strict).unwrap().0, [10u8; 32], "{mode:o}");
        }
    }

    #[test]
    fn missing_or_malformed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let strict = MasterKeySource {
            path: path.clone(),
            create_if_missing: false,
        };
        assert!(matches!(
            MasterKey::load(&strict),
            Err(MasterKeyError::Missing(_))
        ));
        write_private(&path, "abc");
        assert!(matches!(
            MasterKey::load(&strict),
            Err(MasterKeyError::Format(_))
        ));
        write_private(&path, &format!("{}\n", "g".repeat(64)));
        assert!(matches!(
            MasterKey::load(&strict),
            Err(MasterKeyError::Format(_))
        ));
        write_private(&path, &format!("{}\n", "0a".repeat(32)));
        assert_eq!(*MasterKey::load(&strict).unwrap().0, [10u8; 32]);
    }
}
