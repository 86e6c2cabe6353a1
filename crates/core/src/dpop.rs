//! DPoP proofs (RFC 9449): checking one (the server at its token endpoint and
//! introspection, resource servers through the SDK) and making one (the SDK's
//! `TokenSource`). Replay of a proof's `jti` is the caller's business: the check here
//! is pure, `now` is a parameter.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};

use crate::jose::{JoseError, Jws, JwsKey, PublicJwk, sha256_b64};

/// The signing algorithms accepted in proofs (RFC 9449 §5.1 metadata).
pub const ALGORITHMS: &[&str] = &["EdDSA", "ES256"];
/// How old a proof may be at the token endpoint and introspection.
pub const MAX_AGE: Duration = Duration::minutes(5);
/// How old a proof may be at a resource server: one proof per request, sent at once, so
/// a short window keeps the replay cache small.
pub const RESOURCE_MAX_AGE: Duration = Duration::seconds(60);
/// How far in the future a proof's `iat` may be (clock skew).
pub const SKEW: Duration = Duration::seconds(60);
/// Longest accepted `jti`.
const MAX_JTI: usize = 256;

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Not a well-formed proof JWT.
    #[error("malformed DPoP proof")]
    Malformed,
    /// `typ` is not `dpop+jwt`.
    #[error("DPoP proof typ must be dpop+jwt")]
    Type,
    /// An algorithm other than EdDSA or ES256, or one not matching the key.
    #[error("DPoP proof algorithm not allowed")]
    Algorithm,
    /// The `jwk` header is missing, private, or of an unsupported kind.
    #[error("DPoP proof key unusable")]
    Key,
    /// The signature does not verify with the `jwk`.
    #[error("DPoP proof signature invalid")]
    Signature,
    /// `htm` is not the request method.
    #[error("DPoP proof htm does not match the request")]
    Method,
    /// `htu` is not the request URL.
    #[error("DPoP proof htu does not match the request")]
    Url,
    /// `iat` too old or in the future.
    #[error("DPoP proof iat outside the accepted window")]
    Time,
    /// `ath` missing or not the hash of the access token presented with it.
    #[error("DPoP proof ath does not match the access token")]
    AccessTokenHash,
    /// The proof's key is not the one the token is bound to.
    #[error("DPoP proof key is not the token's")]
    WrongKey,
}

impl From<JoseError> for ProofError {
    fn from(e: JoseError) -> Self {
        match e {
            JoseError::Malformed => Self::Malformed,
            JoseError::Algorithm => Self::Algorithm,
            JoseError::BadKey => Self::Key,
            JoseError::BadSignature => Self::Signature,
        }
    }
}

/// What a proof is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The request method.
    pub htm: &'a str,
    /// The request URL (normalised here; query and fragment ignored).
    pub htu: &'a str,
    /// The access token sent with the proof (resource servers): `ath` must match.
    pub access_token: Option<&'a str>,
    /// The thumbprint the token is bound to (`cnf.jkt`), if any.
    pub jkt: Option<&'a str>,
    /// How old the proof may be ([`MAX_AGE`], or [`RESOURCE_MAX_AGE`]).
    pub max_age: Duration,
    /// Now.
    pub now: OffsetDateTime,
}

/// A proof that passed every stateless check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// RFC 7638 thumbprint of the proof key (`cnf.jkt` of a token bound to it).
    pub jkt: String,
    /// The proof's `jti`; callers reject its reuse until [`Verified::expires_at`].
    pub jti: String,
    /// The proof's `nonce`, if it carried one.
    pub nonce: Option<String>,
    /// When the proof can no longer be accepted (`iat` + the maximum age + [`SKEW`]).
    pub expires_at: OffsetDateTime,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// Normalises an HTTP(S) URL for `htu` comparison (RFC 9449 §4.3, RFC 3986 §6.2.2–6.2.3):
/// scheme and host lower-cased, default port dropped, empty path as `/`, query and
/// fragment removed. `None` when it is not an absolute http(s) URL.
pub fn normalize_htu(url: &str) -> Option<String> {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let mut authority = authority.to_ascii_lowercase();
    if authority.ends_with(default_port) {
        authority.truncate(authority.len() - default_port.len());
    }
    Some(format!("{scheme}://{authority}{path}"))
}

/// The `ath` of an access token: base64url SHA-256 of its ASCII (RFC 9449 §4.2).
pub fn ath(access_token: &str) -> String {
    sha256_b64(access_token.as_bytes())
}

/// Checks a proof: `typ`, `alg`, the embedded public `jwk` and the signature, `htm`,
/// `htu`, `iat` within `max_age` before and [`SKEW`] after `now`, `ath` when an
/// access token accompanies it, and the key's thumbprint when the token is bound.
///
/// # Errors
/// [`ProofError`] naming the first failed check.
pub fn verify(proof: &str, expect: &Expect<'_>) -> Result<Verified, ProofError> {
    let jws = Jws::parse(proof)?;
    if jws.header.typ.as_deref() != Some("dpop+jwt") {
        return Err(ProofError::Type);
    }
    if !ALGORITHMS.contains(&jws.header.alg.as_str()) {
        return Err(ProofError::Algorithm);
    }
    let key = PublicJwk::from_json(jws.header.jwk.as_ref().ok_or(ProofError::Key)?)?;
    jws.verify(&key)?;
    let claims: ProofClaims = jws.claims().map_err(|_| ProofError::Malformed)?;
    // A `jti` is stored to refuse replays: control characters (a NUL Postgres cannot
    // store) make it malformed, never a store failure.
    if claims.jti.is_empty() || !crate::UntrustedText::is_clean(&claims.jti, MAX_JTI) {
        return Err(ProofError::Malformed);
    }
    if claims.htm != expect.htm {
        return Err(ProofError::Method);
    }
    match (normalize_htu(&claims.htu), normalize_htu(expect.htu)) {
        (Some(got), Some(want)) if got == want => {}
        _ => return Err(ProofError::Url),
    }
    let iat = OffsetDateTime::from_unix_timestamp(claims.iat).map_err(|_| ProofError::Time)?;
    if iat > expect.now.saturating_add(SKEW) || iat.saturating_add(expect.max_age) < expect.now {
        return Err(ProofError::Time);
    }
    if let Some(token) = expect.access_token
        && claims.ath.as_deref() != Some(ath(token).as_str())
    {
        return Err(ProofError::AccessTokenHash);
    }
    let jkt = key.thumbprint();
    if let Some(bound) = expect.jkt
        && !constant_time_eq(bound.as_bytes(), jkt.as_bytes())
    {
        return Err(ProofError::WrongKey);
    }
    Ok(Verified {
        jkt,
        jti: claims.jti,
        nonce: claims.nonce,
        expires_at: iat.saturating_add(expect.max_age).saturating_add(SKEW),
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a proof says about one request.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// The request method.
    pub htm: &'a str,
    /// The request URL (query and fragment are dropped).
    pub htu: &'a str,
    /// The access token sent along (resource requests), hashed into `ath`.
    pub access_token: Option<&'a str>,
    /// A server-provided nonce.
    pub nonce: Option<&'a str>,
    /// Unique id of this proof.
    pub jti: &'a str,
    /// Now.
    pub now: OffsetDateTime,
}

/// Signs a DPoP proof with `key` (RFC 9449 §4.2).
pub fn sign(key: &JwsKey, request: &ProofRequest<'_>) -> String {
    let mut header = Map::new();
    header.insert("typ".into(), "dpop+jwt".into());
    header.insert("jwk".into(), key.public().to_json());
    let htu = normalize_htu(request.htu).unwrap_or_else(|| request.htu.to_owned());
    let mut claims = json!({
        "jti": request.jti,
        "htm": request.htm,
        "htu": htu,
        "iat": request.now.unix_timestamp(),
    });
    if let Some(token) = request.access_token {
        claims["ath"] = Value::String(ath(token));
    }
    if let Some(nonce) = request.nonce {
        claims["nonce"] = Value::String(nonce.to_owned());
    }
    key.sign(header, &claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);
    const URL: &str = "https://sts.example/oauth2/token";

    fn request<'a>() -> ProofRequest<'a> {
        ProofRequest {
            htm: "POST",
            htu: URL,
            access_token: None,
            nonce: None,
            jti: "j1",
            now: NOW,
        }
    }

    fn expect<'a>() -> Expect<'a> {
        Expect {
            htm: "POST",
            htu: URL,
            access_token: None,
            jkt: None,
            max_age: MAX_AGE,
            now: NOW,
        }
    }

    #[test]
    fn accepts_a_good_proof_from_either_algorithm() {
        for key in [
            JwsKey::ed25519_from_seed(&[1; 32]),
            JwsKey::p256_from_bytes(&[2; 32]).unwrap(),
        ] {
            let proof = sign(&key, &request());
            let v = verify(&proof, &expect()).unwrap();
            assert_eq!(v.jkt, key.public().thumbprint());
            assert_eq!(v.jti, "j1");
            let bound = Expect {
                jkt: Some(&v.jkt),
                htu: "HTTPS://STS.example:443/oauth2/token?x=1#f",
                ..expect()
            };
            assert!(verify(&proof, &bound).is_ok());
        }
    }

    #[test]
    fn a_jti_with_a_control_character_is_malformed() {
        let key = JwsKey::ed25519_from_seed(&[1; 32]);
        for jti in ["j\u{0}1", "j\n1", "\u{1b}[31m"] {
            let proof = sign(&key, &ProofRequest { jti, ..request() });
            assert_eq!(
                verify(&proof, &expect()).unwrap_err(),
                ProofError::Malformed
            );
        }
    }

    #[test]
    fn refuses_each_mismatch() {
        let key = JwsKey::ed25519_from_seed(&[1; 32]);
        let other = JwsKey::ed25519_from_seed(&[2; 32]).public().thumbprint();
        let proof = sign(&key, &request());
        let check = |e: Expect<'_>| verify(&proof, &e).unwrap_err();
        assert_eq!(
            check(Expect {
                htm: "GET",
                ..expect()
            }),
            ProofError::Method
        );
        assert_eq!(
            check(Expect {
                htu: "https://sts.example/other",
                ..expect()
            }),
            ProofError::Url
        );
        assert_eq!(
            check(Expect {
                now: NOW + Duration::minutes(6),
                ..expect()
            }),
            ProofError::Time
        );
        assert_eq!(
            check(Expect {
                now: NOW - Duration::minutes(2),
                ..expect()
            }),
            ProofError::Time
        );
        assert_eq!(
            check(Expect {
                jkt: Some(&other),
                ..expect()
            }),
            ProofError::WrongKey
        );
        assert_eq!(
            check(Expect {
                access_token: Some("v4.public.x"),
                ..expect()
            }),
            ProofError::AccessTokenHash
        );
        let with_ath = sign(
            &key,
            &ProofRequest {
                access_token: Some("v4.public.x"),
                ..request()
            },
        );
        assert!(
            verify(
                &with_ath,
                &Expect {
                    access_token: Some("v4.public.x"),
                    ..expect()
                }
            )
            .is_ok()
        );
        assert_eq!(
            verify(
                &with_ath,
                &Expect {
                    access_token: Some("v4.public.y"),
                    ..expect()
                }
            )
            .unwrap_err(),
            ProofError::AccessTokenHash
        );
    }

    #[test]
    fn refuses_wrong_typ_alg_or_key() {
        let key = JwsKey::ed25519_from_seed(&[1; 32]);
        let claims = json!({"jti": "j", "htm": "POST", "htu": URL, "iat": NOW.unix_timestamp()});
        let mut header = Map::new();
        header.insert("jwk".into(), key.public().to_json());
        assert_eq!(
            verify(&key.sign(header.clone(), &claims), &expect()).unwrap_err(),
            ProofError::Type
        );
        header.insert("typ".into(), "dpop+jwt".into());
        let mut private = key.public().to_json();
        private["d"] = "AAAA".into();
        let mut h2 = header.clone();
        h2.insert("jwk".into(), private);
        assert_eq!(
            verify(&key.sign(h2, &claims), &expect()).unwrap_err(),
            ProofError::Key
        );
        // Another key in the header than the one that signed.
        let mut h3 = header.clone();
        h3.insert(
            "jwk".into(),
            JwsKey::ed25519_from_seed(&[5; 32]).public().to_json(),
        );
        assert_eq!(
            verify(&key.sign(h3, &claims), &expect()).unwrap_err(),
            ProofError::Signature
        );
        // alg none: header and payload with an empty signature.
        let none = format!(
            "{}.{}.",
            crate::jose::b64(
                json!({"alg": "none", "typ": "dpop+jwt", "jwk": key.public().to_json()})
                    .to_string()
                    .as_bytes()
            ),
            crate::jose::b64(claims.to_string().as_bytes())
        );
        assert_eq!(verify(&none, &expect()).unwrap_err(), ProofError::Algorithm);
    }

    #[test]
    fn htu_normalisation() {
        assert_eq!(
            normalize_htu("HTTP://Example.COM:80").as_deref(),
            Some("http://example.com/")
        );
        assert_eq!(
            normalize_htu("https://a.example:8443/p/q?x#y").as_deref(),
            Some("https://a.example:8443/p/q")
        );
        assert_eq!(normalize_htu("ftp://a/"), None);
        assert_eq!(normalize_htu("https://u@a/"), None);
        assert_eq!(normalize_htu("/relative"), None);
    }
}
