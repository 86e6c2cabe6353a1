//! Access tokens whose signature this process has already checked (issue #18). A resource
//! server introspects the same token on every call and an admin CLI reuses its token,
//! while one Ed25519 check costs more than a third of an issuance's CPU.
//!
//! Only what cannot change is remembered: that these exact bytes carry a good signature
//! by a given key, and the claims they parse to. Entries are keyed by SHA-256 of the whole
//! token text, so an entry answers only for the bytes that were verified. On every use the
//! signing key must still be published, and `iss`, `aud`, `exp` and `nbf` are checked
//! against the caller's options and `now` (core's `token::check_claims`, the very checks
//! `token::verify` makes). Failures are never remembered. Revocation is the callers', after
//! this, every time.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mayfly_core::token::{self, Claims, VerifyError, VerifyOptions};
use mayfly_core::{KeyId, PublicKey};
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};

/// How many tokens are remembered at most. Far more than the tokens a deployment's
/// resource servers and admins present again within a token's lifetime, yet small: an
/// entry is a digest and parsed claims (well under 2 KiB), so a few MiB at most. When
/// full of live tokens the cache starts over rather than track recency on the hot path.
pub const CAPACITY: usize = 4096;

/// A token that verified: its claims and the key that signed it.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its claims.
    pub claims: Claims,
    /// The key that signed it.
    pub kid: KeyId,
}

/// What is remembered of a token whose signature checked.
struct Signed {
    claims: Claims,
    /// The key the signature verified with; a hit needs the key set to hold this very key.
    key: PublicKey,
}

/// SHA-256 of the whole token text.
type Digest = [u8; 32];

/// The cache, shared by every request of the process.
pub struct VerifiedTokens {
    capacity: usize,
    entries: Mutex<HashMap<Digest, Arc<Signed>>>,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl VerifiedTokens {
    /// A cache of at most `capacity` tokens (0: none, every token is verified afresh).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies `token` as [`token::verify`] does, with the same options and errors, but
    /// checks the signature of the same token text only once while it stays valid.
    ///
    /// # Errors
    /// A [`VerifyError`] naming the first check that failed.
    pub fn verify<'k>(
        &self,
        token: &str,
        key_for: impl Fn(&KeyId) -> Option<&'k PublicKey>,
        options: &VerifyOptions<'_>,
        now: OffsetDateTime,
    ) -> Result<Verified, VerifyError> {
        let digest: Digest = Sha256::digest(token.as_bytes()).into();
        let hit = self.lock().get(&digest).cloned();
        if let Some(hit) = hit {
            match key_for(hit.key.id()) {
                // A key that has left the key set takes its tokens with it, cached or not.
                None => {
                    self.forget(&digest);
                    return Err(VerifyError::UnknownKey);
                }
                Some(current) if *current == hit.key => {
                    if let Err(e) = token::check_claims(&hit.claims, options, now) {
                        if e == VerifyError::Expired {
                            self.forget(&digest);
                        }
                        return Err(e);
                    }
                    return Ok(Verified {
                        claims: hit.claims.clone(),
                        kid: hit.key.id().clone(),
                    });
                }
                // The same id for other key material cannot happen (the id is derived
                // from the key); should it, the token is verified afresh below.
                Some(_) => {}
            }
        }
        let mut signer = None;
        let claims = token::verify(
            token,
            |kid| {
                let key = key_for(kid);
                signer = key.cloned();
                key
            },
            options,
            now,
        )?;
        let Some(key) = signer else {
            // `token::verify` succeeds only with a key; nothing to remember without one.
            return Err(VerifyError::UnknownKey);
        };
        let verified = Verified {
            claims: claims.clone(),
            kid: key.id().clone(),
        };
        self.remember(
            digest,
            Arc::new(Signed { claims, key }),
            now,
            options.leeway,
        );
        Ok(verified)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Digest, Arc<Signed>>> {
        // Nothing panics while the lock is held; should it, the map is still consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn forget(&self, digest: &Digest) {
        let removed = self.lock().remove(digest);
        drop(removed);
    }

    /// Remembers a verified token, first making room if full: expired entries go (past
    /// `exp` + this caller's `leeway`: a caller allowing more leeway merely verifies such
    /// a token again), then, if still full, all of them.
    fn remember(&self, digest: Digest, signed: Arc<Signed>, now: OffsetDateTime, leeway: Duration) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        let mut dropped = HashMap::new();
        if entries.len() >= self.capacity && !entries.contains_key(&digest) {
            entries.retain(|_, s| now < s.claims.exp.saturating_add(leeway));
            if entries.len() >= self.capacity {
                // Freed after the lock is released.
                dropped = std::mem::take(&mut *entries);
            }
        }
        let replaced = entries.insert(digest, signed);
        drop(entries);
        drop((dropped, replaced));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_core::SigningKey;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);
    const ISSUER: &str = "https://sts.example";
    const ORDERS: &str = "https://api.example/orders";

    fn claims(jti: &str) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: "client-1".into(),
            aud: ORDERS.into(),
            iat: NOW,
            nbf: NOW,
            exp: NOW + Duration::seconds(300),
            jti: jti.into(),
            scope: "orders:read".into(),
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
            issuer: ISSUER,
            audience: Some(ORDERS),
            leeway: Duration::seconds(30),
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_seed(&[seed; 32])
    }

    /// Verifies through `cache` against a key set publishing `published`.
    fn check(
        cache: &VerifiedTokens,
        token: &str,
        published: &[PublicKey],
        options: &VerifyOptions<'_>,
        now: OffsetDateTime,
    ) -> Result<Verified, VerifyError> {
        cache.verify(
            token,
            |kid| published.iter().find(|k| k.id() == kid),
            options,
            now,
        )
    }

    /// What core's `token::verify` says of the same token, uncached.
    fn uncached(
        token: &str,
        published: &[PublicKey],
        options: &VerifyOptions<'_>,
        now: OffsetDateTime,
    ) -> Result<Claims, VerifyError> {
        token::verify(
            token,
            |kid| published.iter().find(|k| k.id() == kid),
            options,
            now,
        )
    }

    fn digest(token: &str) -> Digest {
        Sha256::digest(token.as_bytes()).into()
    }

    #[test]
    fn a_hit_returns_the_claims_without_checking_the_signature_again() {
        let k = key(1);
        let keys = [k.public().clone()];
        let token = token::mint(&k, &claims("jti-1")).unwrap();
        let cache = VerifiedTokens::default();

        let first = check(&cache, &token, &keys, &options(), NOW).unwrap();
        assert_eq!(first.claims, claims("jti-1"));
        assert_eq!(&first.kid, k.id());
        assert_eq!(cache.len(), 1);

        // Mark the remembered claims: the next answer must come from the cache.
        let mut marked = claims("jti-1");
        marked.scope = "from-the-cache".into();
        cache.lock().insert(
            digest(&token),
            Arc::new(Signed {
                claims: marked.clone(),
                key: k.public().clone(),
            }),
        );
        let second = check(&cache, &token, &keys, &options(), NOW).unwrap();
        assert_eq!(second.claims, marked);
        assert_eq!(&second.kid, k.id());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn one_changed_byte_is_refused_even_after_the_original_was_cached() {
        let k = key(2);
        let keys = [k.public().clone()];
        let token = token::mint(&k, &claims("jti-2")).unwrap();
        let cache = VerifiedTokens::default();
        check(&cache, &token, &keys, &options(), NOW).unwrap();

        // Every position: the payload (claims), the signature after it, and the footer.
        let (body, footer) = token.rsplit_once('.').unwrap();
        assert!(footer.len() > 10 && body.len() > 100 + "v4.public.".len());
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            let mut tampered = bytes.to_vec();
            tampered[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(tampered).unwrap();
            let got = check(&cache, &tampered, &keys, &options(), NOW).map(|v| v.claims);
            assert!(got.is_err(), "flip at {i} accepted");
            assert_eq!(
                got,
                uncached(&tampered, &keys, &options(), NOW),
                "flip at {i}: not what token::verify says"
            );
        }
        // Refusals were not remembered; the original still verifies.
        assert_eq!(cache.len(), 1);
        assert!(check(&cache, &token, &keys, &options(), NOW).is_ok());
    }

    #[test]
    fn a_key_no_longer_published_takes_its_cached_tokens_with_it() {
        let old = key(3);
        let new = key(4);
        let token = token::mint(&old, &claims("jti-3")).unwrap();
        let cache = VerifiedTokens::default();
        let both = [new.public().clone(), old.public().clone()];
        check(&cache, &token, &both, &options(), NOW).unwrap();
        assert_eq!(cache.len(), 1);

        // The old key is removed (or revoked) from the key set.
        let only_new = [new.public().clone()];
        assert_eq!(
            check(&cache, &token, &only_new, &options(), NOW).unwrap_err(),
            VerifyError::UnknownKey
        );
        assert_eq!(cache.len(), 0, "forgotten with its key");
        assert_eq!(
            check(&cache, &token, &only_new, &options(), NOW).unwrap_err(),
            VerifyError::UnknownKey
        );
        assert_eq!(
            check(&cache, &token, &[], &options(), NOW).unwrap_err(),
            VerifyError::UnknownKey
        );
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn cached_tokens_are_still_checked_for_time_issuer_and_audience() {
        let k = key(5);
        let keys = [k.public().clone()];
        let token = token::mint(&k, &claims("jti-5")).unwrap();
        let wrong_aud = VerifyOptions {
            audience: Some("https://api.example/other"),
            ..options()
        };
        let any_aud = VerifyOptions {
            audience: None,
            ..options()
        };
        let wrong_iss = VerifyOptions {
            issuer: "https://evil.example",
            ..options()
        };
        let no_leeway = VerifyOptions {
            leeway: Duration::ZERO,
            ..options()
        };
        use VerifyError::{Expired, NotYetValid, WrongAudience, WrongIssuer};
        let s = Duration::seconds;
        let cases: [(&VerifyOptions<'_>, OffsetDateTime, Result<(), VerifyError>); 8] = [
            (&options(), NOW + s(329), Ok(())),
            (&no_leeway, NOW + s(300), Err(Expired)),
            (&no_leeway, NOW - s(1), Err(NotYetValid)),
            (&options(), NOW - s(31), Err(NotYetValid)),
            (&wrong_aud, NOW, Err(WrongAudience)),
            (&any_aud, NOW, Ok(())),
            (&wrong_iss, NOW, Err(WrongIssuer)),
            (&options(), NOW + s(330), Err(Expired)),
        ];
        let cache = VerifiedTokens::default();
        for (options, now, expected) in cases {
            check(&cache, &token, &keys, &self::options(), NOW).unwrap();
            assert_eq!(cache.len(), 1, "cached before the check");
            let got = check(&cache, &token, &keys, options, now);
            assert_eq!(
                got.as_ref().map(|_| ()).map_err(Clone::clone),
                expected,
                "{options:?} at {now}"
            );
            assert_eq!(
                got.map(|v| v.claims),
                uncached(&token, &keys, options, now),
                "{options:?} at {now}: not what token::verify says"
            );
        }
        // Past `exp` + leeway, the entry is gone as well.
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn failures_are_never_cached() {
        let k = key(6);
        let keys = [k.public().clone()];
        let cache = VerifiedTokens::default();
        let good = token::mint(&k, &claims("jti-6")).unwrap();
        let forged = token::mint(&key(7), &claims("jti-6")).unwrap();
        let (_, footer) = good.rsplit_once('.').unwrap();
        let (forged_body, _) = forged.rsplit_once('.').unwrap();
        let cases = [
            ("garbage".to_owned(), NOW, VerifyError::Malformed),
            (forged.clone(), NOW, VerifyError::UnknownKey),
            (
                format!("{forged_body}.{footer}"),
                NOW,
                VerifyError::BadSignature,
            ),
            (good.clone(), NOW + Duration::hours(1), VerifyError::Expired),
            (
                good.clone(),
                NOW - Duration::hours(1),
                VerifyError::NotYetValid,
            ),
        ];
        for (token, now, expected) in cases {
            assert_eq!(
                check(&cache, &token, &keys, &options(), now).unwrap_err(),
                expected
            );
            assert_eq!(cache.len(), 0, "{expected:?} remembered");
        }
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let k = key(8);
        let keys = [k.public().clone()];
        let cache = VerifiedTokens::with_capacity(8);
        for n in 0..8 + 5 {
            let token = token::mint(&k, &claims(&format!("jti-{n}"))).unwrap();
            check(&cache, &token, &keys, &options(), NOW).unwrap();
            assert!(cache.len() <= 8);
            assert!(check(&cache, &token, &keys, &options(), NOW).is_ok());
        }
        let none = VerifiedTokens::with_capacity(0);
        let token = token::mint(&k, &claims("jti-none")).unwrap();
        assert!(check(&none, &token, &keys, &options(), NOW).is_ok());
        assert_eq!(none.len(), 0);
    }

    #[test]
    fn the_default_capacity_holds_without_signing_thousands_of_tokens() {
        let cache = VerifiedTokens::default();
        let key = key(9).public().clone();
        for n in 0..CAPACITY + 100 {
            let signed = Arc::new(Signed {
                claims: claims(&n.to_string()),
                key: key.clone(),
            });
            cache.remember(digest(&n.to_string()), signed, NOW, Duration::ZERO);
            assert!(cache.len() <= CAPACITY, "{} entries", cache.len());
        }
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first() {
        let cache = VerifiedTokens::with_capacity(4);
        let key = key(10).public().clone();
        let entry = |jti: &str, exp: OffsetDateTime| {
            Arc::new(Signed {
                claims: Claims { exp, ..claims(jti) },
                key: key.clone(),
            })
        };
        let later = NOW + Duration::hours(1);
        for jti in ["old-1", "old-2", "old-3"] {
            cache.remember(digest(jti), entry(jti, NOW), NOW, Duration::ZERO);
        }
        cache.remember(digest("live"), entry("live", later), NOW, Duration::ZERO);
        assert_eq!(cache.len(), 4);
        cache.remember(digest("new"), entry("new", later), NOW, Duration::ZERO);
        let entries = cache.lock();
        assert_eq!(entries.len(), 2);
        assert!(entries.contains_key(&digest("live")));
        assert!(entries.contains_key(&digest("new")));
    }
}
