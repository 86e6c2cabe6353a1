//! `private_key_jwt` (RFC 7523 §2.2, as profiled by OpenID Connect Core §9): the client
//! signs a short-lived JWT with an Ed25519 key registered for it. No shared secret.
//!
//! Checked here: `alg` is `EdDSA` and nothing else (`none`, HMAC — e.g. signed with the
//! public key's bytes —, RSA and ECDSA are refused before any key is looked at); the
//! signature verifies (strictly) with one of the client's registered keys (the one
//! `kid` names, else each); `iss` = `sub` = the client id; `aud` (a string or an array)
//! names the issuer or one of its endpoints; `iat` at most 5 minutes old and not in the
//! future (60 s skew); `exp` in the future and at most 60 minutes after `iat`; `nbf`, if
//! any, reached; and `jti` never used before by this client while the assertion could
//! still be accepted, on any replica (the store's one-time ids).

use serde::Deserialize;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use mayfly_core::jose::{Jws, PublicJwk};
use mayfly_store::{ClientPublicKeyRecord, ReplayStore};

use super::AuthError;

/// `client_assertion_type` for JWT client assertions (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The only accepted algorithm.
pub const ALGORITHM: &str = "EdDSA";
/// Oldest accepted `iat`.
pub const MAX_AGE: Duration = Duration::minutes(5);
/// Longest accepted lifetime (`exp` - `iat`): client libraries default to one hour.
pub const MAX_LIFETIME: Duration = Duration::minutes(60);
/// Clock-skew allowance.
pub const SKEW: Duration = Duration::seconds(60);
const MAX_JTI: usize = 256;

#[derive(Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Value>,
    iat: Option<i64>,
    exp: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
}

/// The client an assertion claims to come from (its `sub`, else `iss`), unverified:
/// for finding the client's keys, throttling and the audit log.
pub fn claimed_client(assertion: &str) -> Option<String> {
    let jws = Jws::parse(assertion).ok()?;
    let claims: AssertionClaims = jws.claims().ok()?;
    claims.sub.or(claims.iss)
}

/// What a client assertion's `aud` may name: the issuer, or one of the endpoints a
/// client authenticates at (RFC 7523 §3, OpenID Connect Core §9).
pub fn audiences(issuer: &str) -> Vec<String> {
    vec![
        issuer.to_owned(),
        format!("{issuer}/oauth2/token"),
        format!("{issuer}/oauth2/introspect"),
        format!("{issuer}/oauth2/revoke"),
    ]
}

/// What an assertion is checked against.
pub struct Expected<'a> {
    /// The client the keys belong to.
    pub client_id: &'a str,
    /// The client's registered keys.
    pub keys: &'a [ClientPublicKeyRecord],
    /// Accepted `aud` values: the issuer and its endpoint URLs.
    pub audiences: &'a [String],
    /// Now.
    pub now: OffsetDateTime,
}

fn bad(reason: &'static str) -> AuthError {
    AuthError::BadAssertion(reason)
}

/// Verifies an assertion, then spends its `jti`.
///
/// # Errors
/// [`AuthError::BadAssertion`] naming the failed check, [`AuthError::Store`].
pub async fn verify(
    assertion: &str,
    expected: &Expected<'_>,
    replay: &dyn ReplayStore,
) -> Result<(), AuthError> {
    let jws = Jws::parse(assertion).map_err(|_| bad("malformed assertion"))?;
    if jws.header.alg != ALGORITHM {
        return Err(bad("assertion algorithm not allowed (EdDSA only)"));
    }
    let candidates: Vec<&ClientPublicKeyRecord> = match &jws.header.kid {
        Some(kid) => expected.keys.iter().filter(|k| &k.kid == kid).collect(),
        None => expected.keys.iter().collect(),
    };
    let signed = candidates.iter().any(|k| {
        <[u8; 32]>::try_from(k.public_key.as_slice())
            .ok()
            .and_then(|bytes| PublicJwk::ed25519(&bytes).ok())
            .is_some_and(|key| jws.verify(&key).is_ok())
    });
    if !signed {
        return Err(bad("assertion not signed by a registered key"));
    }
    let claims: AssertionClaims = jws
        .claims()
        .map_err(|_| bad("malformed assertion claims"))?;
    if claims.iss.as_deref() != Some(expected.client_id)
        || claims.sub.as_deref() != Some(expected.client_id)
    {
        return Err(bad("assertion iss and sub must be the client id"));
    }
    let aud_ok = match &claims.aud {
        Some(Value::String(a)) => expected.audiences.contains(a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| expected.audiences.iter().any(|e| e == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(bad("assertion aud is not this server"));
    }
    let time = |t: Option<i64>, what: &'static str| {
        t.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
            .ok_or(bad(what))
    };
    let now = expected.now;
    let iat = time(claims.iat, "assertion iat missing")?;
    let exp = time(claims.exp, "assertion exp missing")?;
    if iat > now.saturating_add(SKEW) {
        return Err(bad("assertion iat in the future"));
    }
    if iat.saturating_add(MAX_AGE) < now {
        return Err(bad("assertion too old (iat)"));
    }
    if exp <= now.saturating_sub(SKEW) {
        return Err(bad("assertion expired"));
    }
    if exp > iat.saturating_add(MAX_LIFETIME) {
        return Err(bad("assertion lifetime exceeds 60 minutes"));
    }
    if claims.nbf.is_some() && time(claims.nbf, "assertion nbf invalid")? > now.saturating_add(SKEW)
    {
        return Err(bad("assertion not yet valid (nbf)"));
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI)
        .ok_or(bad("assertion jti missing"))?;
    // Kept until the assertion expires (with the skew the check above allows).
    let keep_until = exp.saturating_add(SKEW);
    let fresh = replay
        .use_once(
            &format!("assertion:{}", expected.client_id),
            &jti,
            keep_until,
            now,
        )
        .await?;
    if !fresh {
        return Err(bad("assertion jti replayed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use mayfly_core::jose::JwsKey;
    use mayfly_store::StoreResult;
    use serde_json::json;
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);
    const ID: &str = "0193a5b2-0000-7e4f-8a9b-0c1d2e3f4a5b";
    const ISSUER: &str = "https://sts.example";

    #[derive(Default)]
    struct Memory(Mutex<HashMap<(String, String), OffsetDateTime>>);

    #[async_trait]
    impl ReplayStore for Memory {
        async fn use_once(
            &self,
            namespace: &str,
            jti: &str,
            expires_at: OffsetDateTime,
            now: OffsetDateTime,
        ) -> StoreResult<bool> {
            let mut map = self.0.lock().unwrap();
            let key = (namespace.to_owned(), jti.to_owned());
            if map.get(&key).is_some_and(|t| now < *t) {
                return Ok(false);
            }
            map.insert(key, expires_at);
            Ok(true)
        }

        async fn prune_used_ids(&self, _now: OffsetDateTime) -> StoreResult<u64> {
            Ok(0)
        }
    }

    fn key() -> JwsKey {
        JwsKey::ed25519_from_seed(&[9; 32])
    }

    fn record() -> ClientPublicKeyRecord {
        let mayfly_core::jose::PublicJwk::Ed25519(public) = key().public() else {
            unreachable!()
        };
        ClientPublicKeyRecord {
            id: Uuid::nil(),
            client_id: Uuid::nil(),
            kid: "k1".into(),
            public_key: public.to_bytes().to_vec(),
            created_at: NOW,
        }
    }

    async fn check(claims: serde_json::Value) -> Result<(), AuthError> {
        let jwt = key().sign(serde_json::Map::new(), &claims);
        let keys = [record()];
        let audiences = audiences(ISSUER);
        let expected = Expected {
            client_id: ID,
            keys: &keys,
            audiences: &audiences,
            now: NOW,
        };
        verify(&jwt, &expected, &Memory::default()).await
    }

    fn claims(iat: OffsetDateTime, exp: OffsetDateTime) -> serde_json::Value {
        json!({
            "iss": ID, "sub": ID, "aud": format!("{ISSUER}/oauth2/token"),
            "iat": iat.unix_timestamp(), "exp": exp.unix_timestamp(), "jti": "j",
        })
    }

    #[tokio::test]
    async fn time_window_boundaries() {
        let ok = |r: Result<(), AuthError>| r.is_ok();
        assert!(ok(check(claims(NOW, NOW + MAX_LIFETIME)).await));
        assert!(!ok(check(claims(
            NOW,
            NOW + MAX_LIFETIME + Duration::SECOND
        ))
        .await));
        assert!(ok(check(claims(NOW + SKEW, NOW + SKEW * 2)).await));
        assert!(!ok(check(claims(
            NOW + SKEW + Duration::SECOND,
            NOW + SKEW * 2
        ))
        .await));
        assert!(ok(
            check(claims(NOW - MAX_AGE, NOW + Duration::minutes(1))).await
        ));
        assert!(!ok(check(claims(
            NOW - MAX_AGE - Duration::SECOND,
            NOW + Duration::minutes(1)
        ))
        .await));
        let mut no_aud = claims(NOW, NOW + Duration::minutes(1));
        no_aud.as_object_mut().unwrap().remove("aud");
        assert!(!ok(check(no_aud).await));
        let mut issuer_aud = claims(NOW, NOW + Duration::minutes(1));
        issuer_aud["aud"] = json!([ISSUER]);
        assert!(ok(check(issuer_aud).await));
    }

    #[tokio::test]
    async fn replay_is_refused() {
        let store = Memory::default();
        let jwt = key().sign(
            serde_json::Map::new(),
            &claims(NOW, NOW + Duration::minutes(1)),
        );
        let keys = [record()];
        let audiences = audiences(ISSUER);
        let expected = Expected {
            client_id: ID,
            keys: &keys,
            audiences: &audiences,
            now: NOW,
        };
        assert!(verify(&jwt, &expected, &store).await.is_ok());
        assert!(matches!(
            verify(&jwt, &expected, &store).await,
            Err(AuthError::BadAssertion("assertion jti replayed"))
        ));
    }
}
