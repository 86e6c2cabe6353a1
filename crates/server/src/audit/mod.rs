//! Audit events, made durable with group commit.
//!
//! [`AuditSink::record`] returns only once the event is committed. A writer task drains
//! every event waiting in the queue into a single transaction, so concurrent requests
//! share one commit (and one fsync) instead of paying for one each; on SQLite the writer
//! first lets running handlers queue theirs ([`GATHER_ROUNDS`]). There is one writer
//! on either store: a second one on Postgres halved the batches and made every commit
//! slower (the two flush the WAL in turn), for fewer tokens per second and more CPU per
//! token (BENCHMARKS.md, session 11).
//!
//! One request's event must never fail another's: every string of an event passes
//! [`UntrustedText`] before it is queued (no control characters, capped), and a batch
//! the store refuses for any reason but unavailability is retried event by event, so
//! only the event at fault fails. When the store is unavailable, every waiter of the
//! batch gets the error and the caller fails closed.
//!
//! An event may carry the change it records (a refresh token rotation,
//! [`AuditSink::record_rotation`]): both commit in the batch's transaction or neither
//! does, so a refresh costs no commit of its own, and a rotation that no longer applies
//! (its token used meanwhile) leaves no `token.issued` behind.

mod repeats;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mayfly_core::UntrustedText;
use mayfly_store::{AuditEntry, AuditEvent, RefreshRotation, Store, StoreError};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Most events committed in one transaction.
const MAX_BATCH: usize = 512;
/// Where the commit runs in this process (SQLite), the writer yields to the other tasks
/// up to this many times before committing, for as long as each turn brings more events.
/// A commit costs the same CPU however many events it holds (an fsync, ~19 WAL writes, a
/// wake-up of the connection's thread), so the ~3 more events per commit this gathers
/// under load took issuance from ~70 to ~61 µs of CPU per token, for ~5 % fewer tokens
/// a second. On Postgres the commit is the database server's work, and the same wait
/// cost a quarter of the throughput and saved nothing: it commits at once
/// (BENCHMARKS.md, session 15). Without load, a turn brings nothing and the writer
/// commits after one yield.
const GATHER_ROUNDS: usize = 2;
/// Queue length; beyond it, callers wait (back-pressure).
const QUEUE: usize = 8192;
/// Longest string kept in an event, in characters (after escaping). The request-facing
/// code caps what it copies from requests far lower ([`UntrustedText::MAX_CHARS`]); this
/// is the backstop for everything else (admin changes carry whole records).
const MAX_FIELD: usize = 8192;

/// Why an event could not be made durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// The store refused or could not be reached.
    #[error("audit store failed: {0}")]
    Store(Arc<StoreError>),
    /// The writer has stopped (shutting down).
    #[error("audit writer stopped")]
    Stopped,
}

impl AuditError {
    /// Whether retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_unavailable(),
            Self::Stopped => true,
        }
    }
}

struct Pending {
    entry: AuditEntry,
    /// Whether the entry applied (always, without a rotation), once committed.
    done: oneshot::Sender<Result<bool, AuditError>>,
}

/// What [`AuditSink::record_repeated`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// The first of its place in this window: committed.
    First,
    /// A repeat within the window: counted for the summary.
    Counted,
}

/// Handle to the group-commit writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    queue: mpsc::Sender<Pending>,
    repeats: Arc<repeats::Repeats>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditSink")
    }
}

impl AuditSink {
    /// Starts the writer. It stops, after draining the queue, once every sink is
    /// dropped; the handle finishes when it has.
    /// `repeat_window` is how long repeated refusals are counted (see
    /// [`AuditSink::record_repeated`]).
    pub fn start(store: Arc<dyn Store>, repeat_window: Duration) -> (Self, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let repeats = Arc::new(repeats::Repeats::new(repeat_window));
        let writer = tokio::spawn(write_batches(store, rx, repeats.clone()));
        tokio::spawn(write_summaries(queue.downgrade(), repeats.clone()));
        (Self { queue, repeats }, writer)
    }

    /// Like [`AuditSink::record`] for a refusal a caller may repeat at high rate (a
    /// throttled request): only the first of `place` in a window is committed before
    /// the answer; the others are counted and committed as one summary event when the
    /// window closes (see `audit/repeats.rs`). `place` names who refused what to whom,
    /// e.g. event type, reason and address prefix.
    ///
    /// # Errors
    /// [`AuditError`] when the first event of the window could not be committed.
    pub async fn record_repeated(
        &self,
        mut event: AuditEvent,
        place: String,
    ) -> Result<Repeat, AuditError> {
        sanitize(&mut event);
        match self.repeats.note(place, &event) {
            repeats::Noted::Counted => Ok(Repeat::Counted),
            repeats::Noted::First => self.record(event).await.map(|()| Repeat::First),
        }
    }

    /// Queues `event` and waits until it is committed.
    ///
    /// # Errors
    /// [`AuditError`] when the batch holding it could not be committed.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.commit(event, None).await.map(|_| ())
    }

    /// Queues `event` with the refresh token rotation it records and waits until both
    /// are committed, in the same transaction: `false` when the rotation did not apply
    /// (its token used or its family revoked meanwhile), and then neither is.
    ///
    /// # Errors
    /// [`AuditError`] when the batch holding it could not be committed.
    pub async fn record_rotation(
        &self,
        event: AuditEvent,
        rotation: RefreshRotation,
    ) -> Result<bool, AuditError> {
        self.commit(event, Some(rotation)).await
    }

    async fn commit(
        &self,
        mut event: AuditEvent,
        rotation: Option<RefreshRotation>,
    ) -> Result<bool, AuditError> {
        sanitize(&mut event);
        let (done, wait) = oneshot::channel();
        let entry = AuditEntry { event, rotation };
        self.queue
            .send(Pending { entry, done })
            .await
            .map_err(|_| AuditError::Stopped)?;
        wait.await.map_err(|_| AuditError::Stopped)?
    }
}

/// Commits the summaries of repeated refusals as their windows close. Holds the queue
/// only while sending, so the writer still stops once every sink is dropped.
async fn write_summaries(queue: mpsc::WeakSender<Pending>, repeats: Arc<repeats::Repeats>) {
    loop {
        tokio::time::sleep(repeats.tick()).await;
        let Some(queue) = queue.upgrade() else { return };
        for (place, summary, repeated) in repeats.close(false) {
            let (done, wait) = oneshot::channel();
            let pending = Pending {
                entry: AuditEntry {
                    event: summary.clone(),
                    rotation: None,
                },
                done,
            };
            let committed = match queue.send(pending).await {
                Ok(()) => matches!(wait.await, Ok(Ok(_))),
                Err(_) => false,
            };
            if !committed {
                repeats.restore(place, summary, repeated);
            }
        }
    }
}

async fn write_batches(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Pending>,
    repeats: Arc<repeats::Repeats>,
) {
    let mut entries = Vec::with_capacity(MAX_BATCH);
    let mut waiters = Vec::with_capacity(MAX_BATCH);
    let gather = if store.backend().commits_in_process() {
        GATHER_ROUNDS
    } else {
        0
    };
    loop {
        let Some(first) = rx.recv().await else {
            // Shutting down: the counts of windows still open are written now.
            let summaries: Vec<AuditEvent> =
                repeats.close(true).into_iter().map(|(_, e, _)| e).collect();
            if !summaries.is_empty()
                && let Err(e) = store.append_audit_events(&summaries).await
            {
                failed(e, summaries.len());
            }
            return;
        };
        entries.push(first.entry);
        waiters.push(first.done);
        drain(&mut rx, &mut entries, &mut waiters);
        for _ in 0..gather {
            let before = entries.len();
            // Handlers already running get their turn and queue their events.
            tokio::task::yield_now().await;
            drain(&mut rx, &mut entries, &mut waiters);
            if entries.len() == before {
                break;
            }
        }
        let started = std::time::Instant::now();
        let result = store.append_audit_entries(&entries).await;
        metrics::histogram!("mayfly_audit_batch_size").record(entries.len() as f64);
        metrics::histogram!("mayfly_audit_commit_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(applied) => {
                tracing::trace!(batch = entries.len(), "audit batch committed");
                for (waiter, applied) in waiters.drain(..).zip(applied) {
                    // A waiter that gave up (client went away) is not an error.
                    let _ = waiter.send(Ok(applied));
                }
            }
            // The database is away: one at a time would only fail slower.
            Err(e) if e.is_unavailable() || entries.len() == 1 => {
                let error = failed(e, entries.len());
                for waiter in waiters.drain(..) {
                    let _ = waiter.send(Err(error.clone()));
                }
            }
            // One entry may be at fault: it must not take the others with it.
            Err(e) => {
                tracing::warn!(error = %e, batch = entries.len(), "audit batch refused; retrying entry by entry");
                for (entry, waiter) in entries.iter().zip(waiters.drain(..)) {
                    let result = store
                        .append_audit_entries(std::slice::from_ref(entry))
                        .await
                        .map_err(|e| failed(e, 1))
                        .map(|applied| applied.first().copied().unwrap_or(false));
                    let _ = waiter.send(result);
                }
            }
        }
        entries.clear();
    }
}

/// Takes what is queued, up to [`MAX_BATCH`] entries in all.
fn drain(
    rx: &mut mpsc::Receiver<Pending>,
    entries: &mut Vec<AuditEntry>,
    waiters: &mut Vec<oneshot::Sender<Result<bool, AuditError>>>,
) {
    while entries.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(p) => {
                entries.push(p.entry);
                waiters.push(p.done);
            }
            Err(_) => break,
        }
    }
}

fn failed(e: StoreError, batch: usize) -> AuditError {
    metrics::counter!("mayfly_audit_failures_total").increment(1);
    tracing::error!(error = %e, source = ?std::error::Error::source(&e), batch, "audit batch not committed");
    AuditError::Store(Arc::new(e))
}

/// Passes every string of `event` through [`UntrustedText`] (keys of `detail` too),
/// whoever built it. Events that commit inside a store transaction with their change
/// (admin changes, revocations) skip the sink, so their builders call this themselves.
pub(crate) fn sanitize(event: &mut AuditEvent) {
    for field in [&mut event.event_type, &mut event.outcome] {
        clean(field);
    }
    for field in [
        &mut event.actor,
        &mut event.subject,
        &mut event.client_id,
        &mut event.jti,
        &mut event.audience,
        &mut event.scopes,
        &mut event.source_ip,
        &mut event.user_agent,
        &mut event.request_id,
    ]
    .into_iter()
    .flatten()
    {
        clean(field);
    }
    clean_json(&mut event.detail);
}

fn clean(s: &mut String) {
    if !UntrustedText::is_clean(s, MAX_FIELD) {
        *s = UntrustedText::capped(s, MAX_FIELD).into_string();
    }
}

fn clean_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => clean(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(clean_json),
        serde_json::Value::Object(map) => {
            if map.keys().any(|k| !UntrustedText::is_clean(k, MAX_FIELD)) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (UntrustedText::capped(&k, MAX_FIELD).into_string(), v))
                    .collect();
            }
            map.values_mut().for_each(clean_json);
        }
        _ => {}
    }
}

/// Where a request came from, for audit.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Source address.
    pub source_ip: Option<IpAddr>,
    /// `User-Agent`, escaped and capped ([`UntrustedText`]).
    pub user_agent: Option<String>,
    /// `x-request-id`, escaped and capped ([`UntrustedText`]).
    pub request_id: Option<String>,
}

/// Event outcomes.
pub mod outcome {
    /// It happened.
    pub const SUCCESS: &str = "success";
    /// It was refused.
    pub const DENIED: &str = "denied";
    /// It failed.
    pub const FAILURE: &str = "failure";
    /// Something unusual was noticed (anomaly events).
    pub const DETECTED: &str = "detected";
}

/// Event types.
pub mod kind {
    /// A token was issued.
    pub const TOKEN_ISSUED: &str = "token.issued";
    /// A token request was refused.
    pub const TOKEN_DENIED: &str = "token.denied";
    /// A token, or a set of tokens, was revoked.
    pub const TOKEN_REVOKED: &str = "token.revoked";
    /// A resource server introspected a token.
    pub const TOKEN_INTROSPECTED: &str = "token.introspected";
    /// Client authentication failed.
    pub const CLIENT_AUTH_FAILED: &str = "client.auth_failed";
    /// An administrator changed something.
    pub const ADMIN_CHANGE: &str = "admin.change";
    /// A signing key changed state.
    pub const KEY_CHANGE: &str = "key.change";
    /// A user's password authentication failed (unknown user, wrong password, locked).
    pub const USER_AUTH_FAILED: &str = "user.auth_failed";
    /// A resource server reported that a token was used.
    pub const TOKEN_USED: &str = "token.used";
    /// Something looked wrong: a new network, a new audience or endpoint, a burst of
    /// failures, a reused refresh token. `detail.anomaly` says which.
    pub const ANOMALY: &str = "anomaly";
    /// Just-in-time access was requested.
    pub const ACCESS_REQUESTED: &str = "access.requested";
    /// One approver approved an access request (it may need more).
    pub const ACCESS_APPROVAL: &str = "access.approval";
    /// An access request was approved: its grant exists.
    pub const ACCESS_APPROVED: &str = "access.approved";
    /// An access request was denied (by an approver, or by policy when made).
    pub const ACCESS_DENIED: &str = "access.denied";
    /// The requester cancelled an access request (an approved one's grant ended).
    pub const ACCESS_CANCELLED: &str = "access.cancelled";
    /// An approver reviewed a break-glass access request after the fact.
    pub const ACCESS_REVIEWED: &str = "access.reviewed";
    /// Nobody decided a pending access request in time.
    pub const ACCESS_EXPIRED: &str = "access.expired";
}

/// Starts an event of `event_type` at `now`; fill the rest with struct update syntax.
pub fn event(
    event_type: &str,
    outcome: &str,
    now: OffsetDateTime,
    ctx: &RequestContext,
) -> AuditEvent {
    AuditEvent {
        id: Uuid::now_v7(),
        occurred_at: now,
        event_type: event_type.to_owned(),
        outcome: outcome.to_owned(),
        actor: None,
        subject: None,
        client_id: None,
        jti: None,
        audience: None,
        scopes: None,
        source_ip: ctx.source_ip.map(|ip| ip.to_string()),
        user_agent: ctx.user_agent.clone(),
        request_id: ctx.request_id.clone(),
        detail: serde_json::Value::Object(serde_json::Map::new()),
    }
}

/// How often old audit events are pruned.
pub const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes events older than `keep` (the configured retention), now and then every
/// hour. Abort the handle to stop it.
pub fn spawn_retention(
    store: Arc<dyn Store>,
    clock: Arc<dyn crate::clock::Clock>,
    keep: time::Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match store.prune_audit_events(clock.now() - keep).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "audit: deleted events past retention"),
                Err(e) => tracing::warn!(error = %e, "audit: retention pruning failed"),
            }
            tokio::time::sleep(RETENTION_INTERVAL).await;
        }
    })
}
