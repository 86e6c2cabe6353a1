//! Audience identifiers: absolute URIs naming a resource server (RFC 8707 §2).

use std::fmt;

/// Longest audience URI accepted.
pub const MAX_AUDIENCE_LEN: usize = 2048;

/// Why an audience URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudienceError {
    /// Not an absolute URI without fragment, or too long.
    #[error(
        "audience must be an absolute URI without a fragment (RFC 8707 §2), at most {MAX_AUDIENCE_LEN} characters"
    )]
    Invalid,
}

/// An absolute URI identifying a resource server, e.g. `https://api.example.com/orders`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Audience(String);

impl Audience {
    /// Parses an audience URI: `scheme ":" rest` (RFC 3986 §3.1 scheme), printable ASCII
    /// only, no fragment.
    ///
    /// # Errors
    /// [`AudienceError::Invalid`] otherwise.
    pub fn parse(uri: &str) -> Result<Self, AudienceError> {
        let Some((scheme, rest)) = uri.split_once(':') else {
            return Err(AudienceError::Invalid);
        };
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        let rest_ok = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
        if !scheme_ok || !rest_ok || uri.len() > MAX_AUDIENCE_LEN {
            return Err(AudienceError::Invalid);
        }
        Ok(Self(uri.to_owned()))
    }

    /// The URI.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, ok: bool) {
        assert_eq!(Audience::parse(input).is_ok(), ok, "input {input:?}");
    }

    #[test]
    fn uris() {
        check("https://api.example.com/orders", true);
        check("http://127.0.0.1:8080", true);
        check("urn:example:orders", true);
        check("spiffe://prod/orders", true);
        check("", false);
        check("orders", false);
        check("https:", false);
        check("1http://x", false);
        check("https://x/#frag", false);
        check("https://x/ y", false);
        check(
            &format!("https://x/{}", "a".repeat(MAX_AUDIENCE_LEN)),
            false,
        );
    }
}
