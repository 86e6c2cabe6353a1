//! What a revocation is, and which tokens it matches. Shared by the server's
//! introspection and the SDK's offline verifier, so both reject exactly the same tokens.
//!
//! A token exchanged from others (its `orig` claim) is revoked by whatever revokes one
//! of them: their `jti`, `client_id`, signing key, `sub` and `fam` are checked against
//! each one's own `iat`, so a delegated token ends with its actor (the actor token is
//! one of its origins, nested delegations carry theirs along); `gid` and the subject's
//! `fam` are also carried over into the exchanged token itself.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::token::Claims;

/// What a revocation targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RevocationKind {
    /// One token, by `jti`.
    Jti,
    /// Every token of a subject (`sub`).
    Subject,
    /// Every token a client obtained (`client_id`).
    Client,
    /// Every token issued under a grant (`gid`).
    Grant,
    /// Every token signed by a key (footer `kid`), whatever its `iat`: a leaked key
    /// can sign any `iat` it likes.
    Key,
    /// Every token issued from a refresh-token family (`fam`).
    Family,
}

impl RevocationKind {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jti => "jti",
            Self::Subject => "subject",
            Self::Client => "client",
            Self::Grant => "grant",
            Self::Key => "key",
            Self::Family => "family",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "jti" => Self::Jti,
            "subject" => Self::Subject,
            "client" => Self::Client,
            "grant" => Self::Grant,
            "key" => Self::Key,
            "family" => Self::Family,
            _ => return None,
        })
    }
}

/// A revocation rule: tokens of `kind` = `value` issued before `issued_before` are dead.
///
/// Token `iat` has whole-second precision, so a token issued in the same second as the
/// revocation is also rejected: revocation errs on the side of rejecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What it targets.
    pub kind: RevocationKind,
    /// The jti, subject, client, grant, key or family id.
    pub value: String,
    /// Tokens issued before this are revoked (ignored for `jti` and `key`).
    pub issued_before: OffsetDateTime,
}

impl Rule {
    /// Whether this rule revokes a token with `claims`, signed by key `kid`.
    pub fn matches(&self, claims: &Claims, kid: &str) -> bool {
        let value = self.value.as_str();
        let before = |iat: OffsetDateTime| iat < self.issued_before;
        match self.kind {
            RevocationKind::Jti => {
                claims.jti == value || claims.orig.iter().any(|o| o.jti == value)
            }
            RevocationKind::Subject => {
                (claims.sub == value && before(claims.iat))
                    || claims
                        .orig
                        .iter()
                        .any(|o| o.sub.as_deref() == Some(value) && before(o.iat))
            }
            RevocationKind::Grant => claims.gid.iter().any(|g| g == value) && before(claims.iat),
            RevocationKind::Family => {
                (claims.fam.as_deref() == Some(value) && before(claims.iat))
                    || claims
                        .orig
                        .iter()
                        .any(|o| o.fam.as_deref() == Some(value) && before(o.iat))
            }
            RevocationKind::Client => {
                (claims.client_id == value && before(claims.iat))
                    || claims
                        .orig
                        .iter()
                        .any(|o| o.client_id == value && before(o.iat))
            }
            RevocationKind::Key => kid == value || claims.orig.iter().any(|o| o.kid == value),
        }
    }
}

/// Live rules indexed for O(1) checks: the question asked on every verification.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    jtis: std::collections::HashSet<String>,
    /// Revoked signing keys: nothing they signed is valid, whatever its `iat`.
    keys: std::collections::HashSet<String>,
    /// (kind, value) → the latest `issued_before` among rules for it.
    cutoffs: std::collections::HashMap<(RevocationKind, String), OffsetDateTime>,
}

impl RuleSet {
    /// Adds a rule.
    pub fn insert(&mut self, rule: Rule) {
        if rule.kind == RevocationKind::Jti {
            self.jtis.insert(rule.value);
        } else if rule.kind == RevocationKind::Key {
            self.keys.insert(rule.value);
        } else {
            let cutoff = self
                .cutoffs
                .entry((rule.kind, rule.value))
                .or_insert(rule.issued_before);
            *cutoff = (*cutoff).max(rule.issued_before);
        }
    }

    /// Whether any rule revokes a token with `claims`, signed by key `kid`.
    pub fn revokes(&self, claims: &Claims, kid: &str) -> bool {
        if self.jtis.contains(&claims.jti) || claims.orig.iter().any(|o| self.jtis.contains(&o.jti))
        {
            return true;
        }
        if !self.keys.is_empty()
            && (self.keys.contains(kid) || claims.orig.iter().any(|o| self.keys.contains(&o.kid)))
        {
            return true;
        }
        if self.cutoffs.is_empty() {
            return false;
        }
        let before_at = |kind: RevocationKind, value: &str, iat: OffsetDateTime| {
            self.cutoffs
                .get(&(kind, value.to_owned()))
                .is_some_and(|cutoff| iat < *cutoff)
        };
        let before = |kind: RevocationKind, value: &str| before_at(kind, value, claims.iat);
        before(RevocationKind::Subject, &claims.sub)
            || before(RevocationKind::Client, &claims.client_id)
            || claims.gid.iter().any(|g| before(RevocationKind::Grant, g))
            || claims
                .fam
                .as_deref()
                .is_some_and(|f| before(RevocationKind::Family, f))
            || claims.orig.iter().any(|o| {
                before_at(RevocationKind::Client, &o.client_id, o.iat)
                    || o.sub
                        .as_deref()
                        .is_some_and(|sub| before_at(RevocationKind::Subject, sub, o.iat))
                    || o.fam
                        .as_deref()
                        .is_some_and(|fam| before_at(RevocationKind::Family, fam, o.iat))
            })
    }

    /// Whether a rule revokes every token signed by `kid` (a verifier stops trusting
    /// the key itself).
    pub fn revokes_key(&self, kid: &str) -> bool {
        self.keys.contains(kid)
    }

    /// Number of rules held.
    pub fn len(&self) -> usize {
        self.jtis.len() + self.keys.len() + self.cutoffs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;

    const T: OffsetDateTime = datetime!(2026-11-28 12:00:00 UTC);

    fn claims() -> Claims {
        Claims {
            iss: "i".into(),
            sub: "sub-1".into(),
            aud: "a".into(),
            iat: T,
            nbf: T,
            exp: T + Duration::minutes(5),
            jti: "jti-1".into(),
            scope: "a:b".into(),
            client_id: "client-1".into(),
            gid: vec!["grant-1".into(), "grant-2".into()],
            cnf: None,
            cidr: vec![],
            act: None,
            fam: Some("fam-1".into()),
            orig: Vec::new(),
        }
    }

    fn rule(kind: RevocationKind, value: &str, issued_before: OffsetDateTime) -> Rule {
        Rule {
            kind,
            value: value.into(),
            issued_before,
        }
    }

    #[test]
    fn each_kind_matches_its_target_issued_before_the_cutoff() {
        let c = claims();
        let after = T + Duration::seconds(1);
        let cases = [
            (
                rule(RevocationKind::Jti, "jti-1", T - Duration::days(1)),
                true,
            ),
            (rule(RevocationKind::Jti, "jti-2", after), false),
            (rule(RevocationKind::Subject, "sub-1", after), true),
            (rule(RevocationKind::Subject, "sub-1", T), false),
            (rule(RevocationKind::Client, "client-1", after), true),
            (rule(RevocationKind::Client, "client-2", after), false),
            (rule(RevocationKind::Grant, "grant-2", after), true),
            (rule(RevocationKind::Grant, "grant-3", after), false),
            (rule(RevocationKind::Key, "k4.pid.a", after), true),
            // A leaked key signs any iat: its rule has no cutoff.
            (
                rule(RevocationKind::Key, "k4.pid.a", T - Duration::days(1)),
                true,
            ),
            (rule(RevocationKind::Key, "k4.pid.b", after), false),
            (rule(RevocationKind::Family, "fam-1", after), true),
            (rule(RevocationKind::Family, "fam-1", T), false),
            (rule(RevocationKind::Family, "fam-2", after), false),
        ];
        for (r, expected) in cases {
            assert_eq!(r.matches(&c, "k4.pid.a"), expected, "{r:?}");
            let mut set = RuleSet::default();
            set.insert(r.clone());
            assert_eq!(set.revokes(&c, "k4.pid.a"), expected, "set: {r:?}");
        }
    }

    #[test]
    fn revoking_an_origin_revokes_what_was_exchanged_from_it() {
        let earlier = T - Duration::seconds(30);
        let exchanged = Claims {
            jti: "jti-x".into(),
            client_id: "client-9".into(),
            orig: vec![crate::token::Origin {
                jti: "jti-1".into(),
                client_id: "client-1".into(),
                kid: "k4.pid.old".into(),
                iat: earlier,
                sub: Some("actor-1".into()),
                fam: Some("fam-actor".into()),
            }],
            ..claims()
        };
        let cases = [
            (rule(RevocationKind::Jti, "jti-1", T), true),
            (rule(RevocationKind::Jti, "jti-2", T), false),
            // The origin's client and key, judged by the origin's own iat.
            (rule(RevocationKind::Client, "client-1", T), true),
            (rule(RevocationKind::Client, "client-1", earlier), false),
            (rule(RevocationKind::Key, "k4.pid.old", T), true),
            (
                rule(
                    RevocationKind::Key,
                    "k4.pid.old",
                    earlier - Duration::days(1),
                ),
                true,
            ),
            (rule(RevocationKind::Client, "client-9", after_t()), true),
            // The origin's subject and login (an actor's), by the origin's iat.
            (rule(RevocationKind::Subject, "actor-1", T), true),
            (rule(RevocationKind::Subject, "actor-1", earlier), false),
            (rule(RevocationKind::Family, "fam-actor", T), true),
            (rule(RevocationKind::Family, "fam-actor", earlier), false),
        ];
        for (r, expected) in cases {
            assert_eq!(r.matches(&exchanged, "k4.pid.new"), expected, "{r:?}");
            let mut set = RuleSet::default();
            set.insert(r.clone());
            assert_eq!(
                set.revokes(&exchanged, "k4.pid.new"),
                expected,
                "set: {r:?}"
            );
        }
    }

    fn after_t() -> OffsetDateTime {
        T + Duration::seconds(1)
    }

    #[test]
    fn later_cutoffs_win() {
        let mut set = RuleSet::default();
        set.insert(rule(RevocationKind::Client, "client-1", T));
        assert!(!set.revokes(&claims(), "k"));
        set.insert(rule(
            RevocationKind::Client,
            "client-1",
            T + Duration::seconds(5),
        ));
        set.insert(rule(
            RevocationKind::Client,
            "client-1",
            T - Duration::seconds(5),
        ));
        assert!(set.revokes(&claims(), "k"));
        assert_eq!(set.len(), 1);
        assert_eq!(RevocationKind::parse("grant"), Some(RevocationKind::Grant));
        assert_eq!(
            RevocationKind::parse("family"),
            Some(RevocationKind::Family)
        );
        assert_eq!(RevocationKind::parse("x"), None);
    }
}
