//! The gateway's HTTP side: the verdict endpoints proxies ask, and the health checks.
//!
//! - `/auth` (nginx `auth_request`): the original method and URI from `X-Original-Method`
//!   and `X-Original-URI`, which the nginx config sets (replacing the client's).
//! - `/traefik` (Traefik `ForwardAuth`): from `X-Forwarded-Method` and `X-Forwarded-Uri`,
//!   which Traefik sets. One set of names per endpoint: nginx passes a client's
//!   `X-Forwarded-*` through and Traefik a client's `X-Original-*`, so reading "whichever
//!   is present" would let a client describe another request than the one it makes.
//!
//! The client's address comes from the forwarding header; all of these are believed
//! only from a configured proxy address.
//! - `<any method> /envoy/<original path>` (Envoy `ext_authz`, HTTP service with
//!   `path_prefix: /envoy`): Envoy sends the original method and path, and the headers
//!   allowed by `authorization_request.allowed_headers`.
//!
//! The verdict is the SDK's: [`Verifier::verify_presented`] with the scopes of the first
//! matching route, and [`mayfly_sdk::refusal`] for the RFC 6750 answer. 200 carries the
//! identity headers; all five are always set (empty when the token has no value), so a
//! proxy that copies them overwrites whatever the client sent under those names.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use mayfly_sdk::{Presentation, VerifyError};

use super::Gateway;
use super::routes::Dpop;
use crate::telemetry::CounterFamily;

static DECISIONS: CounterFamily = CounterFamily::new("mayfly_gateway_decisions_total", "outcome");
/// Headers with which frameworks (Rails/Rack, Laravel, ASP.NET) let a request name another
/// method than its own: the upstream would run a method no route was chosen for.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
static UNAVAILABLE: CounterFamily =
    CounterFamily::new("mayfly_gateway_unavailable_total", "reason");

/// The identity headers the upstream receives.
pub const IDENTITY_HEADERS: [&str; 5] = [
    "x-mayfly-subject",
    "x-mayfly-client",
    "x-mayfly-scope",
    "x-mayfly-audience",
    "x-mayfly-token-id",
];

/// The gateway's routes.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/auth", any(nginx))
        .route("/traefik", any(traefik))
        .route("/envoy", any(envoy))
        .route("/envoy/{*rest}", any(envoy))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(gateway)
}

/// The original request, as the proxy describes it.
struct Original<'a> {
    method: &'a str,
    target: &'a str,
}

/// The original-request header names one proxy sets.
struct Names {
    method: &'static str,
    uri: &'static str,
}

const NGINX: Names = Names {
    method: "x-original-method",
    uri: "x-original-uri",
};

const TRAEFIK: Names = Names {
    method: "x-forwarded-method",
    uri: "x-forwarded-uri",
};

async fn nginx(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    forward_auth(&gateway, peer, request.headers(), &NGINX).await
}

async fn traefik(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    forward_auth(&gateway, peer, request.headers(), &TRAEFIK).await
}

async fn forward_auth(
    gateway: &Gateway,
    peer: SocketAddr,
    headers: &HeaderMap,
    names: &Names,
) -> Response {
    let Some(proxy) = gateway.trusted_peer(peer) else {
        return untrusted(peer);
    };
    // Exactly one of each: a repeated header is not a description of one request.
    let one = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        }
    };
    let (Some(method), Some(target)) = (one(names.method), one(names.uri)) else {
        tracing::warn!(
            %proxy,
            method = names.method,
            uri = names.uri,
            "the proxy did not send the original method and URI once each"
        );
        return plain(StatusCode::BAD_REQUEST, "no original method and URI");
    };
    let original = Original { method, target };
    decide(gateway, proxy, headers, &original).await
}

async fn envoy(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let Some(proxy) = gateway.trusted_peer(peer) else {
        return untrusted(peer);
    };
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .strip_prefix("/envoy")
        .unwrap_or_default();
    let target = if target.is_empty() || target.starts_with('?') {
        format!("/{target}")
    } else {
        target.to_owned()
    };
    let original = Original {
        method: request.method().as_str(),
        target: &target,
    };
    decide(&gateway, proxy, request.headers(), &original).await
}

async fn decide(
    gateway: &Gateway,
    proxy: std::net::IpAddr,
    headers: &HeaderMap,
    original: &Original<'_>,
) -> Response {
    if METHOD_OVERRIDES
        .iter()
        .any(|name| headers.contains_key(*name))
    {
        DECISIONS.get("method_override").increment(1);
        tracing::debug!(method = original.method, "method override header: refused");
        return plain(
            StatusCode::BAD_REQUEST,
            "method override headers are refused",
        );
    }
    let verifier = match gateway.ready() {
        Ok(verifier) => verifier,
        Err(reason) => {
            UNAVAILABLE.get(reason.label()).increment(1);
            tracing::warn!(%reason, "refusing: not ready (fail closed)");
            return refusal(&VerifyError::Unavailable, &[]);
        }
    };
    let routes = gateway.routes();
    let Some(rule) = routes.find(original.method, original.target) else {
        DECISIONS.get("no_route").increment(1);
        tracing::debug!(method = original.method, "no route matches: denied");
        return plain(StatusCode::FORBIDDEN, "no route");
    };
    let Some(credentials) = mayfly_sdk::credentials(headers) else {
        return refusal(&VerifyError::Missing, &rule.scopes);
    };
    let client_ip = mayfly_sdk::client_address(&verifier, proxy, headers);
    let url = verifier.resource_url(original.target);
    let presented = Presentation {
        token: credentials.token,
        dpop_scheme: credentials.dpop_scheme,
        proof: credentials.proof,
        method: original.method,
        url: &url,
        client_ip,
    };
    let required: Vec<&str> = rule.scopes.iter().map(String::as_str).collect();
    let verified = match verifier.verify_presented(&presented, &required).await {
        Ok(verified) if rule.dpop == Dpop::Required && verified.claims().cnf.is_none() => {
            Err(VerifyError::DpopRequired)
        }
        other => other,
    };
    match verified {
        Ok(verified) => {
            DECISIONS.get("allow").increment(1);
            let claims = verified.claims();
            if let Some(usage) = gateway.usage() {
                let path = original.target.split('?').next().unwrap_or_default();
                usage.record(claims, original.method, path, client_ip);
            }
            let mut response = StatusCode::OK.into_response();
            let values = [
                &claims.sub,
                &claims.client_id,
                &claims.scope,
                &claims.aud,
                &claims.jti,
            ];
            let out = response.headers_mut();
            for (name, value) in IDENTITY_HEADERS.iter().zip(values) {
                // Claims come from a verified token; a value that is not a header value
                // (never minted by Mayfly) is sent empty rather than failing the request.
                let value = HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static(""));
                out.insert(HeaderName::from_static(name), value);
            }
            out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => {
            DECISIONS.get("deny").increment(1);
            tracing::debug!(reason = %e, method = original.method, "request refused");
            refusal(&e, &rule.scopes)
        }
    }
}

fn refusal(error: &VerifyError, scopes: &[String]) -> Response {
    mayfly_sdk::refusal(error, scopes)
}

fn untrusted(peer: SocketAddr) -> Response {
    tracing::warn!(%peer, "verdict asked by an address outside the configured proxies");
    plain(StatusCode::FORBIDDEN, "not a configured proxy")
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        text,
    )
        .into_response()
}

async fn healthz() -> Response {
    plain(StatusCode::OK, "ok")
}

/// 200 when verdicts can be given; 503 naming why not (no key set yet, or the
/// revocation feed silent for longer than the bound).
async fn readyz(State(gateway): State<Gateway>) -> Response {
    match gateway.ready() {
        Ok(_) => plain(StatusCode::OK, "ready"),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            reason.to_string(),
        )
            .into_response(),
    }
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        crate::telemetry::metrics().render(),
    )
        .into_response()
}
