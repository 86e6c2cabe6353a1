//! Which Mayfly identity a verified external token speaks for.
//!
//! A [`FederatedIdentity`] names a trusted issuer and either the exact `sub` a token
//! must carry, or conditions every one of which must hold:
//!
//! - equality of a claim, named by a JSON Pointer (RFC 6901) so that claim names with
//!   dots or slashes are unambiguous: `/repository`, `/ref`,
//!   `/kubernetes.io/namespace`, `/kubernetes.io/serviceaccount/name` (a `/` inside a
//!   name is written `~1`, a `~` is `~0`). Pointers walk objects only: a segment is
//!   always a member name, never an array index.
//! - a SPIFFE ID prefix on `sub`, matched on path-segment boundaries:
//!   `spiffe://td/ns/pay` matches `spiffe://td/ns/pay` and `spiffe://td/ns/pay/sa/api`,
//!   never `spiffe://td/ns/pay-evil`; IDs with `.` or `..` segments, empty segments,
//!   percent-encoding or other characters outside the SPIFFE grammar never match.
//!
//! [`match_identity`] picks the one candidate a token matches, refusing none and more
//! than one alike, and reports the claims that made the match (for the audit event).
//! [`FederatedIdentity::overlaps`] lets an admin API refuse, at write time, an identity
//! whose tokens would always be ambiguous with an existing one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{IdentityError, MatchError};
use crate::verify::VerifiedToken;

const MAX_PATH_LEN: usize = 256;
const MAX_PATH_DEPTH: usize = 8;
const MAX_SPIFFE_LEN: usize = 2048;
const MAX_TRUST_DOMAIN_LEN: usize = 255;
const MAX_CONDITIONS: usize = 16;
const MAX_VALUE_LEN: usize = 1024;

/// A JSON Pointer (RFC 6901) to a claim: non-empty, each segment a non-empty member
/// name, at most 8 deep.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClaimPath(String);

impl ClaimPath {
    /// Parses a pointer such as `/kubernetes.io/namespace`.
    ///
    /// # Errors
    /// [`IdentityError::ClaimPath`].
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        if text.len() > MAX_PATH_LEN {
            return Err(IdentityError::ClaimPath("longer than 256 bytes"));
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(IdentityError::ClaimPath("must start with /"));
        };
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.len() > MAX_PATH_DEPTH {
            return Err(IdentityError::ClaimPath("deeper than 8"));
        }
        for segment in segments {
            if segment.is_empty() {
                return Err(IdentityError::ClaimPath("empty segment"));
            }
            let mut chars = segment.chars();
            while let Some(c) = chars.next() {
                if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                    return Err(IdentityError::ClaimPath("~ must be followed by 0 or 1"));
                }
            }
        }
        Ok(Self(text.to_owned()))
    }

    /// The pointer text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The claim it points at in `claims`, walking objects only.
    pub fn resolve<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        self.0
            .split('/')
            .skip(1)
            .try_fold(claims, |value, segment| {
                let name = segment.replace("~1", "/").replace("~0", "~");
                value.as_object()?.get(&name)
            })
    }
}

impl TryFrom<String> for ClaimPath {
    type Error = IdentityError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<ClaimPath> for String {
    fn from(path: ClaimPath) -> Self {
        path.0
    }
}

/// Splits a SPIFFE ID (or, with `prefix`, an ID prefix that may be a bare trust domain
/// and end in `/`) into its checked form without a trailing `/`.
fn spiffe(text: &str, prefix: bool) -> Result<String, IdentityError> {
    let bad = IdentityError::Spiffe;
    if text.len() > MAX_SPIFFE_LEN {
        return Err(bad("longer than 2048 bytes"));
    }
    let rest = text
        .strip_prefix("spiffe://")
        .ok_or(bad("must start with spiffe://"))?;
    let rest = if prefix {
        rest.strip_suffix('/').unwrap_or(rest)
    } else {
        rest
    };
    let (domain, path) = match rest.split_once('/') {
        Some((d, p)) => (d, Some(p)),
        None => (rest, None),
    };
    if domain.is_empty()
        || domain.len() > MAX_TRUST_DOMAIN_LEN
        || !domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
    {
        return Err(bad("trust domain must be lowercase letters, digits, - . _"));
    }
    match path {
        None if !prefix => return Err(bad("a workload ID needs a path")),
        None => {}
        Some(path) => {
            for segment in path.split('/') {
                if segment.is_empty() || segment == "." || segment == ".." {
                    return Err(bad("empty, . or .. path segment"));
                }
                if !segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                {
                    return Err(bad("path must be letters, digits, - . _"));
                }
            }
        }
    }
    Ok(format!("spiffe://{rest}"))
}

/// A SPIFFE ID prefix (`spiffe://trust-domain` or `spiffe://trust-domain/path`, a
/// trailing `/` ignored), matched on path-segment boundaries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeIdPrefix(String);

impl SpiffeIdPrefix {
    /// Parses a prefix.
    ///
    /// # Errors
    /// [`IdentityError::Spiffe`].
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        spiffe(text, true).map(Self)
    }

    /// The prefix, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `id` is a well-formed SPIFFE ID equal to this prefix or below it.
    pub fn matches(&self, id: &str) -> bool {
        spiffe(id, false).is_ok_and(|id| self.covers_text(&id))
    }

    fn covers_text(&self, id: &str) -> bool {
        id.strip_prefix(self.0.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

impl TryFrom<String> for SpiffeIdPrefix {
    type Error = IdentityError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<SpiffeIdPrefix> for String {
    fn from(prefix: SpiffeIdPrefix) -> Self {
        prefix.0
    }
}

/// One condition on a token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Condition {
    /// The claim at `claim` equals `value` (a string, number or boolean; JSON equality,
    /// so `"1"` is not `1`).
    Equals {
        /// Where the claim is.
        claim: ClaimPath,
        /// What it must be.
        value: Value,
    },
    /// `sub` is a SPIFFE ID at or below `prefix`.
    SpiffePrefix {
        /// The prefix.
        prefix: SpiffeIdPrefix,
    },
}

impl Condition {
    fn check(&self) -> Result<(), IdentityError> {
        match self {
            Self::Equals { value, .. } => match value {
                Value::String(s) if s.len() <= MAX_VALUE_LEN => Ok(()),
                Value::Number(_) | Value::Bool(_) => Ok(()),
                _ => Err(IdentityError::Value),
            },
            Self::SpiffePrefix { .. } => Ok(()),
        }
    }

    /// The claim that satisfied this condition in `claims`, if it holds.
    fn satisfied_by(&self, claims: &Value) -> Option<MatchedClaim> {
        match self {
            Self::Equals { claim, value } => {
                (claim.resolve(claims)? == value).then(|| MatchedClaim {
                    claim: claim.as_str().to_owned(),
                    value: value.clone(),
                })
            }
            Self::SpiffePrefix { prefix } => {
                let sub = claims.get("sub")?.as_str()?;
                prefix.matches(sub).then(|| MatchedClaim {
                    claim: "/sub".to_owned(),
                    value: Value::String(sub.to_owned()),
                })
            }
        }
    }

    /// Whether every token satisfying `self` satisfies `other`.
    fn implies(&self, other: &Self) -> bool {
        match (self, other) {
            (a, b) if a == b => true,
            (Self::SpiffePrefix { prefix: narrow }, Self::SpiffePrefix { prefix: wide }) => {
                wide.covers_text(narrow.as_str())
            }
            (Self::Equals { claim, value }, Self::SpiffePrefix { prefix }) => {
                claim.as_str() == "/sub" && value.as_str().is_some_and(|s| prefix.matches(s))
            }
            _ => false,
        }
    }
}

/// What a token must show to be an identity's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum IdentityRule {
    /// `sub` is exactly this.
    Subject {
        /// The subject.
        subject: String,
    },
    /// Every condition holds (at most 16, at least one).
    Claims {
        /// The conditions.
        conditions: Vec<Condition>,
    },
}

/// A Mayfly identity that tokens of one trusted issuer can speak for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawIdentity")]
pub struct FederatedIdentity {
    issuer: String,
    rule: IdentityRule,
}

#[derive(Deserialize)]
struct RawIdentity {
    issuer: String,
    rule: IdentityRule,
}

impl TryFrom<RawIdentity> for FederatedIdentity {
    type Error = IdentityError;

    fn try_from(raw: RawIdentity) -> Result<Self, Self::Error> {
        Self::new(raw.issuer, raw.rule)
    }
}

impl AsRef<FederatedIdentity> for FederatedIdentity {
    fn as_ref(&self) -> &FederatedIdentity {
        self
    }
}

/// A claim that made an identity match: its pointer and value, for the audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedClaim {
    /// The claim's JSON Pointer (`/sub` for subject and SPIFFE rules).
    pub claim: String,
    /// Its value in the token.
    pub value: Value,
}

/// The one identity a token matched.
#[derive(Debug)]
pub struct IdentityMatch<'a, T> {
    /// The matching candidate.
    pub identity: &'a T,
    /// The claims that made it match.
    pub matched: Vec<MatchedClaim>,
}

impl FederatedIdentity {
    /// Checks and builds an identity.
    ///
    /// # Errors
    /// [`IdentityError`]: empty issuer, subject or condition set, more than 16
    /// conditions, two equality conditions on one claim, a non-scalar value.
    pub fn new(issuer: impl Into<String>, rule: IdentityRule) -> Result<Self, IdentityError> {
        let issuer = issuer.into();
        if issuer.is_empty() {
            return Err(IdentityError::Issuer);
        }
        match &rule {
            IdentityRule::Subject { subject } if subject.is_empty() => {
                return Err(IdentityError::Empty);
            }
            IdentityRule::Subject { .. } => {}
            IdentityRule::Claims { conditions } => {
                if conditions.is_empty() || conditions.len() > MAX_CONDITIONS {
                    return Err(IdentityError::Empty);
                }
                let mut paths = Vec::new();
                for c in conditions {
                    c.check()?;
                    if let Condition::Equals { claim, .. } = c {
                        if paths.contains(&claim) {
                            return Err(IdentityError::DuplicateClaim);
                        }
                        paths.push(claim);
                    }
                }
            }
        }
        Ok(Self { issuer, rule })
    }

    /// The trusted issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The rule.
    pub fn rule(&self) -> &IdentityRule {
        &self.rule
    }

    /// The claims that make `token` this identity's, or `None`.
    pub fn matches(&self, token: &VerifiedToken) -> Option<Vec<MatchedClaim>> {
        if token.issuer() != self.issuer {
            return None;
        }
        match &self.rule {
            IdentityRule::Subject { subject } => (token.subject() == subject).then(|| {
                vec![MatchedClaim {
                    claim: "/sub".to_owned(),
                    value: Value::String(subject.clone()),
                }]
            }),
            IdentityRule::Claims { conditions } => conditions
                .iter()
                .map(|c| c.satisfied_by(token.claims()))
                .collect(),
        }
    }

    /// The rule as conditions (an exact subject is equality on `/sub`).
    fn conditions(&self) -> Vec<Condition> {
        match &self.rule {
            IdentityRule::Subject { subject } => vec![Condition::Equals {
                claim: ClaimPath("/sub".to_owned()),
                value: Value::String(subject.clone()),
            }],
            IdentityRule::Claims { conditions } => conditions.clone(),
        }
    }

    /// Whether some token certainly matches both: same issuer, and every token one
    /// matches the other matches too (same subject, identical or narrower condition
    /// sets, nested SPIFFE prefixes). Such a pair makes those tokens ambiguous, so an
    /// admin API should refuse the second. `false` does not prove the two disjoint
    /// (`/ref` and `/repository` conditions may both hold): matching still refuses
    /// ambiguity at token time.
    pub fn overlaps(&self, other: &Self) -> bool {
        if self.issuer != other.issuer {
            return false;
        }
        let (a, b) = (self.conditions(), other.conditions());
        let implies = |narrow: &[Condition], wide: &[Condition]| {
            satisfiable(narrow) && wide.iter().all(|w| narrow.iter().any(|n| n.implies(w)))
        };
        implies(&a, &b) || implies(&b, &a)
    }
}

/// Whether some token can satisfy every condition: SPIFFE prefixes must nest, and an
/// exact `/sub` must be under all of them.
fn satisfiable(conditions: &[Condition]) -> bool {
    let prefixes: Vec<&SpiffeIdPrefix> = conditions
        .iter()
        .filter_map(|c| match c {
            Condition::SpiffePrefix { prefix } => Some(prefix),
            Condition::Equals { .. } => None,
        })
        .collect();
    let nested = prefixes.iter().all(|a| {
        prefixes
            .iter()
            .all(|b| a.covers_text(b.as_str()) || b.covers_text(a.as_str()))
    });
    let sub = conditions.iter().find_map(|c| match c {
        Condition::Equals { claim, value } if claim.as_str() == "/sub" => Some(value),
        _ => None,
    });
    nested
        && sub.is_none_or(|s| {
            prefixes.is_empty()
                || s.as_str()
                    .is_some_and(|s| prefixes.iter().all(|p| p.matches(s)))
        })
}

/// The single candidate `token` matches, with the claims that made it match.
///
/// # Errors
/// [`MatchError::NoMatch`], [`MatchError::Ambiguous`] when more than one matches.
pub fn match_identity<'a, T: AsRef<FederatedIdentity>>(
    candidates: &'a [T],
    token: &VerifiedToken,
) -> Result<IdentityMatch<'a, T>, MatchError> {
    let mut found = None;
    let mut count = 0;
    for candidate in candidates {
        if let Some(matched) = candidate.as_ref().matches(token) {
            count += 1;
            found.get_or_insert(IdentityMatch {
                identity: candidate,
                matched,
            });
        }
    }
    match (found, count) {
        (Some(m), 1) => Ok(m),
        (None, _) => Err(MatchError::NoMatch),
        (Some(_), count) => Err(MatchError::Ambiguous { count }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claim_paths_are_json_pointers_to_members() {
        let claims = json!({
            "kubernetes.io": {"namespace": "pay", "serviceaccount": {"name": "api"}},
            "a/b": {"c~d": 1},
            "list": ["x"],
        });
        let at = |p: &str| ClaimPath::parse(p).unwrap().resolve(&claims).cloned();
        assert_eq!(at("/kubernetes.io/namespace"), Some(json!("pay")));
        assert_eq!(at("/kubernetes.io/serviceaccount/name"), Some(json!("api")));
        assert_eq!(at("/a~1b/c~0d"), Some(json!(1)));
        assert_eq!(at("/list/0"), None, "no array indexing");
        let deep = "/a".repeat(9);
        for bad in [
            "",
            "kubernetes.io",
            "/",
            "/a//b",
            "/a~2",
            "/a~",
            deep.as_str(),
        ] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spiffe_prefixes_match_on_segment_boundaries() {
        let p = SpiffeIdPrefix::parse("spiffe://td/ns/pay/").unwrap();
        assert_eq!(p.as_str(), "spiffe://td/ns/pay");
        assert!(p.matches("spiffe://td/ns/pay"));
        assert!(p.matches("spiffe://td/ns/pay/sa/api"));
        for no in [
            "spiffe://td/ns/pay-evil",
            "spiffe://td/ns/payx/sa",
            "spiffe://td/ns/pay/../admin",
            "spiffe://td/ns/pay/./x",
            "spiffe://td/ns/pay//x",
            "spiffe://td/ns/pay/%2e%2e",
            "spiffe://td/ns/pay/x?y",
            "spiffe://TD/ns/pay/x",
            "spiffe://td2/ns/pay/x",
            "https://td/ns/pay/x",
        ] {
            assert!(!p.matches(no), "{no}");
        }
        let domain = SpiffeIdPrefix::parse("spiffe://td").unwrap();
        assert!(domain.matches("spiffe://td/anything"));
        assert!(!domain.matches("spiffe://td.evil/anything"));
        for bad in ["spiffe://", "spiffe://td/../x", "spiffe://Td/x", "td/x"] {
            assert!(SpiffeIdPrefix::parse(bad).is_err(), "{bad}");
        }
    }

    fn claims(conditions: Vec<Condition>) -> FederatedIdentity {
        FederatedIdentity::new("https://iss", IdentityRule::Claims { conditions }).unwrap()
    }

    fn eq(claim: &str, value: &str) -> Condition {
        Condition::Equals {
            claim: ClaimPath::parse(claim).unwrap(),
            value: json!(value),
        }
    }

    fn spiffe_prefix(p: &str) -> Condition {
        Condition::SpiffePrefix {
            prefix: SpiffeIdPrefix::parse(p).unwrap(),
        }
    }

    #[test]
    fn overlap_is_found_where_it_is_certain() {
        let sub = |s: &str| {
            FederatedIdentity::new(
                "https://iss",
                IdentityRule::Subject {
                    subject: s.to_owned(),
                },
            )
            .unwrap()
        };
        assert!(sub("a").overlaps(&sub("a")));
        assert!(!sub("a").overlaps(&sub("b")));
        let other_issuer = FederatedIdentity::new(
            "https://other",
            IdentityRule::Subject {
                subject: "a".into(),
            },
        )
        .unwrap();
        assert!(!sub("a").overlaps(&other_issuer));
        let repo = claims(vec![
            eq("/repository", "o/r"),
            eq("/ref", "refs/heads/main"),
        ]);
        let same = claims(vec![
            eq("/ref", "refs/heads/main"),
            eq("/repository", "o/r"),
        ]);
        let wider = claims(vec![eq("/repository", "o/r")]);
        let other = claims(vec![eq("/repository", "o/x")]);
        assert!(repo.overlaps(&same));
        assert!(repo.overlaps(&wider) && wider.overlaps(&repo));
        assert!(!repo.overlaps(&other));
        // Different claims: undecidable here, so not refused.
        assert!(!wider.overlaps(&claims(vec![eq("/ref", "refs/heads/main")])));
        assert!(sub("a").overlaps(&claims(vec![eq("/sub", "a")])));
        let pay = claims(vec![spiffe_prefix("spiffe://td/ns/pay")]);
        let pay_api = claims(vec![spiffe_prefix("spiffe://td/ns/pay/sa/api")]);
        let pay_evil = claims(vec![spiffe_prefix("spiffe://td/ns/pay-evil")]);
        assert!(pay.overlaps(&pay_api));
        assert!(!pay.overlaps(&pay_evil));
        assert!(pay.overlaps(&sub("spiffe://td/ns/pay/sa/x")));
        assert!(!pay.overlaps(&sub("spiffe://td/ns/pay-evil/x")));
    }

    #[test]
    fn identities_are_checked() {
        let empty =
            FederatedIdentity::new("https://iss", IdentityRule::Claims { conditions: vec![] });
        assert_eq!(empty, Err(IdentityError::Empty));
        let dup = FederatedIdentity::new(
            "https://iss",
            IdentityRule::Claims {
                conditions: vec![eq("/ref", "a"), eq("/ref", "b")],
            },
        );
        assert_eq!(dup, Err(IdentityError::DuplicateClaim));
        let object = FederatedIdentity::new(
            "https://iss",
            IdentityRule::Claims {
                conditions: vec![Condition::Equals {
                    claim: ClaimPath::parse("/a").unwrap(),
                    value: json!({"x": 1}),
                }],
            },
        );
        assert_eq!(object, Err(IdentityError::Value));
        let parsed: Result<FederatedIdentity, _> = serde_json::from_value(json!({
            "issuer": "https://iss",
            "rule": {"type": "claims", "conditions": [
                {"type": "equals", "claim": "/kubernetes.io/namespace", "value": "pay"},
                {"type": "spiffe_prefix", "prefix": "spiffe://td/ns/pay"}
            ]}
        }));
        assert!(parsed.is_ok());
        let bad: Result<FederatedIdentity, _> = serde_json::from_value(json!({
            "issuer": "https://iss",
            "rule": {"type": "claims", "conditions": [
                {"type": "equals", "claim": "kubernetes.io.namespace", "value": "pay"}
            ]}
        }));
        assert!(bad.is_err());
    }
}
