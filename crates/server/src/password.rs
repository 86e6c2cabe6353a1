//! Human passwords: argon2id with OWASP's minimum parameters (19 MiB, t=2, p=1, the
//! argon2 crate's defaults), computed on a fixed pool of worker threads, each with its
//! 19 MiB of argon2 memory allocated at its first job (a server that takes no
//! passwords never holds it) and reused for every check after: memory for
//! password work is bounded by the pool's size, whatever the load. When no check has
//! come for [`RELEASE_IDLE`], the memory is wiped and given back, so a burst of logins
//! does not stay in the process's footprint for good. In front of the pool
//! a bounded queue: beyond it a check is refused at once ([`PasswordError::Busy`], a 503
//! with `Retry-After`), so a burst of password work neither grows memory nor starves
//! token issuance (the workers also run at the lowest CPU priority).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::Rng as _;
use subtle::ConstantTimeEq as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use zeroize::{Zeroize as _, Zeroizing};

/// How long the pool waits without a password check before it wipes and frees its
/// workers' argon2 memory (the next check allocates it again, ~1 ms against ~50 ms of
/// hashing).
pub const RELEASE_IDLE: Duration = Duration::from_secs(10);

/// Shortest password accepted (NIST SP 800-63B asks for at least 8; we ask more).
pub const MIN_LEN: usize = 12;
/// Longest password accepted (bounds hashing work).
pub const MAX_LEN: usize = 1024;
/// Longest password, in bytes, that can match a stored hash ([`MAX_LEN`] characters of
/// at most 4 bytes). Longer ones are refused before any lookup, for every username
/// alike, so their timing tells nothing either.
pub const MAX_BYTES: usize = MAX_LEN * 4;

/// Verified in place of a user's hash when the username does not exist, so that an
/// unknown user costs the same argon2id work as a wrong password and timing does not
/// tell which usernames exist. Same parameters as [`Passwords::hash`] writes (checked by
/// a test); no password matches it (its output is all zeros).
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bWF5Zmx5LWR1bW15LXNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Why hashing or checking failed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Too short or too long.
    #[error("password must be {MIN_LEN} to {MAX_LEN} characters")]
    Length,
    /// Every worker is busy and the queue is full: retry later.
    #[error("password checks are busy; retry later")]
    Busy,
    /// The hashing failed (never expected).
    #[error("password hashing failed")]
    Hashing,
}

enum Work {
    Hash(Zeroizing<String>),
    Verify(Zeroizing<String>, String),
}

enum Done {
    Hashed(Result<String, PasswordError>),
    Verified(bool),
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Done>,
    span: tracing::Span,
    /// A place in the pool or its queue, given back when the job is done.
    _place: OwnedSemaphorePermit,
}

/// A place in the password pool (a worker or a queue slot), taken before any other work
/// for a login, so that a login refused for lack of room has cost nothing.
#[derive(Debug)]
pub struct Place(OwnedSemaphorePermit);

/// The password pool. Cheap to clone; the workers stop when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Passwords {
    jobs: mpsc::Sender<Job>,
    places: Arc<Semaphore>,
    /// The workers' state, for tests to see what memory they hold.
    #[cfg(test)]
    shared: Arc<Shared>,
}

/// One worker's argon2 memory, wiped whenever it is dropped: it holds blocks derived
/// from the last password checked.
struct Memory(Vec<Block>);

/// More than mimalloc serves from its arenas (32 MiB): see [`Memory::new`].
const OWN_MAPPING: usize = 33 << 20;

impl Memory {
    /// The blocks argon2 uses, in an allocation of [`OWN_MAPPING`] bytes, which the
    /// allocator maps from the OS for itself and unmaps when it is freed: released
    /// memory leaves the process at once. From an arena it would go back only after a
    /// delay, at some later free that a busy server may not make (`bench.sh` kept
    /// 19 MiB of it through its load). The capacity past the blocks is never touched,
    /// so it takes no memory.
    fn new() -> Self {
        let blocks = Params::DEFAULT.block_count();
        let mut memory = Vec::with_capacity(blocks.max(OWN_MAPPING / size_of::<Block>()));
        memory.resize(blocks, Block::default());
        Self(memory)
    }

    /// Zeroes the blocks; only those: wiping the untouched capacity would map it in.
    fn wipe(&mut self) {
        self.0.iter_mut().zeroize();
    }
}

impl std::ops::Deref for Memory {
    type Target = [Block];

    fn deref(&self) -> &[Block] {
        &self.0
    }
}

impl std::ops::DerefMut for Memory {
    fn deref_mut(&mut self) -> &mut [Block] {
        &mut self.0
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// What the workers share: the queue, and the memory of those not running a job.
struct Shared {
    jobs: Mutex<mpsc::Receiver<Job>>,
    /// At most one per worker: a job takes one (or allocates it) and puts it back.
    spare: Mutex<Vec<Memory>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn spare(&self) -> std::sync::MutexGuard<'_, Vec<Memory>> {
        self.spare.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_memory(&self) -> Memory {
        self.spare().pop().unwrap_or_else(Memory::new)
    }

    /// Wipes and frees the memory no job is using.
    fn release(&self) {
        let released = std::mem::take(&mut *self.spare());
        if !released.is_empty() {
            tracing::debug!(
                buffers = released.len(),
                "password workers idle: argon2 memory released"
            );
        }
        drop(released);
    }
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new(2, 32)
    }
}

impl Passwords {
    /// A pool of `workers` threads (at least one) with `queue` checks waiting at most.
    pub fn new(workers: usize, queue: usize) -> Self {
        Self::releasing_after(workers, queue, RELEASE_IDLE)
    }

    fn releasing_after(workers: usize, queue: usize, idle: Duration) -> Self {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let shared = Arc::new(Shared {
            jobs: Mutex::new(receiver),
            spare: Mutex::new(Vec::new()),
        });
        let workers = workers.max(1);
        for i in 0..workers {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || work(&shared, idle));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "password worker not started");
            }
        }
        Self {
            jobs,
            places: Arc::new(Semaphore::new(workers.saturating_add(queue))),
            #[cfg(test)]
            shared,
        }
    }

    /// Takes a place in the pool or its queue, without waiting.
    ///
    /// # Errors
    /// [`PasswordError::Busy`] when the queue is full.
    pub fn place(&self) -> Result<Place, PasswordError> {
        self.places
            .clone()
            .try_acquire_owned()
            .map(Place)
            .map_err(|_| PasswordError::Busy)
    }

    /// Hashes a new password into a PHC string.
    ///
    /// # Errors
    /// [`PasswordError::Length`] outside the accepted lengths, [`PasswordError::Busy`]
    /// when the queue is full.
    pub async fn hash(&self, password: Zeroizing<String>) -> Result<String, PasswordError> {
        let chars = password.chars().count();
        if !(MIN_LEN..=MAX_LEN).contains(&chars) {
            return Err(PasswordError::Length);
        }
        let place = self.place()?;
        match self.run(place, Work::Hash(password)).await? {
            Done::Hashed(result) => result,
            Done::Verified(_) => Err(PasswordError::Hashing),
        }
    }

    /// Whether `password` matches the PHC string `hash`, checked in the place taken.
    /// A password longer than [`MAX_BYTES`] costs the same work and never matches.
    pub async fn verify(&self, place: Place, password: Zeroizing<String>, hash: String) -> bool {
        let (password, hash) = if password.len() > MAX_BYTES {
            (Zeroizing::new(String::new()), DUMMY_HASH.to_owned())
        } else {
            (password, hash)
        };
        matches!(
            self.run(place, Work::Verify(password, hash)).await,
            Ok(Done::Verified(true))
        )
    }

    async fn run(&self, Place(place): Place, work: Work) -> Result<Done, PasswordError> {
        let (reply, done) = oneshot::channel();
        let job = Job {
            work,
            reply,
            span: tracing::Span::current(),
            _place: place,
        };
        self.jobs.send(job).map_err(|_| PasswordError::Hashing)?;
        done.await.map_err(|_| PasswordError::Hashing)
    }
}

/// A worker: takes jobs until the pool is dropped, each in memory from the pool's
/// spares. It runs at the lowest priority, so that password work (which anyone with a
/// password-grant client can ask for) takes the CPU only when token issuance leaves it.
/// Whichever worker waits `idle` for a job releases the spares: the others' memory is
/// among them unless they are running a job, whose memory goes back when it ends.
fn work(shared: &Shared, idle: Duration) {
    if let Err(e) =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        tracing::warn!(error = ?e, "password worker: priority not lowered");
    }
    loop {
        let job = shared
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv_timeout(idle);
        let job = match job {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                shared.release();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let _entered = job.span.enter();
        let mut memory = shared.take_memory();
        let done = match &job.work {
            Work::Hash(password) => Done::Hashed(hash_into(password, &mut memory)),
            Work::Verify(password, hash) => Done::Verified(verify_in(password, hash, &mut memory)),
        };
        shared.spare().push(memory);
        // The requester may have gone (its request was cancelled): nothing to do.
        let _ = job.reply.send(done);
    }
}

fn hash_into(password: &str, memory: &mut [Block]) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let params = Params::DEFAULT;
    let mut out = Zeroizing::new([0u8; Params::DEFAULT_OUTPUT_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out[..], memory)
        .map_err(|_| PasswordError::Hashing)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|_| PasswordError::Hashing)?,
        salt: Some(Salt::new(&salt).map_err(|_| PasswordError::Hashing)?),
        hash: Some(Output::new(&out[..]).map_err(|_| PasswordError::Hashing)?),
    };
    Ok(phc.to_string())
}

/// Checks `password` against a PHC string. A hash needing more memory than a worker
/// holds (not one Mayfly writes) never matches.
fn verify_in(password: &str, hash: &str, memory: &mut [Block]) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.block_count() > memory.len() {
        tracing::warn!(
            m_cost = params.m_cost(),
            "password hash needs more memory than a worker holds"
        );
        return false;
    }
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt.as_ref(),
        &mut out,
        memory,
    );
    hashed.is_ok() && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let p = Passwords::default();
        let hash = p
            .hash(Zeroizing::new("correct horse battery".into()))
            .await
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            p.verify(
                p.place().unwrap(),
                Zeroizing::new("correct horse battery".into()),
                hash.clone()
            )
            .await
        );
        assert!(
            !p.verify(
                p.place().unwrap(),
                Zeroizing::new("wrong horse battery".into()),
                hash.clone()
            )
            .await
        );
        assert!(
            !p.verify(
                p.place().unwrap(),
                Zeroizing::new("x".into()),
                "not a hash".into()
            )
            .await
        );
        assert!(matches!(
            p.hash(Zeroizing::new("short".into())).await,
            Err(PasswordError::Length)
        ));
    }

    #[tokio::test]
    async fn idle_workers_wipe_and_give_back_their_memory() {
        // Long enough that no release falls between a check and the assertions after
        // it, even on a loaded machine.
        let p = Passwords::releasing_after(2, 4, Duration::from_secs(2));
        let password = || Zeroizing::new("correct horse battery".to_owned());
        let (a, b) = tokio::join!(p.hash(password()), p.hash(password()));
        let hash = a.unwrap();
        b.unwrap();
        let kept = p.shared.spare().len();
        assert!((1..=2).contains(&kept), "kept for the next check: {kept}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !p.shared.spare().is_empty() {
            assert!(std::time::Instant::now() < deadline, "memory still held");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The next check allocates again and still verifies.
        assert!(p.verify(p.place().unwrap(), password(), hash).await);
        assert_eq!(p.shared.spare().len(), 1);
    }

    /// The memory is argon2's size, in an allocation the allocator maps for itself, and
    /// a wipe zeroes every block a password touched.
    #[test]
    fn memory_is_its_own_mapping_and_wipes_clean() {
        let mut memory = Memory::new();
        assert_eq!(memory.len(), Params::DEFAULT.block_count());
        assert!(memory.0.capacity() * size_of::<Block>() >= OWN_MAPPING);
        let mut out = [0u8; 32];
        Argon2::default()
            .hash_password_into_with_memory(
                b"correct horse battery",
                b"saltsaltsaltsalt",
                &mut out,
                &mut *memory,
            )
            .unwrap();
        let used = |m: &Memory| {
            m.iter()
                .filter(|b| b.as_ref().iter().any(|w| *w != 0))
                .count()
        };
        assert!(used(&memory) > memory.len() / 2);
        memory.wipe();
        assert_eq!(used(&memory), 0);
    }

    #[tokio::test]
    async fn the_dummy_hash_costs_what_a_real_one_does() {
        let p = Passwords::default();
        let real = p
            .hash(Zeroizing::new("correct horse battery".into()))
            .await
            .unwrap();
        let params = |h: &str| h.rsplitn(3, '$').nth(2).unwrap().to_owned();
        assert_eq!(params(DUMMY_HASH), params(&real), "same algorithm and cost");
        // It parses (a parse failure would return at once, and timing would tell).
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        // Nothing matches it. (Timing is measured end to end by the e2e tests.)
        assert!(
            !p.verify(
                p.place().unwrap(),
                Zeroizing::new("correct horse battery".into()),
                DUMMY_HASH.into()
            )
            .await
        );
        assert!(
            !p.verify(
                p.place().unwrap(),
                Zeroizing::new(String::new()),
                DUMMY_HASH.into()
            )
            .await
        );
    }
}
