//! The narrow slice of JOSE Mayfly speaks: compact JWS (RFC 7515) signed with EdDSA
//! (Ed25519, RFC 8037) or ES256 (P-256, RFC 7518 §3.4), public JWKs of those two kinds
//! and their RFC 7638 thumbprints. Used for `private_key_jwt` client assertions
//! (RFC 7523) and DPoP proofs (RFC 9449). No other algorithm exists here, so `none`,
//! HMAC and RSA can never be accepted by accident.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use p256::ecdsa::signature::Verifier as _;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// Longest compact JWS accepted (assertions and proofs are a few hundred bytes).
pub const MAX_JWS_LEN: usize = 8 * 1024;

/// Why a JWS or JWK was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// Not three base64url parts with a JSON header and payload.
    #[error("malformed JWS")]
    Malformed,
    /// An algorithm other than the ones allowed here.
    #[error("algorithm not allowed")]
    Algorithm,
    /// A JWK that is not a public Ed25519 or P-256 key (or carries private members).
    #[error("unusable JWK")]
    BadKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
}

/// base64url without padding (RFC 7515 §2).
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// base64url-encoded SHA-256 of `text`, as DPoP's `ath` and JWK thumbprints use.
pub fn sha256_b64(text: &[u8]) -> String {
    b64(&Sha256::digest(text))
}

/// The protected header members Mayfly looks at.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    /// The algorithm.
    pub alg: String,
    /// The media type (`dpop+jwt` for DPoP proofs).
    #[serde(default)]
    pub typ: Option<String>,
    /// The key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// An embedded public key (DPoP).
    #[serde(default)]
    pub jwk: Option<Value>,
    /// Critical extensions: none is understood, so any makes the JWS invalid.
    #[serde(default)]
    pub crit: Option<Value>,
}

/// A compact JWS split into its parts; nothing verified yet.
#[derive(Clone)]
pub struct Jws {
    /// The decoded protected header.
    pub header: Header,
    /// The decoded payload (JSON text).
    pub payload: Vec<u8>,
    signing_input_len: usize,
    compact: String,
    signature: Vec<u8>,
}

impl fmt::Debug for Jws {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jws")
            .field("alg", &self.header.alg)
            .finish_non_exhaustive()
    }
}

impl Jws {
    /// Splits and decodes a compact JWS (RFC 7515 §7.1).
    ///
    /// # Errors
    /// [`JoseError::Malformed`], or [`JoseError::Algorithm`] when `crit` is present.
    pub fn parse(compact: &str) -> Result<Self, JoseError> {
        if compact.len() > MAX_JWS_LEN {
            return Err(JoseError::Malformed);
        }
        let mut parts = compact.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JoseError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| JoseError::Malformed)
        };
        let header: Header =
            serde_json::from_slice(&decode(h)?).map_err(|_| JoseError::Malformed)?;
        if header.crit.is_some() {
            return Err(JoseError::Algorithm);
        }
        Ok(Self {
            header,
            payload: decode(p)?,
            signing_input_len: h.len() + 1 + p.len(),
            signature: decode(s)?,
            compact: compact.to_owned(),
        })
    }

    /// The payload as a JSON object.
    ///
    /// # Errors
    /// [`JoseError::Malformed`] when it is not one.
    pub fn claims<T: serde::de::DeserializeOwned>(&self) -> Result<T, JoseError> {
        serde_json::from_slice(&self.payload).map_err(|_| JoseError::Malformed)
    }

    /// Verifies the signature with `key`; the header's `alg` must be the key's.
    ///
    /// # Errors
    /// [`JoseError::Algorithm`] for a mismatched algorithm, [`JoseError::BadSignature`].
    pub fn verify(&self, key: &PublicJwk) -> Result<(), JoseError> {
        if self.header.alg != key.alg() {
            return Err(JoseError::Algorithm);
        }
        let input = self
            .compact
            .as_bytes()
            .get(..self.signing_input_len)
            .ok_or(JoseError::Malformed)?;
        match key {
            PublicJwk::Ed25519(k) => {
                let sig = ed25519_dalek::Signature::from_slice(&self.signature)
                    .map_err(|_| JoseError::BadSignature)?;
                k.verify_strict(input, &sig)
                    .map_err(|_| JoseError::BadSignature)
            }
            PublicJwk::P256(k) => {
                let sig = p256::ecdsa::Signature::from_slice(&self.signature)
                    .map_err(|_| JoseError::BadSignature)?;
                k.verify(input, &sig).map_err(|_| JoseError::BadSignature)
            }
        }
    }
}

/// A public key a JWS may be verified with.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicJwk {
    /// OKP / Ed25519 (`EdDSA`).
    Ed25519(ed25519_dalek::VerifyingKey),
    /// EC / P-256 (`ES256`).
    P256(p256::ecdsa::VerifyingKey),
}

impl fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicJwk({})", self.thumbprint())
    }
}

impl PublicJwk {
    /// An Ed25519 key from its raw bytes; weak (small-order) keys are refused.
    ///
    /// # Errors
    /// [`JoseError::BadKey`].
    pub fn ed25519(bytes: &[u8; 32]) -> Result<Self, JoseError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| JoseError::BadKey)?;
        if key.is_weak() {
            return Err(JoseError::BadKey);
        }
        Ok(Self::Ed25519(key))
    }

    /// Reads a public JWK (RFC 7517); private members (`d`, …) make it unusable.
    ///
    /// # Errors
    /// [`JoseError::BadKey`].
    pub fn from_json(jwk: &Value) -> Result<Self, JoseError> {
        let obj = jwk.as_object().ok_or(JoseError::BadKey)?;
        if ["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .any(|m| obj.contains_key(*m))
        {
            return Err(JoseError::BadKey);
        }
        let text = |name: &str| obj.get(name).and_then(Value::as_str);
        let bytes = |name: &str| -> Result<Vec<u8>, JoseError> {
            URL_SAFE_NO_PAD
                .decode(text(name).ok_or(JoseError::BadKey)?)
                .map_err(|_| JoseError::BadKey)
        };
        match (text("kty"), text("crv")) {
            (Some("OKP"), Some("Ed25519")) => {
                let x: [u8; 32] = bytes("x")?.try_into().map_err(|_| JoseError::BadKey)?;
                Self::ed25519(&x)
            }
            (Some("EC"), Some("P-256")) => {
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(JoseError::BadKey);
                }
                let mut sec1 = Vec::with_capacity(65);
                sec1.push(4);
                sec1.extend_from_slice(&x);
                sec1.extend_from_slice(&y);
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .map(Self::P256)
                    .map_err(|_| JoseError::BadKey)
            }
            _ => Err(JoseError::BadKey),
        }
    }

    /// The JWS algorithm of this key.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Ed25519(_) => "EdDSA",
            Self::P256(_) => "ES256",
        }
    }

    /// The public JWK, with only its required members.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        match self {
            Self::Ed25519(k) => {
                m.insert("crv".into(), "Ed25519".into());
                m.insert("kty".into(), "OKP".into());
                m.insert("x".into(), b64(k.as_bytes()).into());
            }
            Self::P256(k) => {
                let point = k.to_sec1_point(false);
                let bytes = point.as_bytes();
                m.insert("crv".into(), "P-256".into());
                m.insert("kty".into(), "EC".into());
                m.insert("x".into(), b64(bytes.get(1..33).unwrap_or_default()).into());
                m.insert(
                    "y".into(),
                    b64(bytes.get(33..65).unwrap_or_default()).into(),
                );
            }
        }
        Value::Object(m)
    }

    /// The RFC 7638 thumbprint: SHA-256 over the required members in lexicographic
    /// order, no whitespace (serde_json's map keeps keys sorted).
    pub fn thumbprint(&self) -> String {
        sha256_b64(self.to_json().to_string().as_bytes())
    }
}

/// A private key that signs compact JWS: what a workload holds for `private_key_jwt`
/// and DPoP.
#[derive(Clone)]
pub enum JwsKey {
    /// Ed25519 (`EdDSA`).
    Ed25519(ed25519_dalek::SigningKey),
    /// P-256 (`ES256`).
    P256(p256::ecdsa::SigningKey),
}

impl fmt::Debug for JwsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JwsKey({}, <redacted>)", self.public().thumbprint())
    }
}

impl JwsKey {
    /// An Ed25519 key from its 32-byte seed.
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> Self {
        Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// A P-256 key from its 32-byte scalar.
    ///
    /// # Errors
    /// [`JoseError::BadKey`] when the bytes are zero or not below the group order.
    pub fn p256_from_bytes(scalar: &[u8; 32]) -> Result<Self, JoseError> {
        p256::ecdsa::SigningKey::from_slice(scalar)
            .map(Self::P256)
            .map_err(|_| JoseError::BadKey)
    }

    /// The public half.
    pub fn public(&self) -> PublicJwk {
        match self {
            Self::Ed25519(k) => PublicJwk::Ed25519(k.verifying_key()),
            Self::P256(k) => PublicJwk::P256(*k.verifying_key()),
        }
    }

    /// The JWS algorithm.
    pub fn alg(&self) -> &'static str {
        self.public().alg()
    }

    /// Signs `claims` as a compact JWS with `header` (whose `alg` is set here).
    pub fn sign(&self, mut header: Map<String, Value>, claims: &Value) -> String {
        header.insert("alg".into(), self.alg().into());
        let input = format!(
            "{}.{}",
            b64(Value::Object(header).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = match self {
            Self::Ed25519(k) => k.sign(input.as_bytes()).to_bytes().to_vec(),
            Self::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(input.as_bytes());
                sig.to_bytes().to_vec()
            }
        };
        format!("{input}.{}", b64(&signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ed25519_and_p256_roundtrip() {
        for key in [
            JwsKey::ed25519_from_seed(&[7; 32]),
            JwsKey::p256_from_bytes(&[9; 32]).unwrap(),
        ] {
            let jws = key.sign(Map::new(), &json!({"a": 1}));
            let parsed = Jws::parse(&jws).unwrap();
            assert_eq!(parsed.header.alg, key.alg());
            parsed.verify(&key.public()).unwrap();
            let from_json = PublicJwk::from_json(&key.public().to_json()).unwrap();
            assert_eq!(from_json, key.public());
            // Tampered payload fails.
            let mut parts: Vec<&str> = jws.split('.').collect();
            let other = b64(br#"{"a":2}"#);
            parts[1] = &other;
            let tampered = Jws::parse(&parts.join(".")).unwrap();
            assert_eq!(tampered.verify(&key.public()), Err(JoseError::BadSignature));
        }
    }

    #[test]
    fn ed25519_thumbprint_matches_rfc_8037() {
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = PublicJwk::ed25519(&x.try_into().unwrap()).unwrap();
        assert_eq!(
            key.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn refuses_private_or_foreign_keys_and_algorithms() {
        let key = JwsKey::ed25519_from_seed(&[1; 32]);
        let mut jwk = key.public().to_json();
        jwk["d"] = "AAAA".into();
        assert_eq!(PublicJwk::from_json(&jwk), Err(JoseError::BadKey));
        assert_eq!(
            PublicJwk::from_json(&json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"})),
            Err(JoseError::BadKey)
        );
        let mut header = Map::new();
        header.insert("crit".into(), json!(["exp"]));
        assert_eq!(
            Jws::parse(&key.sign(header, &json!({}))).unwrap_err(),
            JoseError::Algorithm
        );
        // An ES256 key cannot verify an EdDSA JWS, whatever the header says.
        let jws = Jws::parse(&key.sign(Map::new(), &json!({}))).unwrap();
        let p = JwsKey::p256_from_bytes(&[3; 32]).unwrap().public();
        assert_eq!(jws.verify(&p), Err(JoseError::Algorithm));
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA"] {
            assert!(Jws::parse(bad).is_err(), "{bad}");
        }
    }
}
