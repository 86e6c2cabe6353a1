//! `mayfly admin keys list|rotate` (over `/admin/v1/keys`) and `mayfly keys rewrap`,
//! which re-encrypts the private keys under a new master key straight in the database
//! (the server cannot do it for itself: it must be stopped first).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use reqwest::Method;

use super::admin::Ctx;
use super::output::{Rewrapped, print};
use super::{now, open_store};
use crate::api::keys::RotateIn;
use crate::config::{Config, MasterKeySource};
use crate::keys::{self, MasterKey};

const COLUMNS: &[&str] = &["id", "state", "created_at", "activated_at", "retired_at"];

/// `mayfly admin keys …`
#[derive(Debug, Subcommand)]
pub enum AdminKeysCommand {
    /// List the signing keys (ids, states and times; no key material).
    List,
    /// Rotate now: the `next` key (or a fresh one) signs once it has been published for
    /// the publish lead; until then the answer is `pending` and the servers activate it
    /// when the time comes.
    #[command(
        after_help = "Example (the active key leaked):\n  mayfly admin keys rotate --emergency"
    )]
    Rotate {
        /// The active key leaked: a successor signs at once and the old key is revoked
        /// (removed from the key set), so every token it signed is rejected by verifiers
        /// that refetch the key set.
        #[arg(long)]
        emergency: bool,
    },
}

/// `mayfly keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-encrypt every private key under a new master key, in one transaction, in the
    /// database. Stop every `mayfly serve` first, then start them with the new key file:
    /// the old one no longer opens the keys.
    #[command(
        after_help = "Example:\n  openssl rand -hex 32 > new.key && chmod 600 new.key\n  mayfly keys rewrap --new-master-key-file new.key"
    )]
    Rewrap {
        /// File holding the new master key (64 hex characters; openssl rand -hex 32).
        #[arg(long)]
        new_master_key_file: PathBuf,
        /// The server's settings (database, current master key).
        #[command(flatten)]
        config: Config,
    },
}

/// Runs `mayfly admin keys …`.
///
/// # Errors
/// The server refused.
pub async fn admin(ctx: &mut Ctx, command: AdminKeysCommand) -> anyhow::Result<()> {
    let answer = match command {
        AdminKeysCommand::List => ctx.api.read("/admin/v1/keys").await?,
        AdminKeysCommand::Rotate { emergency } => {
            ctx.api
                .call(
                    Method::POST,
                    "/admin/v1/keys/rotate",
                    Some(&RotateIn { emergency }),
                )
                .await?
        }
    };
    ctx.show(&answer, COLUMNS)
}

/// Runs `mayfly keys …`.
///
/// # Errors
/// The configuration, a master key or the store failed.
pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Rewrap {
        new_master_key_file,
        config,
    } = command;
    // Neither file may be generated here, nor the database: a fresh one opens nothing.
    let old = MasterKey::load(&MasterKeySource {
        create_if_missing: false,
        ..config.master_key_source()?
    })?;
    let new = MasterKey::load(&MasterKeySource {
        path: new_master_key_file.clone(),
        create_if_missing: false,
    })?;
    let store = open_store(&config, false).await?;
    let rewrapped = keys::rewrap(store.as_ref(), &old, &new, "cli", now())
        .await
        .context("re-encrypting the signing keys")?;
    print(&Rewrapped {
        rewrapped,
        master_key_file: new_master_key_file.display().to_string(),
    })
}
