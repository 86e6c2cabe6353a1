//! The revocation feed for resource servers: `GET /v1/revocations?after=CURSOR` pages
//! through revocations in order; `GET /v1/revocations/stream` pushes them as
//! Server-Sent Events, resuming after `Last-Event-ID`, with keep-alives.
//!
//! Callers present a Mayfly token for the issuer's audience with
//! `mayfly:revocations:read`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use mayfly_core::wire::{RevocationPage, StreamClosed};
use mayfly_store::RevocationRecord;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::http::auth::Admin;
use crate::http::error::Problem;
use crate::http::extract::Params;
use crate::revocation::StreamSlot;
use crate::runtime::AppState;

/// Most entries per page.
const MAX_PAGE: u32 = 1000;
/// Interval between SSE keep-alive comments.
pub const KEEP_ALIVE: StdDuration = StdDuration::from_secs(15);
/// Most streams one client may hold open at once (429 beyond).
pub const MAX_STREAMS_PER_CLIENT: usize = 8;
/// How often an open stream checks that the token it was opened with is still active.
const LIVENESS_CHECK: StdDuration = StdDuration::from_secs(1);

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/revocations", get(page))
        .route("/v1/revocations/stream", get(stream))
}

/// Feed position and page size.
#[derive(Debug, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedParams {
    /// Start after this cursor (default: the beginning).
    #[param(pattern = "^[0-9]{1,18}$")]
    pub after: Option<String>,
    /// Entries per page, 1 to 1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

pub use crate::api::entry;

fn cursor(text: Option<&str>, field: &str) -> Result<i64, Problem> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(0),
        Some(t) => t
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| Problem::field(field, "not a cursor from this feed")),
    }
}

/// Revocations after a cursor, in order.
#[utoipa::path(get, path = "/v1/revocations", tag = "revocations", security(("bearer" = [])),
    params(FeedParams),
    responses(
        (status = 200, description = "A page of the feed", body = RevocationPage),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks mayfly:revocations:read", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn page(
    State(state): State<AppState>,
    _: Admin,
    Params(q): Params<FeedParams>,
) -> Result<Json<RevocationPage>, Problem> {
    read_page(&state, q).await
}

/// One page of the feed.
pub(crate) async fn read_page(
    state: &AppState,
    q: FeedParams,
) -> Result<Json<RevocationPage>, Problem> {
    let after = cursor(q.after.as_deref(), "after")?;
    let limit = q.limit.unwrap_or(MAX_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::field(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    let records = state
        .store
        .revocations_after(after, limit)
        .await
        .map_err(crate::service::AdminError::from)?;
    let next_cursor = records.last().map_or(after, |r| r.seq).to_string();
    Ok(Json(RevocationPage {
        items: records.iter().filter_map(entry).collect(),
        next_cursor,
    }))
}

/// Revocations as Server-Sent Events (`event: revocation`, `id` = cursor, data = entry),
/// from after `Last-Event-ID` (or `after`), then live. The stream ends, after an
/// `event: closed` naming why, within a second or two of its token expiring or
/// becoming inactive (revoked, client disabled), when the service shuts down and when
/// this replica has not read the store's revocations for 5 s (`revocations
/// unavailable`); reconnect with a fresh token. At most 8 streams per client (429 beyond).
#[utoipa::path(get, path = "/v1/revocations/stream", tag = "revocations", security(("bearer" = [])),
    params(FeedParams, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this cursor")),
    responses(
        (status = 200, description = "An endless text/event-stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks mayfly:revocations:read", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid cursor", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many open streams for this client; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This replica has not read the store's revocations for 5 s; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Admin,
    headers: HeaderMap,
    Params(q): Params<FeedParams>,
) -> Response {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = match last_event_id {
        Some(id) => cursor(Some(id), "Last-Event-ID"),
        None => cursor(q.after.as_deref(), "after"),
    };
    let after = match after {
        Ok(after) => after,
        Err(p) => return p.into_response(),
    };
    if !state.revocations.current() {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this replica cannot read revocations now; retry after Retry-After",
        )
        .into_response();
    }
    let Some(slot) = state
        .revocations
        .open_stream(caller.client_id(), MAX_STREAMS_PER_CLIENT)
    else {
        let mut response = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {MAX_STREAMS_PER_CLIENT} open streams per client"),
        )
        .into_response();
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
        return response;
    };
    // The token the Admin extractor accepted: the stream lives only as long as it does.
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, t)| t.trim().to_owned())
        .unwrap_or_default();
    // Subscribe before reading the backlog, so nothing falls between the two.
    let live = state.revocations.subscribe();
    let closing = state.revocations.closing();
    let events = follow(
        state,
        after,
        live,
        Holder {
            token,
            _slot: slot,
            closing,
        },
    );
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    *response.status_mut() = StatusCode::OK;
    response
}

/// Who holds a stream open, and what ends it.
struct Holder {
    /// The token it was opened with.
    token: String,
    /// Its client's stream slot, freed when the stream is dropped.
    _slot: StreamSlot,
    /// Raised at shutdown.
    closing: watch::Receiver<bool>,
}

struct Cursor {
    state: AppState,
    last: i64,
    backlog: VecDeque<RevocationRecord>,
    reread: bool,
    live: broadcast::Receiver<Arc<RevocationRecord>>,
    holder: Holder,
    check: tokio::time::Interval,
    /// Set once the stream must end: a last `closed` event, then the end.
    ending: Option<&'static str>,
    done: bool,
}

/// Why the stream's token no longer holds it open, if it does not: expired (no
/// leeway), or no longer active (revoked, client disabled or gone, grant ended).
async fn ended(state: &AppState, token: &str) -> Option<&'static str> {
    match crate::oauth::active::check(state, token).await {
        Ok(active) if state.clock.now() >= active.claims.exp => Some("token expired"),
        Ok(_) | Err("unavailable") => None,
        Err(why) => Some(why),
    }
}

fn follow(
    state: AppState,
    after: i64,
    live: broadcast::Receiver<Arc<RevocationRecord>>,
    holder: Holder,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut check = tokio::time::interval(LIVENESS_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Cursor {
        state,
        last: after,
        backlog: VecDeque::new(),
        reread: true,
        live,
        holder,
        check,
        ending: None,
        done: false,
    };
    futures_util::stream::unfold(start, |mut c| async move {
        loop {
            if c.done {
                return None;
            }
            if let Some(reason) = c.ending.take() {
                // Tell the subscriber why: whether to reconnect with a fresh token.
                c.done = true;
                let closed = StreamClosed {
                    reason: reason.to_owned(),
                };
                let event = Event::default()
                    .event("closed")
                    .json_data(&closed)
                    .unwrap_or_default();
                return Some((Ok(event), c));
            }
            if let Some(record) = c.backlog.pop_front() {
                if record.seq <= c.last {
                    continue;
                }
                c.last = record.seq;
                let Some(entry) = entry(&record) else {
                    continue;
                };
                let event = Event::default()
                    .event("revocation")
                    .id(entry.cursor.clone())
                    .json_data(&entry)
                    .unwrap_or_default();
                return Some((Ok(event), c));
            }
            if c.reread {
                match c.state.store.revocations_after(c.last, MAX_PAGE).await {
                    Ok(records) => {
                        c.reread = records.len() == MAX_PAGE as usize;
                        c.backlog.extend(records);
                        continue;
                    }
                    Err(e) => {
                        // End the stream; the subscriber reconnects with Last-Event-ID.
                        tracing::warn!(error = %e, "revocation stream: store unavailable");
                        return None;
                    }
                }
            }
            if *c.holder.closing.borrow() {
                c.ending = Some(StreamClosed::SHUTTING_DOWN);
                continue;
            }
            tokio::select! {
                received = c.live.recv() => match received {
                    Ok(record) => c.backlog.push_back((*record).clone()),
                    // Fell behind the broadcast: read the gap from the store.
                    Err(broadcast::error::RecvError::Lagged(_)) => c.reread = true,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = c.check.tick() => {
                    c.ending = if c.state.revocations.current() {
                        ended(&c.state, &c.holder.token).await
                    } else {
                        Some(StreamClosed::REVOCATIONS_UNAVAILABLE)
                    };
                }
                _ = c.holder.closing.changed() => {}
            }
        }
    })
}
