//! `mayfly keys …`: list, rotate now, and re-encrypt the signing keys under a new
//! master key, straight in the database.

use anyhow::Context as _;
use clap::Subcommand;
use std::path::PathBuf;

use super::output::{KeyList, Rewrapped, RotateReport, print};
use super::{now, open_store};
use crate::config::{Config, MasterKeySource};
use crate::keys::rotation::{RotateOptions, Rotator};
use crate::keys::{self, KeyInfo, Keyring, MasterKey};

/// `mayfly keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print every signing key (ids, states and times; no key material) as JSON.
    List,
    /// Rotate now: the `next` key (or a fresh one) signs once it has been published for
    /// the publish lead; until then the answer is `pending` and the running services
    /// activate it when the time comes.
    Rotate {
        /// The active key leaked: a successor signs at once and the old key is revoked
        /// (removed from the key set), so every token it signed is rejected by verifiers
        /// that refetch the key set.
        #[arg(long)]
        emergency: bool,
    },
    /// Re-encrypt every private key under a new master key, in one transaction. Stop
    /// every `mayfly serve` first, then start them with the new key file: the old one no
    /// longer opens the keys.
    Rewrap {
        /// File holding the new master key (64 hex characters; openssl rand -hex 32).
        #[arg(long)]
        new_master_key_file: PathBuf,
    },
}

/// Runs `mayfly keys …`.
///
/// # Errors
/// The configuration, the master key or the store failed.
pub async fn run(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let now = now();
    match command {
        KeysCommand::List => {
            let keys = store
                .all_signing_keys()
                .await
                .context("reading the signing keys")?
                .iter()
                .map(KeyInfo::from)
                .collect();
            print(&KeyList { keys })
        }
        KeysCommand::Rotate { emergency } => {
            config.check_ttls()?;
            config.check_key_periods()?;
            let master = MasterKey::load(&config.master_key_source()?)?;
            let keyring = Keyring::load(store.as_ref(), master, now)
                .await
                .context("loading the signing keys")?;
            let outcome = Rotator::new(store.as_ref(), &keyring, config.key_policy(), "cli")
                .rotate_now(now, RotateOptions { emergency })
                .await?;
            print(&RotateReport::from(&outcome))
        }
        KeysCommand::Rewrap {
            new_master_key_file,
        } => {
            // Neither file may be generated here: a fresh key would open nothing.
            let old = MasterKey::load(&MasterKeySource {
                create_if_missing: false,
                ..config.master_key_source()?
            })?;
            let new = MasterKey::load(&MasterKeySource {
                path: new_master_key_file.clone(),
                create_if_missing: false,
            })?;
            let rewrapped = keys::rewrap(store.as_ref(), &old, &new, "cli", now)
                .await
                .context("re-encrypting the signing keys")?;
            print(&Rewrapped {
                rewrapped,
                master_key_file: new_master_key_file.display().to_string(),
            })
        }
    }
}
