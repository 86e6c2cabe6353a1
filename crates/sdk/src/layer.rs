//! The tower layer and axum extractor for resource servers (feature `axum`).
//!
//! [`Verifier::require`] makes a layer that lets a request through only with a valid
//! bearer token (RFC 6750 §2.1) carrying the given scopes, and hands the handler a
//! [`VerifiedToken`] (request extension and extractor). Refusals follow RFC 6750 §3:
//! 401 with `WWW-Authenticate: Bearer error="invalid_token"` (just `Bearer` when no
//! token was sent, §3.1), 403 `insufficient_scope` naming the scopes needed. The reason
//! is logged at debug, never told to the caller.
//!
//! DPoP (RFC 9449 §7): a token sent as `Authorization: DPoP …` is checked with the
//! request's `DPoP` proof, method and URL (the configured `resource_base` and the path;
//! never the client-written `Host`, so without `resource_base` DPoP presentations are
//! refused); refusals of DPoP presentations answer
//! `WWW-Authenticate: DPoP error="…", algs="EdDSA ES256"`. The caller's address is the
//! socket peer (`ConnectInfo`, so serve with `into_make_service_with_connect_info`),
//! or behind trusted proxies the forwarded one, for network-restricted tokens.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::verifier::Presentation;
use crate::{UsageReporter, VerifiedToken, Verifier, VerifyError};

impl Verifier {
    /// A layer requiring a valid token with every scope in `scopes`; use it with
    /// `MethodRouter::route_layer` (or `Router::route_layer`).
    pub fn require<I, S>(&self, scopes: I) -> RequireScopesLayer
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RequireScopesLayer {
            verifier: self.clone(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            usage: None,
        }
    }
}

/// Requires a valid token with some scopes; see [`Verifier::require`].
#[derive(Debug, Clone)]
pub struct RequireScopesLayer {
    verifier: Verifier,
    scopes: Arc<[String]>,
    usage: Option<UsageReporter>,
}

impl RequireScopesLayer {
    /// Also reports every accepted request (token, method, path, and the caller's
    /// address: axum's `ConnectInfo<SocketAddr>` when the server provides it, read
    /// through the verifier's trusted proxies) to the issuer.
    #[must_use]
    pub fn report_usage(mut self, reporter: UsageReporter) -> Self {
        self.usage = Some(reporter);
        self
    }
}

impl<S> tower::Layer<S> for RequireScopesLayer {
    type Service = RequireScopes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopes {
            inner,
            verifier: self.verifier.clone(),
            scopes: self.scopes.clone(),
            usage: self.usage.clone(),
        }
    }
}

/// The service [`RequireScopesLayer`] wraps around a route.
#[derive(Debug, Clone)]
pub struct RequireScopes<S> {
    inner: S,
    verifier: Verifier,
    scopes: Arc<[String]>,
    usage: Option<UsageReporter>,
}

impl<S> tower::Service<Request> for RequireScopes<S>
where
    S: tower::Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone is not ready; keep the one that is (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let scopes = self.scopes.clone();
        let usage = self.usage.clone();
        Box::pin(async move {
            let required: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip());
            let client_ip =
                peer.and_then(|peer| client_address(&verifier, peer, request.headers()));
            let outcome = match credentials(request.headers()) {
                Some(credentials) => {
                    let url = verifier.resource_url(request.uri().path());
                    let presented = Presentation {
                        token: credentials.token,
                        dpop_scheme: credentials.dpop_scheme,
                        proof: credentials.proof,
                        method: request.method().as_str(),
                        url: &url,
                        client_ip,
                    };
                    verifier.verify_presented(&presented, &required).await
                }
                None => Err(VerifyError::Missing),
            };
            match outcome {
                Ok(verified) => {
                    if let Some(usage) = &usage {
                        usage.record(
                            verified.claims(),
                            request.method().as_str(),
                            request.uri().path(),
                            client_ip,
                        );
                    }
                    request.extensions_mut().insert(verified);
                    inner.call(request).await
                }
                Err(e) => {
                    tracing::debug!(reason = %e, "request refused");
                    Ok(refusal(&e, &scopes))
                }
            }
        })
    }
}

/// What a request presents: the token of `Authorization`, whether its scheme is `DPoP`
/// (else `Bearer`; RFC 6750 §2.1, RFC 9449 §7.1; schemes are case-insensitive), and its
/// `DPoP` proof.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// The access token.
    pub token: &'a str,
    /// Whether it came as `Authorization: DPoP …`.
    pub dpop_scheme: bool,
    /// The one `DPoP` header; none when absent, repeated or not text (RFC 9449 §4.3).
    pub proof: Option<&'a str>,
}

/// The credentials of a request's headers; none without a Bearer or DPoP token.
pub fn credentials(headers: &HeaderMap) -> Option<Credentials<'_>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    let dpop_scheme = if scheme.eq_ignore_ascii_case("bearer") {
        false
    } else if scheme.eq_ignore_ascii_case("dpop") {
        true
    } else {
        return None;
    };
    let mut proofs = headers.get_all("dpop").iter();
    let proof = match (proofs.next(), proofs.next()) {
        (Some(p), None) => p.to_str().ok(),
        _ => None,
    };
    Some(Credentials {
        token,
        dpop_scheme,
        proof,
    })
}

/// The caller's address: `peer` (the socket's), or when `peer` is one of the verifier's
/// trusted proxies the address its forwarding header names; none when the forwarding
/// chain cannot be read.
pub fn client_address(
    verifier: &Verifier,
    peer: std::net::IpAddr,
    headers: &HeaderMap,
) -> Option<std::net::IpAddr> {
    let header = verifier.forwarded_header();
    let values = headers
        .get_all(header.name())
        .iter()
        .map(|v| v.to_str())
        .collect::<Result<Vec<&str>, _>>()
        .unwrap_or_else(|_| vec![""]);
    let chain = (!values.is_empty()).then(|| values.join(","));
    mayfly_core::net::source_address(peer, header, chain.as_deref(), verifier.trusted_proxies())
        .ok()
}

/// DPoP proof algorithms a resource server accepts.
const DPOP_ALGS: &str = "EdDSA ES256";

/// The RFC 6750 §3 answer for a refusal.
pub fn refusal(error: &VerifyError, scopes: &[String]) -> Response {
    let (status, challenge, code) = match error {
        VerifyError::Missing => (StatusCode::UNAUTHORIZED, "Bearer".to_owned(), None),
        VerifyError::InsufficientScope(_) => (
            StatusCode::FORBIDDEN,
            format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                scopes.join(" ")
            ),
            Some("insufficient_scope"),
        ),
        VerifyError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Bearer".to_owned(),
            Some("temporarily_unavailable"),
        ),
        VerifyError::Token(_)
        | VerifyError::Revoked
        | VerifyError::Inactive
        | VerifyError::NetworkNotAllowed => (
            StatusCode::UNAUTHORIZED,
            "Bearer error=\"invalid_token\"".to_owned(),
            Some("invalid_token"),
        ),
        // RFC 9449 §7.1: the DPoP challenge, naming the accepted algorithms.
        VerifyError::DpopRequired => (
            StatusCode::UNAUTHORIZED,
            format!("DPoP error=\"invalid_token\", algs=\"{DPOP_ALGS}\""),
            Some("invalid_token"),
        ),
        VerifyError::InvalidProof(_) => (
            StatusCode::UNAUTHORIZED,
            format!("DPoP error=\"invalid_dpop_proof\", algs=\"{DPOP_ALGS}\""),
            Some("invalid_dpop_proof"),
        ),
    };
    let body = match code {
        Some(code) => format!("{{\"error\":\"{code}\"}}"),
        None => String::new(),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        headers.insert(header::WWW_AUTHENTICATE, value);
    }
    if code.is_some() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The verified token of a request that went through [`RequireScopesLayer`]; a handler
/// outside the layer gets a 401.
impl<S: Send + Sync> FromRequestParts<S> for VerifiedToken {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<VerifiedToken>()
            .cloned()
            .ok_or_else(|| refusal(&VerifyError::Missing, &[]))
    }
}
