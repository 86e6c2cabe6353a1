//! Signing keys and rotation as the API shows them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// How to rotate.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    /// Activate a successor at once and revoke the current key: every token it signed
    /// is rejected (introspection, the revocation feed, and verifiers once they refetch
    /// the key set). For a leaked key. Default false: the successor activates once it
    /// has been published for the lead time.
    #[serde(default)]
    pub emergency: bool,
}

/// What rotation achieved.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotateOut {
    /// `activated` (a new key signs now) or `pending` (it will once published long enough).
    pub outcome: String,
    /// The key that signs now, when activated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    /// The successor waiting for its lead time, when pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// When the successor starts signing, when pending.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub activates_at: Option<OffsetDateTime>,
}
