//! The runtime: what a running process holds and shares between requests — the
//! [`AppState`] and its start-up — and the small in-memory pieces no lower module owns:
//! anomaly sightings (`sightings`), DPoP nonces (`nonces`), whether the database is
//! reachable (`availability`), the access tokens whose signature was checked
//! (`verified`) and the refresh tokens minted here and not yet presented (`minted`).
//! Above the infrastructure (store, keys, audit, directory, revocations), below the
//! OAuth and web layers that use it.

pub mod availability;
pub mod minted;
pub mod nonces;
pub mod sightings;
pub mod verified;

use std::sync::Arc;

use mayfly_store::Store;
use tokio::task::JoinHandle;

use crate::audit::AuditSink;
use crate::clock::Clock;
use crate::config::Config;
use crate::directory::Directory;
use crate::keys::{Keyring, MasterKey};

/// Everything a handler may use. Cheap to clone: one reference count, since axum clones
/// the state for every handler and middleware a request passes through.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    /// The configuration.
    pub config: Arc<Config>,
    /// The issuer URL (validated, defaulted).
    pub issuer: String,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Signing keys.
    pub keyring: Arc<Keyring>,
    /// Clients, secrets and grants, cached.
    pub directory: Arc<Directory>,
    /// Live revocations, in memory.
    pub revocations: Arc<crate::revocation::Revocations>,
    /// Durable audit log.
    pub audit: AuditSink,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Password hashing: a fixed pool of workers with a bounded queue.
    pub passwords: crate::password::Passwords,
    /// Failed logins per source address (IPv6: per /64).
    pub login_failures: Arc<crate::client_auth::throttle::Counters<ipnet::IpNet>>,
    /// Failed client authentication counters.
    pub throttle: Arc<crate::client_auth::throttle::Throttle>,
    /// What anomaly detection remembers in this process.
    pub anomalies: Arc<sightings::Detector>,
    /// Where anomaly events are sent, if anywhere.
    pub webhook: Option<crate::webhook::Webhook>,
    /// DPoP server nonces.
    pub nonces: Arc<crate::runtime::nonces::Nonces>,
    /// Whether the database is known to be down (requests then fail fast).
    pub availability: Arc<availability::Availability>,
    /// Access tokens whose signature was checked: introspection, revocation and admin
    /// bearer auth verify through it (issue #18).
    pub verified: Arc<verified::VerifiedTokens>,
    /// Refresh tokens this process minted and has not seen presented: their next
    /// refresh here skips the read (issue #18).
    pub minted: Arc<minted::MintedTokens>,
    /// Verifies external tokens (workload identity federation); one per process, so its
    /// cache of trusted issuers' keys is shared.
    pub verifier: mayfly_federation::Verifier,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The master key.
    #[error(transparent)]
    MasterKey(#[from] crate::keys::MasterKeyError),
    /// The database.
    #[error("database")]
    Store(#[from] mayfly_store::StoreError),
    /// The signing keys.
    #[error(transparent)]
    Keyring(#[from] crate::keys::KeyringError),
}

/// A started service: its state, and the audit writer to await on shutdown.
pub struct Started {
    /// The state to serve.
    pub state: AppState,
    /// Finishes once every [`AuditSink`] is dropped and the queue is drained.
    pub audit_writer: JoinHandle<()>,
}

impl AppState {
    /// Validates the configuration, opens and migrates the store, loads the master key
    /// and the keyring, and starts the audit writer; `verifier` checks external tokens.
    ///
    /// # Errors
    /// [`StartError`] naming what failed.
    pub async fn start(
        config: Config,
        clock: Arc<dyn Clock>,
        verifier: mayfly_federation::Verifier,
    ) -> Result<Started, StartError> {
        // Install the metrics recorder before anything records.
        crate::telemetry::metrics();
        let issuer = config.issuer()?;
        config.check_ttls()?;
        config.check_key_periods()?;
        config.check_user_logins()?;
        config.check_database_url()?;
        config.limits.check()?;
        let webhook = config
            .webhook()?
            .map(|(url, secret)| crate::webhook::Webhook::start(url, secret, clock.clone()));
        let master = MasterKey::load(&config.master_key_source()?)?;
        let nonces = crate::runtime::nonces::Nonces::new(master.derive("mayfly dpop nonce key v1"));
        let store = mayfly_store::connect(&config.database_url).await?;
        store.migrate().await?;
        let keyring = Keyring::load(store.as_ref(), master, clock.now()).await?;
        let directory = Directory::start(store.clone()).await?;
        let revocations =
            crate::revocation::Revocations::start(store.clone(), clock.clone()).await?;
        let (audit, audit_writer) = AuditSink::start(
            store.clone(),
            config.limits.audit_repeat_window.unsigned_abs(),
        );
        let passwords = crate::password::Passwords::new(
            config.limits.password_workers,
            config.limits.password_queue,
        );
        let state = Self(Arc::new(Shared {
            config: Arc::new(config),
            issuer,
            store: store.clone(),
            keyring: Arc::new(keyring),
            directory,
            revocations,
            audit,
            clock,
            passwords,
            login_failures: Arc::default(),
            throttle: Arc::default(),
            anomalies: Arc::default(),
            webhook,
            nonces: Arc::new(nonces),
            availability: availability::Availability::new(store.clone()),
            verified: Arc::default(),
            minted: Arc::default(),
            verifier,
        }));
        Ok(Started {
            state,
            audit_writer,
        })
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
