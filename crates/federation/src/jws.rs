//! Compact JWS (RFC 7515 §7.1) as external identity tokens use it: split, decode, and
//! verify one signature with one issuer key. The header is read only for `alg`, `kid`
//! and `crit`; keys or key URLs a header offers (`jwk`, `jku`, `x5c`, `x5u`) are never
//! looked at — keys come from the trusted issuer's configuration alone.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_core::jose::PublicJwk;
use p256::ecdsa::signature::Verifier as _;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde::Deserialize;
use serde_json::Value;

use crate::error::VerifyError;
use crate::jwk::{Algorithm, IssuerKey, KeyMaterial};

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<Value>,
    #[serde(default)]
    kid: Option<Value>,
    #[serde(default)]
    crit: Option<Value>,
}

/// A compact JWS whose header names an accepted algorithm; signature not yet checked.
pub(crate) struct Compact<'a> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    pub(crate) payload: Vec<u8>,
    signing_input: &'a [u8],
    signature: Vec<u8>,
}

fn decode(part: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| VerifyError::Malformed)
}

/// The decoded payload of a three-part token, nothing checked.
pub(crate) fn payload(token: &str) -> Option<Vec<u8>> {
    let mut parts = token.split('.');
    let (Some(_), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    decode(p).ok()
}

/// Splits and decodes `token`; the caller bounds its length first.
///
/// # Errors
/// [`VerifyError::Malformed`], [`VerifyError::UnsupportedAlgorithm`] (anything but
/// RS256, ES256 and EdDSA), [`VerifyError::CriticalHeader`].
pub(crate) fn parse(token: &str) -> Result<Compact<'_>, VerifyError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed);
    };
    let header: RawHeader =
        serde_json::from_slice(&decode(h)?).map_err(|_| VerifyError::Malformed)?;
    let alg = header
        .alg
        .as_ref()
        .and_then(Value::as_str)
        .and_then(Algorithm::from_jws)
        .ok_or(VerifyError::UnsupportedAlgorithm)?;
    if header.crit.is_some() {
        return Err(VerifyError::CriticalHeader);
    }
    let kid = match header.kid {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k),
        Some(_) => return Err(VerifyError::Malformed),
    };
    Ok(Compact {
        alg,
        kid,
        payload: decode(p)?,
        signing_input: token
            .as_bytes()
            .get(..h.len() + 1 + p.len())
            .ok_or(VerifyError::Malformed)?,
        signature: decode(s)?,
    })
}

impl Compact<'_> {
    /// Verifies the signature with `key`, whose type must be the header algorithm's.
    ///
    /// # Errors
    /// [`VerifyError::KeyAlgorithmMismatch`], [`VerifyError::BadSignature`].
    pub(crate) fn verify(&self, key: &IssuerKey) -> Result<(), VerifyError> {
        if key.algorithm() != self.alg {
            return Err(VerifyError::KeyAlgorithmMismatch);
        }
        let input = self.signing_input;
        match &key.material {
            KeyMaterial::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, input, &self.signature)
                .map_err(|_| VerifyError::BadSignature),
            KeyMaterial::Jose(PublicJwk::P256(k)) => {
                let sig = p256::ecdsa::Signature::from_slice(&self.signature)
                    .map_err(|_| VerifyError::BadSignature)?;
                k.verify(input, &sig).map_err(|_| VerifyError::BadSignature)
            }
            KeyMaterial::Jose(PublicJwk::Ed25519(k)) => {
                let sig = ed25519_dalek::Signature::from_slice(&self.signature)
                    .map_err(|_| VerifyError::BadSignature)?;
                k.verify_strict(input, &sig)
                    .map_err(|_| VerifyError::BadSignature)
            }
        }
    }
}
