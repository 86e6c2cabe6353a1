//! Client authentication at the token endpoint: which credentials a request presents,
//! and whether they are right. One module per method.

pub mod secret;
pub mod throttle;

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::sync::Arc;

use mayfly_store::{ClientView, StoreError};
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::directory::Directory;

/// Longest client id echoed into audit events.
const MAX_AUDITED_ID: usize = 64;

/// Credentials a request presented.
#[derive(Clone)]
pub enum Presented {
    /// `client_secret_basic`: HTTP Basic (RFC 6749 §2.3.1).
    Basic {
        /// Client id as sent.
        client_id: String,
        /// Secret as sent.
        secret: Zeroizing<String>,
    },
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    Post {
        /// Client id as sent.
        client_id: String,
        /// Secret as sent.
        secret: Zeroizing<String>,
    },
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(self.method())
            .field("client_id", &self.client_id())
            .finish_non_exhaustive()
    }
}

impl Presented {
    /// The client id as sent (untrusted).
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. } | Self::Post { client_id, .. } => client_id,
        }
    }

    /// The method name (RFC 8414 registry).
    pub fn method(&self) -> &'static str {
        match self {
            Self::Basic { .. } => "client_secret_basic",
            Self::Post { .. } => "client_secret_post",
        }
    }

    /// The claimed client id, shortened and made printable, for audit events.
    pub fn audited_id(&self) -> String {
        self.client_id()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_AUDITED_ID)
            .collect()
    }
}

/// Why credentials could not even be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresentError {
    /// No credentials at all.
    #[error("client authentication required")]
    Missing,
    /// A malformed `Authorization: Basic` header.
    #[error("malformed Basic authorization header")]
    MalformedBasic,
    /// More than one method used at once (RFC 6749 §2.3).
    #[error("use exactly one client authentication method")]
    MultipleMethods,
}

/// Reads the credentials from the `Authorization` header and the body parameters.
///
/// # Errors
/// [`PresentError`] when there are none, they are malformed, or two methods are mixed.
pub fn presented(
    authorization: Option<&str>,
    body_client_id: Option<&str>,
    body_secret: Option<&str>,
) -> Result<Presented, PresentError> {
    let basic = authorization.and_then(|value| {
        let (scheme, rest) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then(|| rest.trim())
    });
    match (basic, body_secret) {
        (Some(_), Some(_)) => Err(PresentError::MultipleMethods),
        (Some(encoded), None) => {
            let decoded = Zeroizing::new(
                STANDARD
                    .decode(encoded)
                    .map_err(|_| PresentError::MalformedBasic)?,
            );
            let text = std::str::from_utf8(&decoded).map_err(|_| PresentError::MalformedBasic)?;
            let (id, secret) = text.split_once(':').ok_or(PresentError::MalformedBasic)?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
            let client_id = form_decode(id);
            let secret = Zeroizing::new(form_decode(secret));
            if body_client_id.is_some_and(|body| body != client_id) {
                return Err(PresentError::MultipleMethods);
            }
            Ok(Presented::Basic { client_id, secret })
        }
        (None, Some(secret)) => {
            let client_id = body_client_id.ok_or(PresentError::Missing)?.to_owned();
            Ok(Presented::Post {
                client_id,
                secret: Zeroizing::new(secret.to_owned()),
            })
        }
        (None, None) => Err(PresentError::Missing),
    }
}

fn form_decode(part: &str) -> String {
    form_urlencoded::parse(format!("v={part}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Why authentication failed. The caller sees only `invalid_client`; the reason goes to
/// the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No such client, or a wrong secret (deliberately indistinguishable).
    #[error("unknown client or wrong secret")]
    BadCredentials,
    /// The client exists but is disabled.
    #[error("client disabled")]
    Disabled,
    /// The store failed.
    #[error("store failed")]
    Store(#[from] StoreError),
}

/// Authenticates presented credentials against the directory.
///
/// # Errors
/// [`AuthError`] when they do not match an enabled client.
pub async fn authenticate(
    directory: &Directory,
    presented: &Presented,
    now: OffsetDateTime,
) -> Result<Arc<ClientView>, AuthError> {
    let (Presented::Basic { client_id, secret } | Presented::Post { client_id, secret }) =
        presented;
    let view = match Uuid::parse_str(client_id) {
        Ok(id) => directory.client(id).await?,
        Err(_) => None,
    };
    // Hash and compare even for an unknown client so timing does not reveal which ids exist.
    let stored = view.as_ref().map_or(&[][..], |v| v.secrets.as_slice());
    let ok = secret::matches(secret, stored, now);
    match view {
        Some(v) if ok && v.client.enabled => Ok(v),
        Some(_) if ok => Err(AuthError::Disabled),
        _ => Err(AuthError::BadCredentials),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn reads_each_method() {
        let p = presented(Some(&basic("abc", "s%3Ae+t")), None, None).unwrap();
        assert_eq!(p.method(), "client_secret_basic");
        assert_eq!(p.client_id(), "abc");
        let Presented::Basic { secret, .. } = p else {
            unreachable!()
        };
        assert_eq!(
            secret.as_str(),
            "s:e t",
            "form-urlencoded per RFC 6749 §2.3.1"
        );

        let p = presented(None, Some("abc"), Some("sec")).unwrap();
        assert_eq!(p.method(), "client_secret_post");
        assert!(!format!("{p:?}").contains("sec\""), "Debug redacts");
    }

    #[test]
    fn refuses_bad_or_mixed_credentials() {
        assert_eq!(
            presented(None, None, None).unwrap_err(),
            PresentError::Missing
        );
        assert_eq!(
            presented(None, Some("abc"), None).unwrap_err(),
            PresentError::Missing
        );
        assert_eq!(
            presented(None, None, Some("s")).unwrap_err(),
            PresentError::Missing
        );
        assert_eq!(
            presented(Some("Basic !!!"), None, None).unwrap_err(),
            PresentError::MalformedBasic
        );
        assert_eq!(
            presented(
                Some(&format!("Basic {}", STANDARD.encode("nocolon"))),
                None,
                None
            )
            .unwrap_err(),
            PresentError::MalformedBasic
        );
        assert_eq!(
            presented(Some(&basic("a", "b")), None, Some("b")).unwrap_err(),
            PresentError::MultipleMethods
        );
        assert_eq!(
            presented(Some(&basic("a", "b")), Some("other"), None).unwrap_err(),
            PresentError::MultipleMethods
        );
        assert!(presented(Some(&basic("a", "b")), Some("a"), None).is_ok());
        // Another scheme is not client authentication.
        assert_eq!(
            presented(Some("Bearer x"), None, None).unwrap_err(),
            PresentError::Missing
        );
    }
}
