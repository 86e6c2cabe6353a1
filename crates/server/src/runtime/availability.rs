//! Fail fast while the database is away.
//!
//! Without this, every request during an outage waited for the pool's acquire timeout
//! (3 s, twice for a token request: the read, then its denial's audit event) before its
//! 503. Once a request has failed as unavailable, [`Availability::suspect`] probes the
//! database in the background; if the probe fails too, the service is marked down and
//! the `admit` middleware (`http::mod`) answers 503 with `Retry-After` at once, without
//! touching the pool, until a probe succeeds (every [`PROBE_INTERVAL`]). Then requests
//! flow again immediately.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mayfly_store::Store;

/// How long a probe may take before it counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between probes while the database is down: how soon service resumes after it
/// returns.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Whether the database is known to be down, and the probe that finds out when it is
/// back.
pub struct Availability {
    store: Arc<dyn Store>,
    down: AtomicBool,
    probing: AtomicBool,
}

impl std::fmt::Debug for Availability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Availability")
            .field("down", &self.is_down())
            .finish_non_exhaustive()
    }
}

impl Availability {
    /// Starts out assuming the database is up.
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        metrics::gauge!("mayfly_database_up").set(1.0);
        Arc::new(Self {
            store,
            down: AtomicBool::new(false),
            probing: AtomicBool::new(false),
        })
    }

    /// Whether requests that need the database should be refused at once.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// A request failed as if the database were unavailable (a 503): probe it in the
    /// background, and while probes fail, mark it down. At most one probe loop runs.
    pub fn suspect(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if this.probe().await {
                    if this.down.swap(false, Ordering::AcqRel) {
                        tracing::info!("database is back; serving again");
                        metrics::gauge!("mayfly_database_up").set(1.0);
                    }
                    break;
                }
                if !this.down.swap(true, Ordering::AcqRel) {
                    tracing::error!("database unavailable; answering 503 until a probe succeeds");
                    metrics::gauge!("mayfly_database_up").set(0.0);
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
            this.probing.store(false, Ordering::Release);
        });
    }

    /// One bounded round trip to the database.
    pub async fn probe(&self) -> bool {
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, self.store.ping()).await,
            Ok(Ok(()))
        )
    }
}
