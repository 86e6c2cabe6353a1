//! The directory: an in-memory, read-through view of who may get which token (clients,
//! their secret digests, all their grants), so that issuance reads no database.
//!
//! Correctness rests on the store's revision counter, which database triggers move on
//! every change to that data, from any process:
//! - changes made through this process's store are seen at once (its local change
//!   count is compared on every lookup);
//! - changes made elsewhere (another replica, the CLI, manual SQL) are seen within
//!   [`POLL_INTERVAL`], when the poller finds the revision moved.
//!
//! Either way the whole cache is dropped; admin changes are rare, lookups are not.
//! Entries hold every grant whatever its window; callers filter by time. Users' grants
//! are kept the same way (refresh, introspection of user tokens); password logins read
//! the database (lockout state does not move the revision).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use mayfly_store::{ClientView, Store, StoreResult, Subject, SubjectGrant};
use uuid::Uuid;

/// How often the database revision is checked for changes made by other processes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Entries kept before the cache starts over (bounds memory under id floods).
const MAX_ENTRIES: usize = 100_000;

/// The cache. Share it as `Arc<Directory>`.
pub struct Directory {
    store: Arc<dyn Store>,
    entries: RwLock<HashMap<Uuid, Arc<ClientView>>>,
    /// Users' grants (refresh and introspection of user tokens). Not the users
    /// themselves: their lockout state changes without moving the revision.
    user_grants: RwLock<HashMap<Uuid, Arc<[SubjectGrant]>>>,
    /// Moves on every clear, so a load that raced a clear is not cached.
    generation: AtomicU64,
    seen_local: AtomicU64,
    seen_revision: AtomicI64,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// An empty directory over `store`, with a poller watching the revision. The poller
    /// stops once the directory is dropped.
    ///
    /// # Errors
    /// The store's, when the revision cannot be read.
    pub async fn start(store: Arc<dyn Store>) -> StoreResult<Arc<Self>> {
        let directory = Arc::new(Self {
            seen_local: AtomicU64::new(store.local_changes()),
            seen_revision: AtomicI64::new(store.revision().await?),
            store,
            entries: RwLock::default(),
            user_grants: RwLock::default(),
            generation: AtomicU64::new(0),
        });
        tokio::spawn(poll(Arc::downgrade(&directory)));
        Ok(directory)
    }

    /// The client with its secrets and grants, from memory when possible.
    ///
    /// # Errors
    /// The store's, on a miss.
    pub async fn client(&self, id: Uuid) -> StoreResult<Option<Arc<ClientView>>> {
        self.cached(&self.entries, id, async {
            Ok(self.store.client_view(id).await?.map(Arc::new))
        })
        .await
    }

    /// Every grant of a user (whatever its window: callers filter by time), from memory
    /// when possible.
    ///
    /// # Errors
    /// The store's, on a miss.
    pub async fn user_grants(&self, id: Uuid) -> StoreResult<Arc<[SubjectGrant]>> {
        let grants = self
            .cached(&self.user_grants, id, async {
                Ok(Some(
                    self.store.subject_grants(Subject::User(id)).await?.into(),
                ))
            })
            .await?;
        Ok(grants.unwrap_or_else(|| Arc::from(Vec::new())))
    }

    /// `map[id]`, or what `load` finds, kept unless a change may have raced the load.
    async fn cached<T: Clone>(
        &self,
        map: &RwLock<HashMap<Uuid, T>>,
        id: Uuid,
        load: impl Future<Output = StoreResult<Option<T>>>,
    ) -> StoreResult<Option<T>> {
        self.notice_local_changes();
        if let Some(found) = map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned()
        {
            return Ok(Some(found));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let local = self.store.local_changes();
        let Some(found) = load.await? else {
            return Ok(None);
        };
        let mut entries = map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A change committed while loading may not be in `found`: serve it, don't keep it.
        if self.generation.load(Ordering::Acquire) == generation
            && self.store.local_changes() == local
        {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(id, found.clone());
        }
        Ok(Some(found))
    }

    /// Checks the database revision now; drops the cache when it moved.
    ///
    /// # Errors
    /// The store's.
    pub async fn refresh(&self) -> StoreResult<()> {
        let revision = self.store.revision().await?;
        if self.seen_revision.swap(revision, Ordering::AcqRel) != revision {
            self.clear();
        }
        Ok(())
    }

    fn notice_local_changes(&self) {
        let local = self.store.local_changes();
        if self.seen_local.swap(local, Ordering::AcqRel) != local {
            self.clear();
        }
    }

    fn clear(&self) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut user_grants = self
            .user_grants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
        user_grants.clear();
    }
}

async fn poll(directory: Weak<Directory>) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(directory) = directory.upgrade() else {
            return;
        };
        if let Err(e) = directory.refresh().await {
            // Keep serving from memory only if we can still see changes: on a database
            // outage drop everything, so nothing stale outlives the outage.
            tracing::warn!(error = %e, "directory: cannot read the revision; dropping the cache");
            directory.clear();
        }
    }
}
