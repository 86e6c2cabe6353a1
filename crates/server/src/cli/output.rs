//! What the CLI prints: the admin API's output types (`crate::http::admin`), and where
//! the CLI printed more or other field names before (`client_id`, `status`, scope names),
//! those fields beside them, so scripts written against either keep working. Every
//! command prints one JSON object on one line.

use serde::Serialize;
use uuid::Uuid;

use crate::api::RotateOut;
use crate::api::{AudienceOut, ClientCreated, GrantOut, SecretCreated};
use crate::keys::KeyInfo;
use crate::keys::rotation::RotateOutcome;

/// Prints `value` as one line of JSON.
///
/// # Errors
/// It could not be encoded.
pub fn print(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// `admin bootstrap`, `admin client create`: the created client as the API shows it,
/// and its id again as `client_id`.
#[derive(Debug, Serialize)]
pub struct ClientCreatedOut {
    /// The client id (the API's `id`).
    pub client_id: Uuid,
    /// As `POST /admin/v1/clients` answers.
    #[serde(flatten)]
    pub created: ClientCreated,
}

impl ClientCreatedOut {
    /// Adds `client_id`.
    pub fn new(created: ClientCreated) -> Self {
        Self {
            client_id: created.client.id,
            created,
        }
    }
}

/// `admin audience create`: the audience and the names of the scopes created on it.
#[derive(Debug, Serialize)]
pub struct AudienceCreated {
    /// As `POST /admin/v1/audiences` answers.
    #[serde(flatten)]
    pub audience: AudienceOut,
    /// Scope names.
    pub scopes: Vec<String>,
}

/// `admin scope add`.
#[derive(Debug, Serialize)]
pub struct ScopesAdded {
    /// The audience URI.
    pub audience: String,
    /// The scope names added.
    pub scopes: Vec<String>,
}

/// `admin client add-secret`: the secret as the API shows it once, with its client.
#[derive(Debug, Serialize)]
pub struct SecretAdded {
    /// The client.
    pub client_id: Uuid,
    /// The secret's id (the API's `id`).
    pub secret_id: Uuid,
    /// As `POST /admin/v1/clients/{id}/secrets` answers.
    #[serde(flatten)]
    pub secret: SecretCreated,
}

/// `admin client enable|disable`.
#[derive(Debug, Serialize)]
pub struct ClientEnabled {
    /// The client.
    pub client_id: Uuid,
    /// Whether it may obtain tokens now.
    pub enabled: bool,
}

/// `admin grant create`: the grant as the API shows it, and its subject's id as
/// `client_id` or `user_id`.
#[derive(Debug, Serialize)]
pub struct GrantCreated {
    /// As `POST /admin/v1/grants` answers.
    #[serde(flatten)]
    pub grant: GrantOut,
    /// The client granted, if a client.
    pub client_id: Option<Uuid>,
    /// The user granted, if a user.
    pub user_id: Option<Uuid>,
}

/// `keys list`.
#[derive(Debug, Serialize)]
pub struct KeyList {
    /// Every key, with its whole history.
    pub keys: Vec<KeyInfo>,
}

/// `keys rotate`: the API's answer, `status` (the same as its `outcome`) and every key
/// change made.
#[derive(Debug, Serialize)]
pub struct RotateReport {
    /// `activated` or `pending`.
    pub status: &'static str,
    /// As `POST /admin/v1/keys/rotate` answers.
    #[serde(flatten)]
    pub outcome: RotateOut,
    /// The key changes, in order.
    pub changes: Vec<KeyChangeOut>,
}

/// One key state change.
#[derive(Debug, Serialize)]
pub struct KeyChangeOut {
    /// The key id.
    pub kid: String,
    /// Its state before (none: new).
    pub from: Option<&'static str>,
    /// Its state after.
    pub to: &'static str,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl From<&RotateOutcome> for RotateReport {
    fn from(outcome: &RotateOutcome) -> Self {
        let (status, changes) = match outcome {
            RotateOutcome::Activated { changes, .. } => ("activated", changes),
            RotateOutcome::Pending { changes, .. } => ("pending", changes),
        };
        Self {
            status,
            outcome: RotateOut::from(outcome),
            changes: changes
                .iter()
                .map(|c| KeyChangeOut {
                    kid: c.id.clone(),
                    from: c.from.map(mayfly_store::KeyState::as_str),
                    to: c.to.as_str(),
                    revoked: c.revoked,
                })
                .collect(),
        }
    }
}

/// `keys rewrap`.
#[derive(Debug, Serialize)]
pub struct Rewrapped {
    /// How many private keys were re-encrypted.
    pub rewrapped: usize,
    /// The new master key file.
    pub master_key_file: String,
}
