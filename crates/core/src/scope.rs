//! Scope grammar: `resource:action` names (RFC 6749 §3.3 scope-tokens, narrowed).
//!
//! A scope is one or more `:`-separated segments of `[A-Za-z0-9._-]`, with at least two
//! segments (`orders:read`, `mayfly:admin:read`). Narrower than RFC 6749 on purpose: no
//! quotes, backslashes or other characters that make logs and policies ambiguous.

use std::collections::BTreeSet;
use std::fmt;

/// Longest scope name accepted.
pub const MAX_SCOPE_LEN: usize = 128;
/// Most scopes one request or grant may carry.
pub const MAX_SCOPES: usize = 64;

/// The scope a resource server needs on the issuer's own audience to read the revocation
/// feed. Defined here, once, because the server requires it and the SDK asks for it;
/// the server's other `mayfly:*` scopes are in its `vocab` module.
pub const REVOCATIONS_READ_SCOPE: &str = "mayfly:revocations:read";
/// The scope a resource server needs on the issuer's own audience to report token use
/// (as [`REVOCATIONS_READ_SCOPE`], shared by server and SDK).
pub const USAGE_WRITE_SCOPE: &str = "mayfly:usage:write";

/// Why a scope or scope list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The list held no scope at all.
    #[error("no scope given")]
    Empty,
    /// A scope name broke the `resource:action` grammar.
    #[error("invalid scope name {0:?}: expected resource:action using A-Z a-z 0-9 . _ -")]
    Invalid(String),
    /// More scopes than [`MAX_SCOPES`].
    #[error("too many scopes (at most {MAX_SCOPES})")]
    TooMany,
}

/// One valid scope name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(String);

impl Scope {
    /// Parses one scope name.
    ///
    /// # Errors
    /// [`ScopeError::Invalid`] when the name breaks the grammar.
    pub fn parse(name: &str) -> Result<Self, ScopeError> {
        let segments_ok = name.split(':').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
        if name.len() > MAX_SCOPE_LEN || !name.contains(':') || !segments_ok {
            // Echo at most a short, printable prefix: the input is attacker-controlled.
            let shown: String = name.chars().take(40).filter(|c| !c.is_control()).collect();
            return Err(ScopeError::Invalid(shown));
        }
        Ok(Self(name.to_owned()))
    }

    /// The scope name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A non-empty, sorted, duplicate-free set of scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    /// Parses a space-separated scope list (the OAuth `scope` parameter).
    ///
    /// # Errors
    /// [`ScopeError`] when the list is empty, too long, or holds an invalid name.
    pub fn parse(list: &str) -> Result<Self, ScopeError> {
        Self::from_names(list.split(' ').filter(|s| !s.is_empty()))
    }

    /// Builds a set from individual names.
    ///
    /// # Errors
    /// [`ScopeError`] when there are none, too many, or one is invalid.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, ScopeError> {
        let mut set = BTreeSet::new();
        for name in names {
            set.insert(Scope::parse(name)?);
            if set.len() > MAX_SCOPES {
                return Err(ScopeError::TooMany);
            }
        }
        if set.is_empty() {
            return Err(ScopeError::Empty);
        }
        Ok(Self(set))
    }

    /// Whether every scope of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s.as_str() == scope)
    }

    /// The scopes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Number of scopes (never zero).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `ScopeSet` is never empty. Present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for scope in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, ScopeError>) {
        let got = ScopeSet::parse(input).map(|s| s.to_string());
        assert_eq!(got, expected.map(str::to_owned), "input {input:?}");
    }

    #[test]
    fn scope_lists() {
        check("orders:read", Ok("orders:read"));
        check("orders:write orders:read", Ok("orders:read orders:write"));
        check("orders:read orders:read", Ok("orders:read"));
        check(
            " orders:read  mayfly:admin:read ",
            Ok("mayfly:admin:read orders:read"),
        );
        check("", Err(ScopeError::Empty));
        check("   ", Err(ScopeError::Empty));
        check("orders", Err(ScopeError::Invalid("orders".into())));
        check("orders:", Err(ScopeError::Invalid("orders:".into())));
        check(":read", Err(ScopeError::Invalid(":read".into())));
        check("a::b", Err(ScopeError::Invalid("a::b".into())));
        check(
            "orders:read\tx:y",
            Err(ScopeError::Invalid("orders:readx:y".into())),
        );
        check(
            "orders:réad",
            Err(ScopeError::Invalid("orders:réad".into())),
        );
        check(
            "orders:\"read\"",
            Err(ScopeError::Invalid("orders:\"read\"".into())),
        );
    }

    #[test]
    fn limits() {
        let long = format!("a:{}", "b".repeat(MAX_SCOPE_LEN));
        assert!(matches!(Scope::parse(&long), Err(ScopeError::Invalid(_))));
        let many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("r:a{i}")).collect();
        assert_eq!(ScopeSet::parse(&many.join(" ")), Err(ScopeError::TooMany));
    }

    #[test]
    fn subset() {
        let small = ScopeSet::parse("a:read").unwrap();
        let big = ScopeSet::parse("a:read a:write").unwrap();
        assert!(small.is_subset(&big));
        assert!(!big.is_subset(&small));
        assert!(big.contains("a:write"));
    }
}
