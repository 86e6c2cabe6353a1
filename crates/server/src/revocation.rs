//! Revocations as the server sees them: a hot in-memory rule set that every token check
//! reads (no database query per check), kept current from the store, and the broadcast
//! the revocation stream serves.
//!
//! It catches up from the store's feed (`seq` order) when the store signals a new
//! revocation (Postgres `LISTEN/NOTIFY` across replicas; SQLite in-process), and every
//! [`CATCH_UP_INTERVAL`] in case a signal was lost or another process (the CLI) wrote.
//! On start it loads every live revocation, so a restart forgets nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration as StdDuration;

use mayfly_core::Claims;
use mayfly_core::revocation::{RevocationKind, Rule, RuleSet};
use mayfly_store::{RevocationRecord, Store, StoreResult};
use tokio::sync::{Mutex, broadcast, watch};

use crate::clock::Clock;

/// How often the store is read even without a signal.
pub const CATCH_UP_INTERVAL: StdDuration = StdDuration::from_millis(500);
/// How long the store may go unread before this replica's revocations are stale: its
/// streams then end and new ones are refused (503), so followers notice, instead of
/// hearing keep-alives while revocations made through other replicas never arrive.
pub const STALE_AFTER: StdDuration = StdDuration::from_secs(5);
/// How often expired revocations are pruned and the rule set rebuilt.
pub const PRUNE_INTERVAL: StdDuration = StdDuration::from_secs(60);
/// Rows read per catch-up query.
const BATCH: u32 = 1000;

/// The live revocations. Share as `Arc<Revocations>`.
pub struct Revocations {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    rules: RwLock<RuleSet>,
    last_seq: AtomicI64,
    /// Serializes catch-ups so each record is applied and broadcast once, in order.
    catching_up: Mutex<()>,
    feed: broadcast::Sender<Arc<RevocationRecord>>,
    /// Open streams per client.
    streams: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    /// Raised when the service shuts down: open streams end.
    closing: watch::Sender<bool>,
    /// When a catch-up last read the store to its end.
    caught_up: std::sync::Mutex<std::time::Instant>,
}

/// One open stream of a client, counted until dropped.
#[derive(Debug)]
pub struct StreamSlot {
    streams: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    client: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

/// A stored revocation as a rule; `None` for an unknown kind (a newer server wrote it).
pub fn rule(record: &RevocationRecord) -> Option<Rule> {
    Some(Rule {
        kind: RevocationKind::parse(&record.kind)?,
        value: record.value.clone(),
        issued_before: record.issued_before,
    })
}

impl Revocations {
    /// Loads every live revocation and starts following the store.
    ///
    /// # Errors
    /// The store's, when the initial load fails.
    pub async fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> StoreResult<Arc<Self>> {
        let (feed, _) = broadcast::channel(1024);
        let revocations = Arc::new(Self {
            store,
            clock,
            rules: RwLock::default(),
            last_seq: AtomicI64::new(0),
            catching_up: Mutex::new(()),
            feed,
            streams: Arc::default(),
            closing: watch::channel(false).0,
            caught_up: std::sync::Mutex::new(std::time::Instant::now()),
        });
        revocations.catch_up().await?;
        let signal = revocations.store.revocation_signal().await?;
        tokio::spawn(follow(Arc::downgrade(&revocations), signal));
        tokio::spawn(prune(Arc::downgrade(&revocations)));
        Ok(revocations)
    }

    /// Whether a token with `claims`, signed by `kid`, is revoked.
    pub fn revokes(&self, claims: &Claims, kid: &str) -> bool {
        self.rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .revokes(claims, kid)
    }

    /// The feed position this process has applied.
    pub fn last_seq(&self) -> i64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// New revocations as they are applied, for the stream.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RevocationRecord>> {
        self.feed.subscribe()
    }

    /// Takes one of `client`'s at most `max` stream slots; `None` when all are taken.
    pub fn open_stream(&self, client: &str, max: usize) -> Option<StreamSlot> {
        let mut open = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(client.to_owned()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            streams: self.streams.clone(),
            client: client.to_owned(),
        })
    }

    /// Ends every open stream (graceful shutdown: open streams would hold it for ever).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Turns true when the service shuts down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Reads and applies everything after the last applied `seq`. Call after recording a
    /// revocation to make it effective in this process at once.
    ///
    /// # Errors
    /// The store's.
    pub async fn catch_up(&self) -> StoreResult<()> {
        let _turn = self.catching_up.lock().await;
        loop {
            let records = self.store.revocations_after(self.last_seq(), BATCH).await?;
            let now = self.clock.now();
            for record in &records {
                if record.expires_at > now
                    && let Some(rule) = rule(record)
                {
                    self.rules
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(rule);
                }
                self.last_seq.store(record.seq, Ordering::Release);
                metrics::counter!("mayfly_revocations_applied_total").increment(1);
                // No subscriber is fine.
                let _ = self.feed.send(Arc::new(record.clone()));
            }
            if records.len() < BATCH as usize {
                *self
                    .caught_up
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = std::time::Instant::now();
                return Ok(());
            }
        }
    }

    /// Whether the store was read to its end within [`STALE_AFTER`]: what this replica
    /// knows of revocations is current.
    pub fn current(&self) -> bool {
        self.caught_up
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
            <= STALE_AFTER
    }

    /// Deletes expired revocations and rebuilds the rule set without them.
    ///
    /// # Errors
    /// The store's.
    pub async fn prune(&self) -> StoreResult<u64> {
        let _turn = self.catching_up.lock().await;
        let now = self.clock.now();
        let pruned = self.store.prune_revocations(now).await?;
        let mut rebuilt = RuleSet::default();
        let mut after = 0;
        loop {
            let records = self.store.revocations_after(after, BATCH).await?;
            for record in &records {
                if record.expires_at > now
                    && let Some(rule) = rule(record)
                {
                    rebuilt.insert(rule);
                }
                after = record.seq;
            }
            if records.len() < BATCH as usize {
                break;
            }
        }
        // Records past last_seq are in `rebuilt` but not yet broadcast: leave them to the
        // next catch-up (inserting a rule twice is harmless).
        *self
            .rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = rebuilt;
        Ok(pruned)
    }
}

async fn follow(revocations: Weak<Revocations>, signal: Option<Arc<tokio::sync::Notify>>) {
    loop {
        match &signal {
            Some(signal) => {
                let _ = tokio::time::timeout(CATCH_UP_INTERVAL, signal.notified()).await;
            }
            None => tokio::time::sleep(CATCH_UP_INTERVAL).await,
        }
        let Some(revocations) = revocations.upgrade() else {
            return;
        };
        if let Err(e) = revocations.catch_up().await {
            tracing::warn!(error = %e, "revocations: catch-up failed; retrying");
        }
    }
}

async fn prune(revocations: Weak<Revocations>) {
    loop {
        tokio::time::sleep(PRUNE_INTERVAL).await;
        let Some(revocations) = revocations.upgrade() else {
            return;
        };
        match revocations.prune().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                pruned = n,
                "revocations: pruned those whose tokens all expired"
            ),
            Err(e) => tracing::warn!(error = %e, "revocations: pruning failed"),
        }
    }
}
