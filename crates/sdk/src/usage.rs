//! Usage reporting: a resource server tells the issuer which tokens it accepted, for
//! which endpoint and from which address, so use is audited and watched for anomalies.
//!
//! [`UsageReporter::record`] only queues (never blocks a request, never fails one); a
//! background task POSTs batches to `{issuer}/v1/usage` with a token carrying
//! `mayfly:usage:write`. A batch that cannot be delivered is kept for the next attempt,
//! up to [`MAX_PENDING`] uses; beyond that the oldest are dropped and logged.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mayfly_core::token::Claims;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::Error;
use crate::clock::{Clock, SystemClock};
use crate::token_source::TokenSource;

/// The scope the reporter's token needs on the issuer's own audience.
pub use mayfly_core::scope::USAGE_WRITE_SCOPE;
/// Uses sent in one request at most (the issuer accepts up to 1000).
pub const MAX_BATCH: usize = 500;
/// Uses kept while the issuer cannot be reached.
pub const MAX_PENDING: usize = 10_000;
/// Default time between reports.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// One accepted request.
#[derive(Debug, Clone, Serialize)]
struct Use {
    jti: String,
    client_id: String,
    sub: String,
    aud: String,
    #[serde(with = "time::serde::rfc3339")]
    exp: OffsetDateTime,
    method: String,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

enum Command {
    Use(Box<Use>),
    Flush(oneshot::Sender<bool>),
}

/// Configures a [`UsageReporter`].
pub struct UsageReporterBuilder {
    issuer: String,
    source: TokenSource,
    interval: Duration,
    clock: Arc<dyn Clock>,
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for UsageReporterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageReporterBuilder")
            .field("issuer", &self.issuer)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl UsageReporterBuilder {
    /// Time between reports (default [`DEFAULT_INTERVAL`]); a full batch goes at once.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The clock that stamps each use.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The HTTP client to report with.
    #[must_use]
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Starts the background task (needs a Tokio runtime).
    ///
    /// # Errors
    /// [`Error::Config`] when no HTTP client can be built.
    pub fn start(self) -> Result<UsageReporter, Error> {
        let (queue, rx) = mpsc::channel(MAX_PENDING);
        let url = format!("{}/v1/usage", self.issuer.trim_end_matches('/'));
        let http = match self.http {
            Some(http) => http,
            None => crate::discovery::default_http()?,
        };
        tokio::spawn(run(http, url, self.source, self.interval, rx));
        Ok(UsageReporter {
            queue,
            clock: self.clock,
        })
    }
}

/// Sends batched `token.used` reports to the issuer. Cheap to clone.
#[derive(Clone)]
pub struct UsageReporter {
    queue: mpsc::Sender<Command>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for UsageReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UsageReporter")
    }
}

impl UsageReporter {
    /// Configures a reporter to `issuer`, authenticating with `source`, which must
    /// obtain tokens for the issuer's own audience with [`USAGE_WRITE_SCOPE`].
    pub fn builder(issuer: impl Into<String>, source: TokenSource) -> UsageReporterBuilder {
        UsageReporterBuilder {
            issuer: issuer.into(),
            source,
            interval: DEFAULT_INTERVAL,
            clock: Arc::new(SystemClock),
            http: None,
        }
    }

    /// Queues one accepted request. Returns at once; when the queue is full the use is
    /// dropped (and logged) rather than slowing the request.
    pub fn record(&self, claims: &Claims, method: &str, path: &str, client_ip: Option<IpAddr>) {
        let entry = Use {
            jti: claims.jti.clone(),
            client_id: claims.client_id.clone(),
            sub: claims.sub.clone(),
            aud: claims.aud.clone(),
            exp: claims.exp,
            method: method.to_owned(),
            path: path.chars().take(512).collect(),
            client_ip: client_ip.map(|ip| ip.to_canonical().to_string()),
            at: self.clock.now(),
        };
        if self.queue.try_send(Command::Use(Box::new(entry))).is_err() {
            tracing::warn!("usage report queue full; a use was not reported");
        }
    }

    /// Sends everything queued now; `true` when the issuer accepted all of it.
    pub async fn flush(&self) -> bool {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Command::Flush(done)).await.is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }
}

async fn run(
    http: reqwest::Client,
    url: String,
    source: TokenSource,
    interval: Duration,
    mut rx: mpsc::Receiver<Command>,
) {
    let mut pending: Vec<Use> = Vec::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flushed = tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Use(u)) => {
                    pending.push(*u);
                    if pending.len() < MAX_BATCH {
                        continue;
                    }
                    None
                }
                Some(Command::Flush(done)) => Some(done),
                None => {
                    send_all(&http, &url, &source, &mut pending).await;
                    return;
                }
            },
            _ = tick.tick() => None,
        };
        let ok = send_all(&http, &url, &source, &mut pending).await;
        if let Some(done) = flushed {
            let _ = done.send(ok);
        }
    }
}

/// Sends `pending` in batches; keeps what could not be sent (bounded).
async fn send_all(
    http: &reqwest::Client,
    url: &str,
    source: &TokenSource,
    pending: &mut Vec<Use>,
) -> bool {
    while !pending.is_empty() {
        let n = pending.len().min(MAX_BATCH);
        let sent = send(http, url, source, &pending[..n]).await;
        if sent == Sent::Refused {
            // Retrying a batch the issuer refuses as invalid would block every later one.
            tracing::warn!(dropped = n, "usage reports refused by the issuer; dropped");
            pending.drain(..n);
            continue;
        }
        if sent == Sent::Later {
            if pending.len() > MAX_PENDING {
                let excess = pending.len() - MAX_PENDING;
                pending.drain(..excess);
                tracing::warn!(
                    dropped = excess,
                    "usage reports dropped: the issuer is unreachable"
                );
            }
            return false;
        }
        pending.drain(..n);
    }
    true
}

#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Ok,
    /// Transient: keep the batch for the next attempt.
    Later,
    /// The batch itself was refused (422, 413): drop it.
    Refused,
}

async fn send(http: &reqwest::Client, url: &str, source: &TokenSource, batch: &[Use]) -> Sent {
    let token = match source.token().await {
        Ok(token) => token,
        Err(e) => {
            tracing::warn!(error = %e, "usage report: no token");
            return Sent::Later;
        }
    };
    let sent = http
        .post(url)
        .bearer_auth(token.secret())
        .json(&serde_json::json!({ "events": batch }))
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => Sent::Ok,
        Ok(r) => {
            let status = r.status();
            tracing::warn!(status = status.as_u16(), "usage report refused");
            if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY
                || status == reqwest::StatusCode::PAYLOAD_TOO_LARGE
            {
                Sent::Refused
            } else {
                Sent::Later
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "usage report not delivered");
            Sent::Later
        }
    }
}
