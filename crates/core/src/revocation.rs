//! What a revocation is, and which tokens it matches. Shared by the server's
//! introspection and the SDK's offline verifier, so both reject exactly the same tokens.

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
    /// Every token signed by a key (footer `kid`).
    Key,
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
    /// The jti, subject, client, grant or key id.
    pub value: String,
    /// Tokens issued before this are revoked (ignored for `jti`).
    pub issued_before: OffsetDateTime,
}

impl Rule {
    /// Whether this rule revokes a token with `claims`, signed by key `kid`.
    pub fn matches(&self, claims: &Claims, kid: &str) -> bool {
        let target = match self.kind {
            RevocationKind::Jti => return claims.jti == self.value,
            RevocationKind::Subject => claims.sub == self.value,
            RevocationKind::Client => claims.client_id == self.value,
            RevocationKind::Grant => claims.gid.contains(&self.value),
            RevocationKind::Key => kid == self.value,
        };
        target && claims.iat < self.issued_before
    }
}

/// Live rules indexed for O(1) checks: the question asked on every verification.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    jtis: std::collections::HashSet<String>,
    /// (kind, value) → the latest `issued_before` among rules for it.
    cutoffs: std::collections::HashMap<(RevocationKind, String), OffsetDateTime>,
}

impl RuleSet {
    /// Adds a rule.
    pub fn insert(&mut self, rule: Rule) {
        if rule.kind == RevocationKind::Jti {
            self.jtis.insert(rule.value);
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
        if self.jtis.contains(&claims.jti) {
            return true;
        }
        if self.cutoffs.is_empty() {
            return false;
        }
        let before = |kind: RevocationKind, value: &str| {
            self.cutoffs
                .get(&(kind, value.to_owned()))
                .is_some_and(|cutoff| claims.iat < *cutoff)
        };
        before(RevocationKind::Subject, &claims.sub)
            || before(RevocationKind::Client, &claims.client_id)
            || before(RevocationKind::Key, kid)
            || claims.gid.iter().any(|g| before(RevocationKind::Grant, g))
    }

    /// Number of rules held.
    pub fn len(&self) -> usize {
        self.jtis.len() + self.cutoffs.len()
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
            (rule(RevocationKind::Key, "k4.pid.b", after), false),
        ];
        for (r, expected) in cases {
            assert_eq!(r.matches(&c, "k4.pid.a"), expected, "{r:?}");
            let mut set = RuleSet::default();
            set.insert(r.clone());
            assert_eq!(set.revokes(&c, "k4.pid.a"), expected, "set: {r:?}");
        }
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
        assert_eq!(RevocationKind::parse("x"), None);
    }
}
