//! `GET /metrics` (Prometheus text format) and the middleware that times every request.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{Counter, Histogram};

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
    let route = route_metrics(
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str),
    );
    let started = Instant::now();
    let response = next.run(request).await;
    route.duration.record(started.elapsed().as_secs_f64());
    route.requests(response.status().as_u16()).increment(1);
    response
}

/// Status classes as labels, by the status's first digit (1–9).
const STATUS_CLASSES: [&str; 9] = [
    "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx",
];

/// One route's metric handles, registered once: the `metrics` macros copy their key and
/// look it up on every call (an allocation each), on every request.
struct RouteMetrics {
    route: String,
    duration: Histogram,
    /// By status class; a class's series appears once a response of it was counted.
    by_class: [OnceLock<Counter>; 9],
}

impl RouteMetrics {
    fn requests(&self, status: u16) -> &Counter {
        let class = usize::from(status / 100).clamp(1, 9) - 1;
        self.by_class[class].get_or_init(|| {
            metrics::counter!("mayfly_http_requests_total", "route" => self.route.clone(), "status" => STATUS_CLASSES[class])
        })
    }
}

/// The handles of `route` (a matched route pattern: as many as the router has routes).
fn route_metrics(route: &str) -> Arc<RouteMetrics> {
    static ROUTES: LazyLock<RwLock<HashMap<String, Arc<RouteMetrics>>>> =
        LazyLock::new(RwLock::default);
    if let Some(found) = ROUTES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(route)
    {
        return found.clone();
    }
    // Registered with the Prometheus recorder, never with the no-op one.
    crate::telemetry::metrics();
    ROUTES
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(route.to_owned())
        .or_insert_with(|| {
            Arc::new(RouteMetrics {
                route: route.to_owned(),
                duration: metrics::histogram!("mayfly_http_request_duration_seconds", "route" => route.to_owned()),
                by_class: Default::default(),
            })
        })
        .clone()
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
