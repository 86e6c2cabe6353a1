//! The web layer: one module per endpoint family, each with its own `router()`, and
//! `error.rs`, the one place errors become responses. Handlers extract, call the service
//! layer, and convert to wire types.

pub mod admin;
pub mod auth;
pub mod connections;
pub mod error;
pub mod extract;
pub mod form;
pub mod oauth;
pub mod ops;
pub mod v1;

use oauth::{introspect, metadata, revoke, token};
use ops::{health, metrics, openapi};
use v1::{access, feed, usage};

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, Request, header};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::RequestBodyDeadlineLayer;
use tower_http::trace::TraceLayer;

use mayfly_core::UntrustedText;

use crate::audit::RequestContext;
use crate::runtime::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest `User-Agent` kept for audit.
const MAX_USER_AGENT: usize = 256;

/// The whole application.
pub fn router(state: AppState) -> Router {
    let body_deadline = std_duration(state.config.limits.body_read_timeout);
    Router::new()
        .merge(token::router())
        .merge(metadata::router())
        .merge(health::router())
        .merge(openapi::router())
        .merge(introspect::router())
        .merge(revoke::router())
        .merge(feed::router())
        .merge(usage::router())
        .merge(access::router().route_layer(axum::middleware::from_fn_with_state(state.clone(), settle)))
        .merge(admin::router().route_layer(axum::middleware::from_fn_with_state(state.clone(), settle)))
        .merge(metrics::router(state.config.metrics_listen.is_some()))
        .fallback(error::not_found)
        .route_layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::from_fn_with_state(state.clone(), admit))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let route = req
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map_or("", |p| p.as_str());
                    let request_id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                    // The path only, never the query string: it could carry credentials.
                    tracing::debug_span!("request", method = %req.method(), path = req.uri().path(), route, request_id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(RequestBodyDeadlineLayer::new(body_deadline))
                .layer(CatchPanicLayer::custom(error::panic_response)),
        )
        .with_state(state)
}

/// After a successful change, waits until this process applies any revocation it caused
/// (disabling a client, ending a grant, …), so the change is in force here before the
/// response; other replicas learn through the store's signal.
pub async fn settle(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let changes = request.method() != axum::http::Method::GET;
    let response = next.run(request).await;
    if changes
        && response.status().is_success()
        && let Err(e) = state.revocations.catch_up().await
    {
        tracing::warn!(error = %e, "revocations: catch-up after an admin change failed; the periodic one will apply it");
    }
    response
}

/// Serves the application until `shutdown` resolves, then drains open requests, within
/// the configured connection bounds ([`connections`]).
///
/// # Errors
/// The listener's I/O errors.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = &state.config.limits;
    let open_files = connections::raise_open_files_limit();
    let bounds = connections::Bounds {
        max_connections: connections::fit_cap(limits.max_connections, open_files),
        header_read: std_duration(limits.header_read_timeout),
        idle: std_duration(limits.idle_timeout),
    };
    if bounds.max_connections < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            open_files_limit = open_files,
            max_connections = bounds.max_connections,
            "connection cap lowered to fit the open-files limit"
        );
    }
    tracing::info!(
        open_files_limit = open_files,
        max_connections = bounds.max_connections,
        "accepting connections"
    );
    // Revocation streams never end by themselves: close them when shutdown starts.
    let revocations = state.revocations.clone();
    let shutdown = async move {
        shutdown.await;
        revocations.close_streams();
    };
    connections::serve(listener, router(state), bounds, shutdown).await
}

fn std_duration(d: time::Duration) -> std::time::Duration {
    std::time::Duration::try_from(d).unwrap_or(std::time::Duration::from_secs(1))
}

/// Where a request came from: its source address (see [`source_ip`]), user agent and
/// request id. The one place that decides a request's address, for audit, throttling
/// and network restrictions alike.
pub fn request_context(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> RequestContext {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| UntrustedText::capped(ua, MAX_USER_AGENT).into_string());
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(|id| UntrustedText::new(id).into_string());
    RequestContext {
        source_ip: source_ip(&state.config.trusted_proxies, headers, extensions),
        user_agent,
        request_id,
    }
}

/// The client's address, as the [`admit`] middleware decided it for this
/// request. Without the middleware (a router built by hand), the socket peer when no
/// proxy is trusted, else none: never a guess.
pub fn source_ip(
    trusted: &[ipnet::IpNet],
    _headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> Option<IpAddr> {
    if let Some(SourceAddress(ip)) = extensions.get::<SourceAddress>() {
        return Some(*ip);
    }
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    trusted.is_empty().then(|| peer.to_canonical())
}

/// A request's source address, decided once per request.
#[derive(Debug, Clone, Copy)]
struct SourceAddress(IpAddr);

/// Admits a request: decides where it comes from ([`decide_source`]), then turns it
/// away at once while the database is known to be down ([`gate`]). One middleware for
/// both: each `from_fn` layer costs a boxed service and a boxed future per request.
async fn admit(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(refusal) = decide_source(&state, &mut request) {
        return refusal;
    }
    gate(&state, request, next).await
}

/// Decides where a request comes from: the socket peer, unless the peer is a trusted
/// proxy (`--trusted-proxies`); then the configured header (`--forwarded-header`; every
/// line of it, joined in order as RFC 9110 §5.3 allows) read right to left skipping
/// trusted hops. A chain that cannot be read is refused with 400 (OAuth error JSON on
/// `/oauth2/…`, a problem elsewhere): an unattributable request must not pass as the
/// proxy. Returns that refusal, if any.
fn decide_source(
    state: &AppState,
    request: &mut axum::extract::Request,
) -> Option<axum::response::Response> {
    use axum::response::IntoResponse as _;
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    // No socket peer (a router driven by hand): nothing to decide, nothing refused.
    let peer = peer?;
    let header = state.config.forwarded_header;
    let trusted = &state.config.trusted_proxies;
    let values: Result<Vec<&str>, _> = request
        .headers()
        .get_all(header.name())
        .iter()
        .map(|v| v.to_str())
        .collect();
    let decided = match values {
        Ok(values) => {
            let chain = (!values.is_empty()).then(|| values.join(","));
            mayfly_core::net::source_address(peer, header, chain.as_deref(), trusted)
        }
        // Not even text: unreadable, unless nobody would read it.
        Err(_) => mayfly_core::net::source_address(peer, header, Some(""), trusted),
    };
    match decided {
        Ok(ip) => {
            request.extensions_mut().insert(SourceAddress(ip));
            None
        }
        Err(e) => {
            let detail = format!("{e} ({})", header.name());
            Some(if request.uri().path().starts_with("/oauth2/") {
                crate::oauth::TokenError::InvalidRequest(detail).into_response()
            } else {
                error::Problem::new(axum::http::StatusCode::BAD_REQUEST, detail).into_response()
            })
        }
    }
}

/// Routes that never touch the database (or, `/readyz`, report on it themselves): served
/// while it is down.
fn needs_no_database(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json")
        || path.starts_with("/.well-known/")
}

/// While the database is known to be down, answers 503 with `Retry-After` at once
/// (OAuth JSON on `/oauth2/…`, a problem elsewhere); any 503 a handler gives has the
/// database probed (see [`crate::availability`]).
async fn gate(
    state: &AppState,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if needs_no_database(request.uri().path()) {
        return next.run(request).await;
    }
    if state.availability.is_down() {
        ::metrics::counter!("mayfly_requests_refused_database_down_total").increment(1);
        return if request.uri().path().starts_with("/oauth2/") {
            crate::oauth::TokenError::Unavailable.into_response()
        } else {
            error::Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; retry later",
            )
            .into_response()
        };
    }
    let response = next.run(request).await;
    if response.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        state.availability.suspect();
    }
    response
}

/// What the service layer needs from the state for an access call.
pub fn access_context<'a>(
    state: &'a AppState,
    request: &'a RequestContext,
) -> crate::service::access::AccessContext<'a> {
    crate::service::access::AccessContext {
        webhook: state.webhook.as_ref(),
        pending_timeout: state.config.access_pending_timeout,
        request,
    }
}
