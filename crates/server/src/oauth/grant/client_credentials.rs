//! `grant_type=client_credentials` (RFC 6749 §4.4): a workload gets a token for itself.

use mayfly_store::{ClientView, Subject};

use super::{CLIENT_CREDENTIALS, Issued, ScopeRequest, SubjectLimits, TokenError, issue};
use crate::runtime::AppState;

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
    if !client.allows(CLIENT_CREDENTIALS) {
        return Err(TokenError::UnauthorizedClient(
            "this client may not use the client_credentials grant".into(),
        ));
    }
    issue(
        state,
        Subject::Client(client.id),
        client.id,
        SubjectLimits::of(client),
        &view.grants,
        request,
    )
    .await
}
