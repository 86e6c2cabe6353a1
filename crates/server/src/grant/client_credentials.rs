//! `grant_type=client_credentials` (RFC 6749 §4.4): a workload gets a token for itself.

use mayfly_store::{ClientView, Subject};
use time::Duration;

use super::{Issued, ScopeRequest, SubjectLimits, TokenError, issue};
use crate::state::AppState;

/// Issues a token to an authenticated client for itself, under its own grants.
///
/// # Errors
/// [`TokenError`] when the scopes are not covered by the client's grants.
pub async fn grant(
    state: &AppState,
    view: &ClientView,
    request: &ScopeRequest,
) -> Result<Issued, TokenError> {
    let client = &view.client;
    let limits = SubjectLimits {
        default_ttl: client.default_ttl_secs.map(Duration::seconds),
        max_ttl: client.max_ttl_secs.map(Duration::seconds),
        allowed_cidrs: client.allowed_cidrs.clone(),
    };
    issue(
        state,
        Subject::Client(client.id),
        client.id,
        limits,
        &view.grants,
        request,
    )
    .await
}
