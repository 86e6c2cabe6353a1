//! Client authentication at the token endpoint: which credentials a request presents,
//! and whether they are right. One module per method: `secret.rs`
//! (`client_secret_basic`, `client_secret_post`), `assertion.rs` (`private_key_jwt` with
//! a key registered for the client), `federated.rs` (`private_key_jwt` with an external
//! JWT from a trusted issuer: workload identity federation).
//!
//! A JWT client assertion is federated when its (unverified) `iss` is not a client id:
//! a `private_key_jwt` assertion must have `iss` = `sub` = the client id, a canonical
//! UUID, while a trusted issuer is an URL. Both are RFC 7523 client assertions, so both
//! report the registry name `private_key_jwt` ([`Presented::method`]); the audit log
//! tells them apart ([`Presented::audit_method`]: `federated_jwt`).

pub mod assertion;
pub mod federated;
pub mod secret;
pub mod throttle;

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::sync::Arc;

use mayfly_federation::Verifier;
use mayfly_store::{ClientView, FederationStore, ReplayStore, StoreError, Subject};
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
    /// `private_key_jwt`: a signed JWT in `client_assertion` (RFC 7523 §2.2).
    Assertion {
        /// The `client_id` parameter, else the assertion's (unverified) `sub`.
        client_id: String,
        /// The assertion as sent.
        assertion: Zeroizing<String>,
    },
    /// `private_key_jwt` with an external JWT (a Kubernetes, CI or SPIFFE token) whose
    /// `iss` is not a client id: workload identity federation ([`federated`]).
    Federated {
        /// The `client_id` parameter, if sent: then it must be the matched client.
        client_id: Option<String>,
        /// The token's (unverified) `iss`.
        issuer: String,
        /// The token as sent.
        assertion: Zeroizing<String>,
    },
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(self.audit_method())
            .field("client_id", &self.client_id())
            .finish_non_exhaustive()
    }
}

impl Presented {
    /// The client id as sent (untrusted).
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. }
            | Self::Post { client_id, .. }
            | Self::Assertion { client_id, .. } => client_id,
            Self::Federated { client_id, .. } => client_id.as_deref().unwrap_or_default(),
        }
    }

    /// The method name (RFC 8414 registry).
    pub fn method(&self) -> &'static str {
        match self {
            Self::Basic { .. } => "client_secret_basic",
            Self::Post { .. } => "client_secret_post",
            Self::Assertion { .. } | Self::Federated { .. } => "private_key_jwt",
        }
    }

    /// The method as the audit log names it: [`Self::method`], but `federated_jwt` for
    /// an external JWT.
    pub fn audit_method(&self) -> &'static str {
        match self {
            Self::Federated { .. } => "federated_jwt",
            other => other.method(),
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
    /// A `client_assertion_type` other than JWT bearer, or an assertion without it.
    #[error("client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer")]
    AssertionType,
    /// An assertion that names no client.
    #[error("malformed client assertion")]
    MalformedAssertion,
}

/// The credential parameters of a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `client_id` body parameter.
    pub client_id: Option<&'a str>,
    /// The `client_secret` body parameter.
    pub client_secret: Option<&'a str>,
    /// The `client_assertion_type` body parameter.
    pub client_assertion_type: Option<&'a str>,
    /// The `client_assertion` body parameter.
    pub client_assertion: Option<&'a str>,
}

/// Reads the credentials of a request: Basic, body secret, or a client assertion.
///
/// # Errors
/// [`PresentError`] when there are none, they are malformed, or two methods are mixed.
pub fn presented_any(c: &Credentials<'_>) -> Result<Presented, PresentError> {
    if c.client_assertion.is_none() && c.client_assertion_type.is_none() {
        return presented(c.authorization, c.client_id, c.client_secret);
    }
    let basic = c
        .authorization
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    if basic || c.client_secret.is_some() {
        return Err(PresentError::MultipleMethods);
    }
    if c.client_assertion_type != Some(assertion::JWT_BEARER) {
        return Err(PresentError::AssertionType);
    }
    let jwt = c.client_assertion.ok_or(PresentError::AssertionType)?;
    if let Some(issuer) = federated::federated_issuer(jwt) {
        return Ok(Presented::Federated {
            client_id: c.client_id.map(str::to_owned),
            issuer,
            assertion: Zeroizing::new(jwt.to_owned()),
        });
    }
    let claimed = assertion::claimed_client(jwt).ok_or(PresentError::MalformedAssertion)?;
    // RFC 7521 §4.2: a client_id, when sent, must be the assertion's client.
    if c.client_id.is_some_and(|id| id != claimed) {
        return Err(PresentError::MalformedAssertion);
    }
    Ok(Presented::Assertion {
        client_id: claimed,
        assertion: Zeroizing::new(jwt.to_owned()),
    })
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
    /// A wrong secret (for the caller, indistinguishable from an unknown client).
    #[error("unknown client or wrong secret")]
    BadCredentials,
    /// No such client, or an id not in canonical form. Reads as [`Self::BadCredentials`]
    /// in the audit log too; only the throttle tells them apart (it counts failures
    /// against a client only when the client exists).
    #[error("unknown client or wrong secret")]
    UnknownClient,
    /// The client exists but is disabled.
    #[error("client disabled")]
    Disabled,
    /// A client assertion failed a check (named, for the audit log).
    #[error("{0}")]
    BadAssertion(&'static str),
    /// An external JWT was refused, or its issuer's keys are unavailable.
    #[error("{0}")]
    Federated(#[from] federated::FederatedError),
    /// The store failed.
    #[error("store failed")]
    Store(#[from] StoreError),
}

/// What authentication checks credentials against.
pub struct Authenticator<'a> {
    /// Clients, with their secrets and public keys.
    pub directory: &'a Directory,
    /// Where assertion `jti`s (and external tokens) are spent.
    pub replay: &'a dyn ReplayStore,
    /// Trusted issuers and federated identities.
    pub federation: &'a dyn FederationStore,
    /// The process's one verifier of external tokens.
    pub verifier: &'a Verifier,
    /// The issuer URL: assertions may name it or one of its endpoints as `aud`.
    pub issuer: &'a str,
    /// Now.
    pub now: OffsetDateTime,
}

/// The client id as a UUID when it is spelled canonically (lowercase, hyphenated), the
/// only spelling of a client id: any other names no client, so one client can never be
/// counted, cached or audited under two names.
pub fn canonical_id(text: &str) -> Option<Uuid> {
    Uuid::try_parse(text)
        .ok()
        .filter(|id| id.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == text)
}

/// An authenticated client.
#[derive(Debug)]
pub struct Authenticated {
    /// The client, with its secrets, keys and grants.
    pub view: Arc<ClientView>,
    /// The external identity it authenticated with (workload identity federation).
    pub external: Option<federated::External>,
}

/// Authenticates presented credentials against the directory.
///
/// # Errors
/// [`AuthError`] when they do not match an enabled client.
pub async fn authenticate(
    auth: &Authenticator<'_>,
    presented: &Presented,
) -> Result<Authenticated, AuthError> {
    if let Presented::Federated {
        client_id,
        assertion,
        ..
    } = presented
    {
        return authenticate_federated(auth, client_id.as_deref(), assertion).await;
    }
    let view = match canonical_id(presented.client_id()) {
        Some(id) => auth.directory.client(id).await?,
        None => None,
    };
    let ok = match presented {
        Presented::Basic { secret, .. } | Presented::Post { secret, .. } => {
            // Hash and compare even for an unknown client so timing does not reveal
            // which ids exist.
            let stored = view.as_ref().map_or(&[][..], |v| v.secrets.as_slice());
            secret::matches(secret, stored, auth.now)
        }
        Presented::Assertion { assertion, .. } => {
            let Some(v) = &view else {
                return Err(AuthError::UnknownClient);
            };
            let audiences = assertion::audiences(auth.issuer);
            let expected = assertion::Expected {
                client_id: presented.client_id(),
                keys: &v.public_keys,
                audiences: &audiences,
                now: auth.now,
            };
            assertion::verify(assertion, &expected, auth.replay).await?;
            true
        }
        Presented::Federated { .. } => false,
    };
    match view {
        Some(v) if ok && v.client.enabled => Ok(Authenticated {
            view: v,
            external: None,
        }),
        Some(_) if ok => Err(AuthError::Disabled),
        Some(_) => Err(AuthError::BadCredentials),
        None => Err(AuthError::UnknownClient),
    }
}

/// Federated client authentication: the external JWT must verify and match exactly one
/// client's federated identity; a `client_id` parameter must name that client; the
/// client must be enabled; then the token is spent.
async fn authenticate_federated(
    auth: &Authenticator<'_>,
    client_id: Option<&str>,
    assertion: &str,
) -> Result<Authenticated, AuthError> {
    use federated::FederatedError;
    let fed = federated::Federation {
        store: auth.federation,
        replay: auth.replay,
        verifier: auth.verifier,
        now: auth.now,
    };
    let identified = federated::identify(&fed, assertion, federated::OwnerKind::Client).await?;
    let refused = |reason: &str| {
        AuthError::Federated(FederatedError::Refused {
            reason: reason.to_owned(),
            external: Some(Box::new(identified.external.clone())),
        })
    };
    let Subject::Client(id) = identified.owner else {
        return Err(refused("federated identity is not a client's"));
    };
    // RFC 7521 §4.2: a client_id, when sent, must be the client the assertion names.
    if client_id.is_some_and(|sent| canonical_id(sent) != Some(id)) {
        return Err(refused(
            "client_id is not the client the external token matched",
        ));
    }
    let Some(view) = auth.directory.client(id).await? else {
        return Err(refused("the matched client no longer exists"));
    };
    if !view.client.enabled {
        return Err(AuthError::Disabled);
    }
    federated::spend(&fed, &identified).await?;
    Ok(Authenticated {
        view,
        external: Some(identified.external),
    })
}

impl AuthError {
    /// The external identity an external JWT proved, when it was refused after
    /// verifying (for the audit log).
    pub fn external(&self) -> Option<&federated::External> {
        match self {
            Self::Federated(e) => e.external(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn one_spelling_per_client_id() {
        let id = Uuid::now_v7();
        assert_eq!(canonical_id(&id.to_string()), Some(id));
        for other in [
            id.to_string().to_uppercase(),
            id.simple().to_string(),
            id.braced().to_string(),
            id.urn().to_string(),
            format!(" {id}"),
            String::new(),
        ] {
            assert_eq!(canonical_id(&other), None, "{other}");
        }
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

    #[test]
    fn reads_client_assertions() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        const C1: &str = "0193a5b2-0000-7e4f-8a9b-0c1d2e3f4a5b";
        const C2: &str = "0193a5b2-0000-7e4f-8a9b-0c1d2e3f4a5c";
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"iss":"{C1}","sub":"{C1}"}}"#));
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA"}"#);
        let jwt = format!("{header}.{claims}.AAAA");
        let creds = |id: Option<&'static str>, kind: Option<&'static str>| Credentials {
            client_id: id,
            client_assertion_type: kind,
            ..Credentials::default()
        };
        let with = |c: Credentials<'_>| {
            presented_any(&Credentials {
                client_assertion: Some(&jwt),
                ..c
            })
        };
        let p = with(creds(None, Some(assertion::JWT_BEARER))).unwrap();
        assert_eq!((p.client_id(), p.method()), (C1, "private_key_jwt"));
        assert_eq!(p.audit_method(), "private_key_jwt");
        assert!(!format!("{p:?}").contains(&jwt), "Debug redacts");
        assert!(with(creds(Some(C1), Some(assertion::JWT_BEARER))).is_ok());
        assert_eq!(
            with(creds(Some(C2), Some(assertion::JWT_BEARER))).unwrap_err(),
            PresentError::MalformedAssertion
        );
        assert_eq!(
            with(creds(None, Some("urn:other"))).unwrap_err(),
            PresentError::AssertionType
        );
        assert_eq!(
            with(Credentials {
                client_secret: Some("s"),
                ..creds(None, Some(assertion::JWT_BEARER))
            })
            .unwrap_err(),
            PresentError::MultipleMethods
        );
        assert_eq!(
            with(Credentials {
                authorization: Some("Basic YTpi"),
                ..creds(None, Some(assertion::JWT_BEARER))
            })
            .unwrap_err(),
            PresentError::MultipleMethods
        );
        // An `iss` that is not a client id: an external JWT (workload identity
        // federation), with or without a client_id to check later.
        let external = format!(
            "{header}.{}.AAAA",
            URL_SAFE_NO_PAD.encode(r#"{"iss":"https://token.actions.githubusercontent.com","sub":"repo:a/b:ref:refs/heads/main"}"#)
        );
        for id in [None, Some(C2)] {
            let p = presented_any(&Credentials {
                client_assertion: Some(&external),
                ..creds(id, Some(assertion::JWT_BEARER))
            })
            .unwrap();
            let Presented::Federated { issuer, .. } = &p else {
                panic!("{p:?}");
            };
            assert_eq!(issuer, "https://token.actions.githubusercontent.com");
            assert_eq!(p.client_id(), id.unwrap_or_default());
            assert_eq!(
                (p.method(), p.audit_method()),
                ("private_key_jwt", "federated_jwt")
            );
            assert!(!format!("{p:?}").contains(&external), "Debug redacts");
        }
        assert_eq!(
            presented_any(&Credentials {
                client_assertion: Some("garbage"),
                ..creds(None, Some(assertion::JWT_BEARER))
            })
            .unwrap_err(),
            PresentError::MalformedAssertion
        );
    }
}
