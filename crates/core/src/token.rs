//! Access-token claims, minting and verification.
//!
//! Claims follow DESIGN.md: `iss`, `sub`, `aud` (one audience), `iat`, `nbf`, `exp` as
//! RFC 3339 strings (PASETO §registered claims), `jti`, `scope`, `client_id`, `gid`; where
//! they apply, `cnf` (DPoP binding), `cidr` (network restriction), `act` (RFC 8693 §4.1
//! delegation), `fam` (the refresh-token family a user token came from) and `orig` (the
//! tokens an exchanged token was derived from, so revoking one of them revokes it too).

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::keys::{KeyId, PublicKey, SigningKey};
use crate::paseto::{self, Parsed};

/// The claims of a Mayfly access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer URL.
    pub iss: String,
    /// Subject: the client (or later, user) id.
    pub sub: String,
    /// The one audience this token is for.
    pub aud: String,
    /// Issued at.
    #[serde(with = "time::serde::rfc3339")]
    pub iat: OffsetDateTime,
    /// Not valid before.
    #[serde(with = "time::serde::rfc3339")]
    pub nbf: OffsetDateTime,
    /// Expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub exp: OffsetDateTime,
    /// Unique token id.
    pub jti: String,
    /// Space-separated granted scopes.
    pub scope: String,
    /// The client that obtained the token.
    pub client_id: String,
    /// The grants that covered its scopes (lets verifiers apply grant revocations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gid: Vec<String>,
    /// Proof-of-possession confirmation (RFC 7800 §3.1): the DPoP key the token is
    /// bound to (RFC 9449 §6.1). A bound token is useless without that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The networks the token may be used from (CIDR notation); empty: anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidr: Vec<String>,
    /// The party acting for `sub` (RFC 8693 §4.1), on delegated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// The refresh-token family (login session) this token was issued from: reuse of a
    /// rotated refresh token revokes every token of the family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
    /// The tokens this one was exchanged from (RFC 8693), nearest first: a revocation
    /// that matches one of them matches this token too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orig: Vec<Origin>,
}

/// The `cnf` claim of a DPoP-bound token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Confirmation {
    /// RFC 7638 thumbprint of the DPoP public key.
    pub jkt: String,
}

/// The `act` claim (RFC 8693 §4.1): who acts, and who acted before them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    /// The acting party's id (a client or user).
    pub sub: String,
    /// The prior actor in a chain of delegations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(no_recursion, value_type = Option<Object>))]
    pub act: Option<Box<Actor>>,
}

/// What a revocation check needs of a token another was exchanged from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Its `jti`.
    pub jti: String,
    /// Its `client_id`.
    pub client_id: String,
    /// The key that signed it.
    pub kid: String,
    /// Its `iat`.
    #[serde(with = "time::serde::rfc3339")]
    pub iat: OffsetDateTime,
    /// Its `sub`: for an actor token, the actor, so revoking or disabling the actor
    /// ends what was delegated to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Its `fam`: the login it came from, so ending that login ends this token too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
}

impl Claims {
    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// Claims could not be serialized (never expected).
    #[error("claims could not be serialized")]
    Serialize(#[from] serde_json::Error),
}

/// Mints a `v4.public` token for `claims`, footer `{"kid":…}`.
///
/// Times are truncated to whole seconds, as RFC 3339 strings in tokens conventionally are.
///
/// # Errors
/// [`MintError::Serialize`] if the claims cannot be serialized.
pub fn mint(key: &SigningKey, claims: &Claims) -> Result<String, MintError> {
    let mut claims = claims.clone();
    for t in [&mut claims.iat, &mut claims.nbf, &mut claims.exp] {
        *t = t.replace_nanosecond(0).unwrap_or(*t);
    }
    let message = serde_json::to_vec(&claims)?;
    Ok(paseto::sign(key, &message))
}

/// What a verifier expects of a token.
#[derive(Debug, Clone)]
pub struct VerifyOptions<'a> {
    /// Expected `iss`.
    pub issuer: &'a str,
    /// Expected `aud`; `None` accepts any (introspection answers for every audience
    /// and reports `aud`; resource servers must always name theirs).
    pub audience: Option<&'a str>,
    /// Clock-skew allowance applied to `exp` and `nbf`.
    pub leeway: Duration,
}

/// Why a token was refused. Each reason is distinct so callers can log it; callers
/// should tell the token's holder no more than "invalid token".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a well-formed `v4.public` token with a `{"kid":…}` footer.
    #[error("malformed token")]
    Malformed,
    /// Signed by a key this verifier does not know.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// The signed claims are not valid Mayfly claims.
    #[error("invalid claims")]
    InvalidClaims,
    /// Past `exp`.
    #[error("token expired")]
    Expired,
    /// Before `nbf`.
    #[error("token not yet valid")]
    NotYetValid,
    /// Another issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// Another audience.
    #[error("wrong audience")]
    WrongAudience,
}

#[derive(Deserialize)]
struct Footer {
    kid: String,
}

/// Reads the key id from a token's footer without verifying anything.
///
/// # Errors
/// [`VerifyError::Malformed`] when the token or its footer is not well formed.
pub fn peek_key_id(token: &str) -> Result<KeyId, VerifyError> {
    let parsed = Parsed::parse(token).ok_or(VerifyError::Malformed)?;
    footer_kid(&parsed)
}

/// Whether a token, unverified, claims to be DPoP-bound (`cnf`). A hint for choosing a
/// `WWW-Authenticate` challenge, never for accepting anything.
pub fn peek_is_bound(token: &str) -> bool {
    #[derive(Deserialize)]
    struct Cnf {
        cnf: Option<serde_json::Value>,
    }
    Parsed::parse(token)
        .and_then(|p| serde_json::from_slice::<Cnf>(p.untrusted_message()).ok())
        .is_some_and(|c| c.cnf.is_some())
}

fn footer_kid(parsed: &Parsed) -> Result<KeyId, VerifyError> {
    let footer: Footer =
        serde_json::from_slice(parsed.footer()).map_err(|_| VerifyError::Malformed)?;
    Ok(KeyId::from_trusted(footer.kid))
}

/// Verifies a token: signature with the key its footer names (looked up by `key_for`),
/// then `iss`, `aud`, `exp` and `nbf` against `now` with leeway.
///
/// # Errors
/// A [`VerifyError`] naming the first check that failed.
pub fn verify<'k>(
    token: &str,
    key_for: impl FnOnce(&KeyId) -> Option<&'k PublicKey>,
    options: &VerifyOptions<'_>,
    now: OffsetDateTime,
) -> Result<Claims, VerifyError> {
    let parsed = Parsed::parse(token).ok_or(VerifyError::Malformed)?;
    let kid = footer_kid(&parsed)?;
    let key = key_for(&kid).ok_or(VerifyError::UnknownKey)?;
    let message = parsed.verify(key).ok_or(VerifyError::BadSignature)?;
    let claims: Claims =
        serde_json::from_slice(&message).map_err(|_| VerifyError::InvalidClaims)?;
    check_claims(&claims, options, now)?;
    Ok(claims)
}

/// The checks [`verify`] makes after the signature: `iss`, `aud`, `exp` and `nbf` against
/// `now` with leeway, in that order. Public so a cache of signature checks can repeat
/// exactly these on every use of a token it already verified.
///
/// # Errors
/// A [`VerifyError`] naming the first check that failed.
pub fn check_claims(
    claims: &Claims,
    options: &VerifyOptions<'_>,
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    if claims.iss != options.issuer {
        return Err(VerifyError::WrongIssuer);
    }
    if options.audience.is_some_and(|aud| claims.aud != aud) {
        return Err(VerifyError::WrongAudience);
    }
    if now >= claims.exp.saturating_add(options.leeway) {
        return Err(VerifyError::Expired);
    }
    if now.saturating_add(options.leeway) < claims.nbf {
        return Err(VerifyError::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);

    fn claims() -> Claims {
        Claims {
            iss: "https://sts.example".into(),
            sub: "client-1".into(),
            aud: "https://api.example/orders".into(),
            iat: NOW,
            nbf: NOW,
            exp: NOW + Duration::seconds(300),
            jti: "jti-1".into(),
            scope: "orders:read orders:write".into(),
            client_id: "client-1".into(),
            gid: vec!["grant-1".into()],
            cnf: None,
            cidr: vec![],
            act: None,
            fam: None,
            orig: Vec::new(),
        }
    }

    fn options() -> VerifyOptions<'static> {
        VerifyOptions {
            issuer: "https://sts.example",
            audience: Some("https://api.example/orders"),
            leeway: Duration::seconds(30),
        }
    }

    fn check(
        token: &str,
        key: &SigningKey,
        opts: &VerifyOptions<'_>,
        now: OffsetDateTime,
    ) -> Result<Claims, VerifyError> {
        let public = key.public();
        verify(
            token,
            |kid| (kid == public.id()).then_some(public),
            opts,
            now,
        )
    }

    #[test]
    fn roundtrip() {
        let key = SigningKey::from_seed(&[3u8; 32]);
        let token = mint(&key, &claims()).unwrap();
        assert!(token.starts_with("v4.public."));
        assert_eq!(peek_key_id(&token).unwrap(), *key.id());
        let got = check(&token, &key, &options(), NOW).unwrap();
        assert_eq!(got, claims());
        assert!(got.has_scope("orders:read"));
        assert!(!got.has_scope("orders"));
    }

    #[test]
    fn time_and_identity_checks() {
        let key = SigningKey::from_seed(&[4u8; 32]);
        let token = mint(&key, &claims()).unwrap();
        let opts = options();
        assert_eq!(
            check(&token, &key, &opts, NOW + Duration::seconds(329)).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            check(&token, &key, &opts, NOW + Duration::seconds(330)),
            Err(VerifyError::Expired)
        );
        assert_eq!(
            check(&token, &key, &opts, NOW - Duration::seconds(31)),
            Err(VerifyError::NotYetValid)
        );
        let wrong_aud = VerifyOptions {
            audience: Some("https://api.example/other"),
            ..options()
        };
        assert_eq!(
            check(&token, &key, &wrong_aud, NOW),
            Err(VerifyError::WrongAudience)
        );
        let wrong_iss = VerifyOptions {
            issuer: "https://evil.example",
            ..options()
        };
        assert_eq!(
            check(&token, &key, &wrong_iss, NOW),
            Err(VerifyError::WrongIssuer)
        );
        let other = SigningKey::from_seed(&[5u8; 32]);
        assert_eq!(
            check(&token, &other, &opts, NOW),
            Err(VerifyError::UnknownKey)
        );
        // Right kid, wrong key material: a forged footer naming our key.
        let forged = mint(&other, &claims()).unwrap();
        let body = forged.rsplit_once('.').unwrap().0;
        let footer = token.rsplit_once('.').unwrap().1;
        assert_eq!(
            check(&format!("{body}.{footer}"), &key, &opts, NOW),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn any_flipped_character_fails() {
        let key = SigningKey::from_seed(&[6u8; 32]);
        let token = mint(&key, &claims()).unwrap();
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            let mut tampered = bytes.to_vec();
            tampered[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(tampered).unwrap();
            assert!(
                check(&tampered, &key, &options(), NOW).is_err(),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        let key = SigningKey::from_seed(&[8u8; 32]);
        for input in ["", "Bearer x", "v4.public.", "v4.public.AAAA.AAAA"] {
            assert_eq!(
                check(input, &key, &options(), NOW),
                Err(VerifyError::Malformed),
                "{input:?}"
            );
        }
    }
}
