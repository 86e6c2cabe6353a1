//! `grant_type=refresh_token` (RFC 6749 §6) with rotation and reuse detection
//! (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).
//!
//! Refresh tokens exist only for user logins by clients whose `grant_types` include
//! `refresh_token`. Each is `mfy_rt_` + base64url of a 16-byte selector (a UUIDv7, the
//! lookup key) and 32 random bytes; the store keeps the selector and the token's SHA-256
//! digest, compared in constant time. Tokens minted before selectors (`mfy_rt_` + 32
//! random bytes) are found by the first 16 bytes of their digest. Each is bound to its
//! client. A login starts a *family*; every refresh marks the
//! presented token used and returns its successor. Presenting a used token again means
//! two parties hold the family: the family is revoked (no token of it refreshes again)
//! together with a `family` revocation that kills every access token issued from it
//! (they carry `fam`), and an `anomaly` event is audited. A family ends
//! `--refresh-token-lifetime` after the login whatever happens; a token unused for
//! `--refresh-token-idle` stops working. A refresh may ask for fewer scopes than the
//! login got, never more, and only for the login's audience; the user's grants are
//! checked again each time.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mayfly_core::Claims;
use mayfly_core::ScopeSet;
use mayfly_core::revocation::RevocationKind;
use mayfly_store::{
    AuditEvent, ClientView, NewRefreshFamily, NewRevocation, RefreshFamilyRecord, RefreshKey,
    RefreshRotation, RefreshTokenRecord, Subject,
};
use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{
    Authorized, Issued, REFRESH_TOKEN, ScopeRequest, SubjectLimits, TokenError, authorize, sign,
};
use crate::audit::{self, RequestContext, kind, outcome};
use crate::config::TTL_CEILING;
use crate::runtime::AppState;
use crate::service::REVOCATION_SKEW;

/// Prefix of every refresh token, so secret scanners can find leaked ones.
pub const PREFIX: &str = "mfy_rt_";
/// Longest token worth hashing; anything longer cannot be ours.
const MAX_LEN: usize = 256;
/// Bytes after the prefix: the selector, then the secret.
const SELECTOR_LEN: usize = 16;
const SECRET_LEN: usize = 32;

/// A refresh token in clear: returned once, never logged (`Debug` redacts, drop zeroizes).
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(Zeroizing<String>);

impl RefreshToken {
    /// A fresh token: a new time-ordered selector and 256 random bits.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; SELECTOR_LEN + SECRET_LEN]);
        bytes[..SELECTOR_LEN].copy_from_slice(Uuid::now_v7().as_bytes());
        rand::rng().fill_bytes(&mut bytes[SELECTOR_LEN..]);
        let mut text = Zeroizing::new(String::with_capacity(PREFIX.len() + 64));
        text.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&bytes[..], &mut text);
        Self(text)
    }

    /// The token text, to return once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// How the store finds and checks it.
    pub fn key(&self) -> RefreshKey {
        key(&self.0)
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

/// How the store finds and checks a presented token (any text): the selector it
/// carries, or for a token of the form before selectors (or anything else) the first
/// 16 bytes of its digest; and the SHA-256 digest of the whole text.
pub fn key(token: &str) -> RefreshKey {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut bytes = Zeroizing::new([0u8; SELECTOR_LEN + SECRET_LEN]);
    let carries = token.strip_prefix(PREFIX).is_some_and(|body| {
        URL_SAFE_NO_PAD
            .decode_slice(body, &mut bytes[..])
            .is_ok_and(|n| n == SELECTOR_LEN + SECRET_LEN)
    });
    let mut selector = [0u8; SELECTOR_LEN];
    selector.copy_from_slice(if carries {
        &bytes[..SELECTOR_LEN]
    } else {
        &digest[..SELECTOR_LEN]
    });
    RefreshKey {
        selector: Uuid::from_bytes(selector),
        digest,
    }
}

/// Starts a refresh family for a login that was just authorized; returns the family id
/// (for the access token's `fam`) and its first token.
///
/// # Errors
/// The store's.
pub async fn start_family(
    state: &AppState,
    user_id: Uuid,
    client_id: Uuid,
    authorized: &Authorized,
) -> Result<(Uuid, RefreshToken), TokenError> {
    let now = state.clock.now();
    let expires_at = now + state.config.refresh_token_lifetime;
    let token = RefreshToken::generate();
    let token_expires_at = (now + state.config.refresh_token_idle).min(expires_at);
    let family = state
        .store
        .create_refresh_family(NewRefreshFamily {
            id: Uuid::new_v4(),
            user_id,
            client_id,
            audience: authorized.claims.aud.clone(),
            scope: authorized.claims.scope.clone(),
            key: token.key(),
            token_expires_at,
            expires_at,
            jkt: authorized.claims.cnf.as_ref().map(|c| c.jkt.clone()),
            now,
        })
        .await?;
    let id = family.id;
    state.minted.remember(
        &token.key(),
        RefreshTokenRecord {
            family,
            created_at: now,
            expires_at: token_expires_at,
            used_at: None,
            user_enabled: true,
        },
    );
    Ok((id, token))
}

/// Exchanges a refresh token for a new access token and the next refresh token.
///
/// # Errors
/// [`TokenError::UnauthorizedClient`] when the client may not refresh,
/// [`TokenError::RefreshRefused`] for an unknown, used, expired or foreign token (a used
/// one revokes its family), [`TokenError::InvalidScope`]/[`TokenError::InvalidTarget`]
/// for more than the login got, else what [`authorize`] refuses.
pub async fn grant(
    state: &AppState,
    view: &ClientView,
    presented: Option<&str>,
    request: &ScopeRequest,
    ctx: &RequestContext,
) -> Result<Issued, TokenError> {
    let client = &view.client;
    if !client.allows(REFRESH_TOKEN) {
        return Err(TokenError::UnauthorizedClient(
            "this client may not use refresh tokens".into(),
        ));
    }
    let presented = presented.ok_or_else(|| {
        TokenError::InvalidRequest("the refresh_token parameter is required".into())
    })?;
    if !presented.starts_with(PREFIX) || presented.len() > MAX_LEN {
        return Err(TokenError::RefreshRefused(
            "not a Mayfly refresh token".into(),
        ));
    }
    let old = key(presented);
    // A token minted here is known without a read; the rotation checks at commit what
    // may have changed since (see `runtime::minted`).
    let record = match state.minted.take(&old) {
        Some(record) => record,
        None => state
            .store
            .refresh_token(&old)
            .await?
            .ok_or_else(|| TokenError::RefreshRefused("unknown refresh token".into()))?,
    };
    let family = &record.family;
    if record.used_at.is_some() {
        return Err(reuse(state, &record, client.id, ctx).await?);
    }
    if family.client_id != client.id {
        return Err(TokenError::RefreshRefused(
            "refresh token bound to another client".into(),
        ));
    }
    let now = state.clock.now();
    if family.revoked_at.is_some() {
        return Err(TokenError::RefreshRefused("refresh family revoked".into()));
    }
    // Whatever revokes the login's tokens ends the login: the live rules, asked as if
    // the family were a token issued at login (a rule kind added later applies here
    // too). The store also marks the families a revocation covers, for after the
    // rule is pruned.
    if state.revocations.revokes(&login_claims(state, family), "") {
        return Err(TokenError::RefreshRefused(
            "a revocation covers this login".into(),
        ));
    }
    // RFC 9449 §5: a bound family refreshes only with a proof by its key.
    if let Some(jkt) = &family.jkt {
        match request.binding.as_deref() {
            None => {
                return Err(TokenError::InvalidDpopProof(
                    "this refresh token is DPoP-bound: send a DPoP proof by its key".into(),
                ));
            }
            Some(presented) if presented != jkt => {
                return Err(TokenError::RefreshRefused(
                    "DPoP proof by another key than the login's".into(),
                ));
            }
            Some(_) => {}
        }
    }
    if now >= family.expires_at {
        return Err(TokenError::RefreshRefused(
            "refresh family past its lifetime".into(),
        ));
    }
    if now >= record.expires_at {
        return Err(TokenError::RefreshRefused(
            "refresh token idle too long".into(),
        ));
    }
    if !record.user_enabled {
        return Err(TokenError::RefreshRefused("user gone or disabled".into()));
    }

    // Never more than the login got: its scopes, its audience.
    let allowed = ScopeSet::parse(&family.scope)
        .map_err(|_| TokenError::Internal("stored refresh scope unreadable".into()))?;
    let scope = match request.scope.as_deref() {
        Some(asked) => {
            let asked =
                ScopeSet::parse(asked).map_err(|e| TokenError::InvalidScope(e.to_string()))?;
            if let Some(extra) = asked
                .iter()
                .find(|s| !allowed.iter().any(|a| a.as_str() == s.as_str()))
            {
                return Err(TokenError::InvalidScope(format!(
                    "scope {extra} was not granted at login; a refresh may only narrow"
                )));
            }
            asked.to_string()
        }
        None => family.scope.clone(),
    };
    if request
        .resource
        .as_deref()
        .is_some_and(|r| r != family.audience)
    {
        return Err(TokenError::InvalidTarget(
            "a refresh is for the audience of the login".into(),
        ));
    }
    let grants = state.directory.user_grants(family.user_id).await?;
    let mut authorized = authorize(
        state,
        Subject::User(family.user_id),
        client.id,
        SubjectLimits::of(client),
        &grants,
        &ScopeRequest {
            scope: Some(scope),
            resource: Some(family.audience.clone()),
            binding: request.binding.clone(),
            source: request.source,
        },
    )
    .await?;

    let next = RefreshToken::generate();
    authorized.claims.fam = Some(family.id.to_string());
    let mut issued = sign(state, authorized)?;
    issued.response.refresh_token = Some(next.expose().to_owned());
    // Nothing is rotated yet: the token endpoint commits the rotation with the token's
    // audit event, and answers only if it applied (see `lost_race` otherwise).
    issued.rotation = Some(Rotation {
        rotation: RefreshRotation {
            old: old.selector,
            new: next.key(),
            expires_at: (now + state.config.refresh_token_idle).min(family.expires_at),
            now,
        },
        presented: old,
        record,
        client: client.id,
    });
    Ok(issued)
}

/// A refresh's rotation, to commit with the audit event of its token
/// ([`crate::audit::AuditSink::record_rotation`]): one commit for both, and no token
/// leaves unless its rotation applied.
#[derive(Debug)]
pub struct Rotation {
    /// What to change in the store.
    pub rotation: RefreshRotation,
    /// The presented token's key.
    presented: RefreshKey,
    /// The presented token as read before the rotation.
    record: RefreshTokenRecord,
    /// The client that presented it.
    client: Uuid,
}

impl Rotation {
    /// The successor's record, as the rotation stored it.
    fn successor(&self) -> RefreshTokenRecord {
        RefreshTokenRecord {
            family: self.record.family.clone(),
            created_at: self.rotation.now,
            expires_at: self.rotation.expires_at,
            used_at: None,
            user_enabled: true,
        }
    }
}

/// A rotation applied: its successor is kept, so that its refresh here skips the read.
pub fn applied(state: &AppState, rotation: &Rotation) {
    state
        .minted
        .remember(&rotation.rotation.new, rotation.successor());
}

/// The refusal for a rotation that did not apply, from the token as it is now: gone
/// (its user or family deleted meanwhile), its family revoked or its user disabled (an
/// admin, a revocation: refused, no anomaly), or used by another presentation that won
/// the race or came first elsewhere, which is reuse (the family is revoked, the anomaly
/// audited).
pub async fn lost_race(state: &AppState, rotation: &Rotation, ctx: &RequestContext) -> TokenError {
    let again = match state.store.refresh_token(&rotation.presented).await {
        Ok(again) => again,
        Err(e) => return e.into(),
    };
    let Some(again) = again else {
        return TokenError::RefreshRefused("unknown refresh token".into());
    };
    if again.used_at.is_none() {
        if again.family.revoked_at.is_some() {
            return TokenError::RefreshRefused("refresh family revoked".into());
        }
        if !again.user_enabled {
            return TokenError::RefreshRefused("user gone or disabled".into());
        }
    }
    // What is now known of the token, rather than what was known when it was signed
    // (for a token minted here, nothing was read).
    match reuse(state, &again, rotation.client, ctx).await {
        Ok(refusal) | Err(refusal) => refusal,
    }
}

/// A family as the revocation rules see it: a token of the user, obtained by the
/// client at login, carrying the family.
fn login_claims(state: &AppState, family: &RefreshFamilyRecord) -> Claims {
    Claims {
        iss: state.issuer.clone(),
        sub: family.user_id.to_string(),
        aud: family.audience.clone(),
        iat: family.created_at,
        nbf: family.created_at,
        exp: family.expires_at,
        jti: String::new(),
        scope: family.scope.clone(),
        client_id: family.client_id.to_string(),
        gid: Vec::new(),
        cnf: None,
        cidr: Vec::new(),
        act: None,
        fam: Some(family.id.to_string()),
        orig: Vec::new(),
    }
}

/// How far past "now" a family revocation reaches: a refresh or exchange already in
/// flight on another replica when the family was revoked may still sign a token of the
/// family a moment later; no legitimate token of a revoked family exists, so reaching
/// into the next seconds costs nothing.
const IN_FLIGHT: time::Duration = time::Duration::seconds(10);

/// Revokes a family: none of its refresh tokens works again, and a `family`
/// revocation (recorded in the same transaction) kills every access token issued from
/// it, here at once and on other replicas through the store's signal.
///
/// # Errors
/// The store's.
pub async fn revoke_family(
    state: &AppState,
    family: Uuid,
    reason: &str,
) -> Result<mayfly_store::RevocationRecord, TokenError> {
    let now = state.clock.now();
    let revocation = state
        .store
        .revoke_refresh_family(
            family,
            NewRevocation {
                kind: RevocationKind::Family.as_str().to_owned(),
                value: family.to_string(),
                issued_before: now + IN_FLIGHT,
                expires_at: now + IN_FLIGHT + TTL_CEILING + REVOCATION_SKEW,
                reason: reason.to_owned(),
                created_by: "mayfly".into(),
                now,
            },
        )
        .await?;
    state.revocations.catch_up().await?;
    Ok(revocation)
}

/// RFC 7009 for refresh tokens: the client that holds one ends its login (the family
/// and every access token issued from it). Unknown tokens and other clients' are
/// ignored. Returns the revocation made, if any.
///
/// # Errors
/// The store's.
pub async fn revoke_by_client(
    state: &AppState,
    presented: &str,
    client: Uuid,
) -> Result<Option<mayfly_store::RevocationRecord>, TokenError> {
    if presented.len() > MAX_LEN {
        return Ok(None);
    }
    let Some(record) = state.store.refresh_token(&key(presented)).await? else {
        return Ok(None);
    };
    if record.family.client_id != client || record.family.revoked_at.is_some() {
        return Ok(None);
    }
    revoke_family(state, record.family.id, "revoked by its client (RFC 7009)")
        .await
        .map(Some)
}

/// A used refresh token came back: revoke its family and every access token issued from
/// it, audit the anomaly, and return the refusal.
async fn reuse(
    state: &AppState,
    record: &RefreshTokenRecord,
    presenter: Uuid,
    ctx: &RequestContext,
) -> Result<TokenError, TokenError> {
    let family = &record.family;
    let now = state.clock.now();
    let already = family.revoked_at.is_some();
    let seq = if already {
        None
    } else {
        let revocation = revoke_family(state, family.id, "refresh token reuse").await?;
        Some(revocation.seq)
    };
    let event = AuditEvent {
        actor: Some(presenter.to_string()),
        subject: Some(family.user_id.to_string()),
        client_id: Some(family.client_id.to_string()),
        audience: Some(family.audience.clone()),
        detail: serde_json::json!({
            "anomaly": "refresh_token_reuse",
            "family": family.id,
            "used_at": record.used_at.map(|t| t.unix_timestamp()),
            "family_already_revoked": already,
            "revocation_seq": seq,
            "presented_by": presenter,
        }),
        ..audit::event(kind::ANOMALY, outcome::DENIED, now, ctx)
    };
    state.audit.record(event).await.map_err(|e| {
        tracing::error!(error = %e, "audit unavailable; refusing refresh");
        TokenError::Unavailable
    })?;
    Ok(TokenError::RefreshRefused(if already {
        "reuse of a refresh token of a revoked family".into()
    } else {
        "reuse of a rotated refresh token; its family is revoked".into()
    }))
}

/// How often families past their lifetime are deleted.
pub const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes refresh families past their absolute lifetime, and the tokens of families
/// that are gone, now and then every [`PRUNE_INTERVAL`]. Nothing of them can be used
/// any more: their refresh tokens are refused, and their access tokens expired long
/// before.
/// Abort the handle to stop it.
pub fn spawn_pruning(
    store: std::sync::Arc<dyn mayfly_store::Store>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match store.prune_refresh_families(clock.now()).await {
                Ok(pruned) if pruned == mayfly_store::PrunedRefresh::default() => {}
                Ok(pruned) => tracing::info!(
                    families = pruned.families,
                    tokens = pruned.tokens,
                    "refresh: deleted families past their lifetime and tokens of gone families"
                ),
                Err(e) => tracing::warn!(error = %e, "refresh: pruning failed"),
            }
            tokio::time::sleep(PRUNE_INTERVAL).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_redacted() {
        let a = RefreshToken::generate();
        let b = RefreshToken::generate();
        assert!(a.expose().starts_with(PREFIX));
        assert_eq!(
            a.expose().len(),
            PREFIX.len() + 64,
            "selector and 256 bits, base64url"
        );
        assert_ne!(a, b);
        assert_eq!(a.key(), key(a.expose()));
        assert!(
            a.key().selector < b.key().selector,
            "selectors are time-ordered"
        );
        assert!(!format!("{a:?}").contains(&a.expose()[PREFIX.len()..]));
    }
}
