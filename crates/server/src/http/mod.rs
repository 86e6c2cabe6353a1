//! The web layer: one module per endpoint family, each with its own `router()`, and
//! `error.rs`, the one place errors become responses. Handlers extract, call the service
//! layer, and convert to wire types.

pub mod access;
pub mod admin;
pub mod error;
pub mod feed;
pub mod form;
pub mod health;
pub mod introspect;
pub mod metadata;
pub mod metrics;
pub mod openapi;
pub mod revoke;
pub mod token;
pub mod usage;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, Request, header};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::audit::RequestContext;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest `User-Agent` kept for audit.
const MAX_USER_AGENT: usize = 256;

/// The whole application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(token::router())
        .merge(metadata::router())
        .merge(health::router())
        .merge(openapi::router())
        .merge(introspect::router())
        .merge(revoke::router())
        .merge(feed::router())
        .merge(usage::router())
        .merge(access::router().route_layer(axum::middleware::from_fn_with_state(state.clone(), admin::settle)))
        .merge(admin::router().route_layer(axum::middleware::from_fn_with_state(state.clone(), admin::settle)))
        .merge(metrics::router())
        .fallback(error::not_found)
        .route_layer(axum::middleware::from_fn(metrics::track))
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
                .layer(CatchPanicLayer::custom(error::panic_response)),
        )
        .with_state(state)
}

/// Serves the application until `shutdown` resolves, then drains open requests.
///
/// # Errors
/// The listener's I/O errors.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // Small responses go out at once: without TCP_NODELAY, Nagle's algorithm can hold a
    // response until the client's delayed ACK (40 ms on Linux).
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    // Revocation streams never end by themselves: close them when shutdown starts.
    let revocations = state.revocations.clone();
    let shutdown = async move {
        shutdown.await;
        revocations.close_streams();
    };
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
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
        .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    RequestContext {
        source_ip: source_ip(&state.config.trusted_proxies, headers, extensions),
        user_agent,
        request_id,
    }
}

/// The client's address: the socket peer, unless the peer is a trusted proxy
/// (`--trusted-proxies`); then `Forwarded` (RFC 7239), else `X-Forwarded-For`, read
/// right to left skipping trusted hops. Forwarding headers from any other peer are
/// ignored. Several header lines are joined in order, as RFC 9110 §5.3 allows.
pub fn source_ip(
    trusted: &[ipnet::IpNet],
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> Option<IpAddr> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    if trusted.is_empty() {
        return Some(peer.to_canonical());
    }
    let joined = |name: &str| -> Option<String> {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    Some(mayfly_core::net::source_address(
        peer,
        joined("forwarded").as_deref(),
        joined("x-forwarded-for").as_deref(),
        trusted,
    ))
}
