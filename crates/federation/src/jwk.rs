//! Issuer signing keys: the three algorithms accepted, public JWKs of their key types
//! (RFC 7517 / 7518 / 8037), and bounded JWK Sets.
//!
//! Only public verification keys exist here: RSA (`n`, `e`; modulus 2048 to 8192 bits),
//! EC P-256 and OKP Ed25519. A JWK carrying private members, a JWK for encryption
//! (`use: enc`), a symmetric key (`kty: oct`) or a key whose `alg` member is not the one
//! its type verifies here is skipped, never used.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_core::jose::PublicJwk;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ConfigError, KeySetError};

/// Smallest accepted RSA modulus.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest accepted RSA modulus (ring's verification bound).
pub const MAX_RSA_BITS: usize = 8192;
const MAX_KID_LEN: usize = 256;

/// A JWS algorithm a trusted issuer may sign with. Nothing else can be represented, so
/// `none`, HMAC and the rest are refused wherever an algorithm is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (Kubernetes, GitHub Actions, most OIDC issuers).
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA P-256 with SHA-256 (SPIRE, some OIDC issuers).
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519 (RFC 8037).
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl Algorithm {
    /// All accepted algorithms.
    pub const ALL: [Self; 3] = [Self::Rs256, Self::Es256, Self::EdDsa];

    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm of a JWS `alg` name, if it is one accepted here (exact, case
    /// sensitive as RFC 7515 §4.1.1 says).
    pub fn from_jws(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_jws(s).ok_or_else(|| ConfigError::Algorithm(s.chars().take(32).collect()))
    }
}

/// The public half of an issuer's signing key.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum KeyMaterial {
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// EC P-256 or OKP Ed25519, as the rest of Mayfly reads them.
    Jose(PublicJwk),
}

/// One usable key of an issuer's key set.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuerKey {
    kid: Option<String>,
    pub(crate) material: KeyMaterial,
}

impl fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerKey")
            .field("kid", &self.kid)
            .field("alg", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl IssuerKey {
    /// Reads one public JWK.
    ///
    /// # Errors
    /// [`KeySetError::Malformed`] naming why the key is not usable here.
    pub fn from_jwk(jwk: &Value) -> Result<Self, KeySetError> {
        let obj = jwk
            .as_object()
            .ok_or(KeySetError::Malformed("key is not an object"))?;
        if ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
            .iter()
            .any(|m| obj.contains_key(*m))
        {
            return Err(KeySetError::Malformed("private or symmetric key material"));
        }
        let verifies = obj.get("key_ops").is_none_or(|ops| {
            ops.as_array()
                .is_some_and(|ops| ops.iter().any(|op| op == "verify"))
        });
        if obj.get("use").is_some_and(|u| u != "sig") || !verifies {
            return Err(KeySetError::Malformed("key is not for signatures"));
        }
        let kid = match obj.get("kid") {
            None => None,
            Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_LEN => Some(k.clone()),
            Some(_) => return Err(KeySetError::Malformed("bad kid")),
        };
        let material = match obj.get("kty").and_then(Value::as_str) {
            Some("RSA") => {
                let part = |name: &str| -> Result<Vec<u8>, KeySetError> {
                    let text = obj
                        .get(name)
                        .and_then(Value::as_str)
                        .ok_or(KeySetError::Malformed("RSA key without n or e"))?;
                    let bytes = URL_SAFE_NO_PAD
                        .decode(text)
                        .map_err(|_| KeySetError::Malformed("RSA key n or e not base64url"))?;
                    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
                    Ok(bytes.get(start..).unwrap_or_default().to_vec())
                };
                let (n, e) = (part("n")?, part("e")?);
                let bits = n
                    .first()
                    .map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize);
                if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                    return Err(KeySetError::Malformed("RSA modulus not 2048 to 8192 bits"));
                }
                // ring accepts odd exponents from 3 to 2^33 - 1.
                if e.is_empty() || e.len() > 4 || e.last().is_none_or(|b| b % 2 == 0) || e == [1] {
                    return Err(KeySetError::Malformed("RSA exponent unusable"));
                }
                KeyMaterial::Rsa { n, e }
            }
            Some("EC" | "OKP") => KeyMaterial::Jose(
                PublicJwk::from_json(jwk)
                    .map_err(|_| KeySetError::Malformed("not a P-256 or Ed25519 public key"))?,
            ),
            _ => return Err(KeySetError::Malformed("unsupported key type")),
        };
        let key = Self { kid, material };
        if let Some(alg) = obj.get("alg")
            && alg.as_str() != Some(key.algorithm().as_str())
        {
            return Err(KeySetError::Malformed(
                "key alg is not its type's algorithm",
            ));
        }
        Ok(key)
    }

    /// The key id, if the JWK has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        match &self.material {
            KeyMaterial::Rsa { .. } => Algorithm::Rs256,
            KeyMaterial::Jose(PublicJwk::P256(_)) => Algorithm::Es256,
            KeyMaterial::Jose(PublicJwk::Ed25519(_)) => Algorithm::EdDsa,
        }
    }
}

/// Bounds on a fetched (or inline) key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySetLimits {
    /// Largest response body (key set or discovery document), in bytes.
    pub max_bytes: usize,
    /// Most entries in `keys` (usable or not).
    pub max_keys: usize,
}

impl Default for KeySetLimits {
    /// 64 KiB and 32 keys: real issuers publish a handful of keys in a few KiB.
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024,
            max_keys: 32,
        }
    }
}

/// The usable keys of one JWK Set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<IssuerKey>,
}

impl KeySet {
    /// Reads a JWK Set document (RFC 7517 §5) within `limits`; unusable keys are
    /// skipped (a set may also publish encryption keys).
    ///
    /// # Errors
    /// [`KeySetError::TooLarge`], [`KeySetError::TooManyKeys`],
    /// [`KeySetError::Malformed`], [`KeySetError::NoUsableKey`].
    pub fn from_slice(body: &[u8], limits: KeySetLimits) -> Result<Self, KeySetError> {
        if body.len() > limits.max_bytes {
            return Err(KeySetError::TooLarge {
                max: limits.max_bytes,
            });
        }
        let doc: Value =
            serde_json::from_slice(body).map_err(|_| KeySetError::Malformed("not JSON"))?;
        Self::from_json(&doc, limits)
    }

    /// Reads a parsed JWK Set within `limits` (its size counted as serialized).
    ///
    /// # Errors
    /// As [`KeySet::from_slice`].
    pub fn from_json(doc: &Value, limits: KeySetLimits) -> Result<Self, KeySetError> {
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(KeySetError::Malformed("no keys array"))?;
        if entries.len() > limits.max_keys {
            return Err(KeySetError::TooManyKeys {
                max: limits.max_keys,
            });
        }
        let mut keys = Vec::with_capacity(entries.len());
        for entry in entries {
            match IssuerKey::from_jwk(entry) {
                Ok(key) => keys.push(key),
                Err(e) => tracing::debug!(error = %e, "skipping an issuer key"),
            }
        }
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(Self { keys })
    }

    /// The usable keys.
    pub fn keys(&self) -> &[IssuerKey] {
        &self.keys
    }

    /// Whether a key with this id is held (any key when `kid` is `None`).
    pub fn knows(&self, kid: Option<&str>) -> bool {
        match kid {
            Some(kid) => self.keys.iter().any(|k| k.kid() == Some(kid)),
            None => !self.keys.is_empty(),
        }
    }

    /// The keys a JWS with this `kid` may have been signed with: the ones with that id,
    /// or every key when the header names none.
    pub(crate) fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a IssuerKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none_or(|kid| k.kid() == Some(kid)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa(bits: usize) -> Value {
        let mut n = vec![0xC5u8; bits / 8];
        n[bits / 8 - 1] |= 1;
        json!({"kty": "RSA", "kid": "r", "n": b64(&n), "e": "AQAB"})
    }

    #[test]
    fn rsa_keys_need_2048_bits() {
        assert_eq!(
            IssuerKey::from_jwk(&rsa(1024)).unwrap_err(),
            KeySetError::Malformed("RSA modulus not 2048 to 8192 bits")
        );
        let key = IssuerKey::from_jwk(&rsa(2048)).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Rs256);
        assert_eq!(key.kid(), Some("r"));
        // A leading zero octet is tolerated, not counted.
        let mut n = vec![0u8];
        n.extend(vec![0xC5u8; 256]);
        let jwk = json!({"kty": "RSA", "n": b64(&n), "e": "AQAB"});
        assert!(IssuerKey::from_jwk(&jwk).is_ok());
    }

    #[test]
    fn private_symmetric_encryption_and_mislabelled_keys_are_refused() {
        let mut private = rsa(2048);
        private["d"] = "AAAA".into();
        assert!(IssuerKey::from_jwk(&private).is_err());
        assert!(IssuerKey::from_jwk(&json!({"kty": "oct", "k": "c2VjcmV0"})).is_err());
        let mut enc = rsa(2048);
        enc["use"] = "enc".into();
        assert!(IssuerKey::from_jwk(&enc).is_err());
        let mut ops = rsa(2048);
        ops["key_ops"] = json!(["encrypt"]);
        assert!(IssuerKey::from_jwk(&ops).is_err());
        ops["key_ops"] = json!(["verify"]);
        assert!(IssuerKey::from_jwk(&ops).is_ok());
        let mut ps = rsa(2048);
        ps["alg"] = "PS256".into();
        assert!(IssuerKey::from_jwk(&ps).is_err());
        let mut even = rsa(2048);
        even["e"] = b64(&[2]).into();
        assert!(IssuerKey::from_jwk(&even).is_err());
    }

    #[test]
    fn key_sets_are_bounded_and_skip_unusable_keys() {
        let limits = KeySetLimits::default();
        let set = KeySet::from_json(&json!({"keys": [rsa(1024), rsa(2048)]}), limits).unwrap();
        assert_eq!(set.keys().len(), 1);
        assert_eq!(
            KeySet::from_json(&json!({"keys": [rsa(1024)]}), limits),
            Err(KeySetError::NoUsableKey)
        );
        let many = json!({"keys": vec![rsa(2048); 33]});
        assert_eq!(
            KeySet::from_json(&many, limits),
            Err(KeySetError::TooManyKeys { max: 32 })
        );
        let big = vec![b' '; limits.max_bytes + 1];
        assert_eq!(
            KeySet::from_slice(&big, limits),
            Err(KeySetError::TooLarge { max: 64 * 1024 })
        );
        assert!("HS256".parse::<Algorithm>().is_err());
        assert!("none".parse::<Algorithm>().is_err());
        assert_eq!("EdDSA".parse::<Algorithm>(), Ok(Algorithm::EdDsa));
    }
}
