//! Ed25519 signing and verifying keys, and their PASERK ids (`k4.pid`) and
//! serializations (`k4.public`).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, Verifier as _};
use pasetors::keys::AsymmetricPublicKey;
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::version4::V4;

/// Why a key could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes or text are not an Ed25519 public key.
    #[error("not a valid Ed25519 public key")]
    InvalidPublicKey,
    /// A PASERK string was malformed or of another type.
    #[error("not a k4.public PASERK")]
    InvalidPaserk,
}

/// A PASERK `k4.pid` key id: a hash of the public key, safe to publish and log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// Computes the `k4.pid` of an Ed25519 public key (PASERK §pid).
    fn of(public: &[u8; 32]) -> Result<Self, KeyError> {
        let key =
            AsymmetricPublicKey::<V4>::from(public).map_err(|_| KeyError::InvalidPublicKey)?;
        let mut id = String::new();
        Id::from(&key)
            .fmt(&mut id)
            .map_err(|_| KeyError::InvalidPublicKey)?;
        Ok(Self(id))
    }

    /// Wraps a stored id without recomputing it. Only for ids this service wrote itself.
    pub fn from_trusted(id: String) -> Self {
        Self(id)
    }

    /// The `k4.pid.…` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Ed25519 public key together with its id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    id: KeyId,
    key: ed25519_dalek::VerifyingKey,
}

impl PublicKey {
    /// Builds a key from its 32 raw bytes.
    ///
    /// # Errors
    /// [`KeyError::InvalidPublicKey`] when the bytes are not a curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| KeyError::InvalidPublicKey)?;
        Ok(Self {
            id: KeyId::of(bytes)?,
            key,
        })
    }

    /// Builds a key from a `k4.public.…` PASERK.
    ///
    /// # Errors
    /// [`KeyError::InvalidPaserk`] when the text is not one.
    pub fn from_paserk(paserk: &str) -> Result<Self, KeyError> {
        let key =
            AsymmetricPublicKey::<V4>::try_from(paserk).map_err(|_| KeyError::InvalidPaserk)?;
        let bytes: [u8; 32] = key
            .as_bytes()
            .try_into()
            .map_err(|_| KeyError::InvalidPaserk)?;
        Self::from_bytes(&bytes)
    }

    /// The key id (`k4.pid.…`).
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The JWK `x` member: base64url of the raw key (RFC 8037 §2).
    pub fn jwk_x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.as_bytes())
    }

    /// The `k4.public.…` PASERK.
    pub fn paserk(&self) -> String {
        format!("k4.public.{}", self.jwk_x())
    }

    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        // Keys come from our own key set, so `verify_strict`'s weak-key checks buy nothing
        // here; plain `verify` still rejects non-canonical signatures.
        self.key.verify(message, &signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.id.as_str()).finish()
    }
}

/// An Ed25519 signing key. Its `Debug` shows only the id; the secret half is zeroized on drop.
#[derive(Clone)]
pub struct SigningKey {
    public: PublicKey,
    key: ed25519_dalek::SigningKey,
    /// The same key in AWS-LC, which signs in about 60 % of dalek's time (BENCHMARKS.md,
    /// session 15). AWS-LC wipes it when it is freed. `None` only if AWS-LC refused the
    /// key; dalek then signs, with the same result.
    #[cfg(feature = "aws-lc")]
    fast: Option<std::sync::Arc<aws_lc_rs::signature::Ed25519KeyPair>>,
    /// The token footer `{"kid":"k4.pid.…"}`, built once.
    footer: Vec<u8>,
}

impl SigningKey {
    /// Builds a key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let verifying = key.verifying_key();
        let public = PublicKey {
            // A public key derived from a seed is always a valid point.
            id: KeyId::of(verifying.as_bytes()).unwrap_or_else(|_| KeyId(String::new())),
            key: verifying,
        };
        let footer = format!(r#"{{"kid":"{}"}}"#, public.id.as_str()).into_bytes();
        Self {
            #[cfg(feature = "aws-lc")]
            fast: aws_lc_rs::signature::Ed25519KeyPair::from_seed_and_public_key(
                seed,
                public.key.as_bytes(),
            )
            .ok()
            .map(std::sync::Arc::new),
            public,
            key,
            footer,
        }
    }

    /// The 32-byte seed, for encryption at rest. Handle with care.
    pub fn seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.key.to_bytes())
    }

    /// The key id.
    pub fn id(&self) -> &KeyId {
        self.public.id()
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub(crate) fn footer(&self) -> &[u8] {
        &self.footer
    }

    /// Ed25519 (RFC 8032) is deterministic: AWS-LC and dalek give the same signature, so
    /// which one signs changes only the time it takes.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        #[cfg(feature = "aws-lc")]
        if let Some(fast) = &self.fast
            && let Ok(signature) = <[u8; 64]>::try_from(fast.sign(message).as_ref())
        {
            return signature;
        }
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id().as_str())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the `aws-lc` feature, AWS-LC signs: its signatures must be dalek's, bit for
    /// bit, and verify.
    #[test]
    fn signatures_are_dalek_signatures() {
        for seed in [[0u8; 32], [7u8; 32], [0xff; 32]] {
            let key = SigningKey::from_seed(&seed);
            #[cfg(feature = "aws-lc")]
            assert!(key.fast.is_some(), "AWS-LC refused a valid key");
            let dalek = ed25519_dalek::SigningKey::from_bytes(&seed);
            for message in [&b""[..], b"v4.public.", &[0xa5; 1000][..]] {
                let signature = key.sign(message);
                assert_eq!(signature, dalek.sign(message).to_bytes());
                assert!(key.public().verify(message, &signature));
            }
        }
    }

    #[test]
    fn paserk_roundtrip_and_id() {
        let key = SigningKey::from_seed(&[7u8; 32]);
        let public = key.public();
        assert!(public.paserk().starts_with("k4.public."));
        assert!(key.id().as_str().starts_with("k4.pid."));
        let back = PublicKey::from_paserk(&public.paserk()).unwrap();
        assert_eq!(&back, public);
        assert_eq!(back.id(), key.id());
        assert!(PublicKey::from_paserk("k4.local.AAAA").is_err());
        assert!(PublicKey::from_paserk("k4.public.AAAA").is_err());
    }

    #[test]
    fn debug_redacts() {
        let key = SigningKey::from_seed(&[9u8; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains("k4.pid."));
        assert!(!shown.contains("9, 9"));
    }
}
