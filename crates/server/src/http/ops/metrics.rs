//! `GET /metrics` (Prometheus text format) and the middleware that times every request.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::runtime::AppState;

/// Routes of this module on the main listener: none when `/metrics` has a listener of
/// its own (`--metrics-listen`), so it is not exposed wherever the API is.
pub fn router(own_listener: bool) -> Router<AppState> {
    if own_listener {
        Router::new()
    } else {
        Router::new().route("/metrics", get(metrics))
    }
}

/// Serves `/metrics` alone on `listener` (`--metrics-listen`) until the task is aborted.
pub fn serve_apart(
    listener: tokio::net::TcpListener,
    state: AppState,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener failed");
        }
    })
}

/// Counts and times each request by matched route and status class.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = format!("{}xx", response.status().as_u16() / 100);
    metrics::histogram!("mayfly_http_request_duration_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("mayfly_http_requests_total", "route" => route, "status" => status)
        .increment(1);
    response
}

/// Prometheus metrics: requests and latency per route, tokens issued and denied by
/// reason, introspections, audit batch sizes and commit latency, revocations, key age.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    // From memory: a scrape never queries the database (scrapers must not be able to
    // load it, and metrics must keep answering while it is down).
    let since = state.keyring.current().active_since;
    metrics::gauge!("mayfly_signing_key_age_seconds")
        .set((state.clock.now() - since).as_seconds_f64());
    let handle = crate::telemetry::metrics();
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        handle.render(),
    )
        .into_response()
}
