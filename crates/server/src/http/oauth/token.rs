//! `POST /oauth2/token` (RFC 6749 §3.2, §4.3, §4.4, §5, §6; RFC 8693 token exchange;
//! RFC 8707 `resource`). Dispatches on `grant_type` to one module of [`crate::oauth::grant`].

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use mayfly_core::UntrustedText;
use mayfly_store::AuditEvent;
use serde::Deserialize;

use crate::anomaly::{Observation, SeenIn};
use crate::audit::{self, Repeat, RequestContext, kind, outcome};
use crate::client_auth;
use crate::http::error::no_store;
use crate::http::form::Form;
use crate::oauth::grant::{self, Issued, ScopeRequest, TokenError};
use crate::runtime::AppState;
use crate::telemetry::{CounterFamily, OnceCounter};
use zeroize::Zeroizing;

static TOKENS_ISSUED: OnceCounter = OnceCounter::new("mayfly_tokens_issued_total");
static TOKENS_DENIED: CounterFamily = CounterFamily::new("mayfly_tokens_denied_total", "reason");

/// Largest accepted body; real token requests are a few hundred bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/oauth2/token", post(token))
}

/// The token request parameters (documentation of the form body).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenRequestForm {
    /// `client_credentials`, `password`, `refresh_token` or
    /// `urn:ietf:params:oauth:grant-type:token-exchange`; the client's `grant_types` must
    /// include it.
    grant_type: String,
    /// Space-separated scopes; required for `client_credentials` and `password`; for
    /// `refresh_token` and token exchange, optional and at most what the login or the
    /// subject token had.
    scope: Option<String>,
    /// The audience URI (RFC 8707); optional when the subject is granted one audience
    /// (refresh: the login's; exchange: the subject token's).
    resource: Option<String>,
    /// `password`: the user's login name.
    username: Option<String>,
    /// `password`: the user's password.
    password: Option<String>,
    /// `refresh_token`: the refresh token (`mfy_rt_…`).
    refresh_token: Option<String>,
    /// Token exchange: the Mayfly access token to exchange. Exchange is not
    /// impersonation: without `actor_token`, only the client it was issued to
    /// (`client_id`) may exchange it (down-scoping); any other client gets
    /// `invalid_grant` and must delegate with `actor_token`. Or an external JWT (an
    /// OIDC ID token) of a trusted issuer that matches exactly one user's federated
    /// identity: the token is then that user's (scope required, within the user's
    /// grants; no refresh token; expires no later than the external token; single-use).
    subject_token: Option<String>,
    /// Token exchange: `urn:ietf:params:oauth:token-type:access_token` for a Mayfly
    /// token; `urn:ietf:params:oauth:token-type:jwt` or
    /// `urn:ietf:params:oauth:token-type:id_token` for an external JWT (workload identity
    /// federation).
    subject_token_type: Option<String>,
    /// Token exchange: a Mayfly access token of the party acting for the subject
    /// (delegation; issued to the calling client, which a grant of the subject must
    /// name in `may_act`).
    actor_token: Option<String>,
    /// Token exchange: `urn:ietf:params:oauth:token-type:access_token`.
    actor_token_type: Option<String>,
    /// Token exchange: `urn:ietf:params:oauth:token-type:access_token` (the default).
    requested_token_type: Option<String>,
    /// Token exchange: the audience URI, like `resource`.
    audience: Option<String>,
    /// For `client_secret_post`; optional with a client assertion, which must then be
    /// that client's.
    client_id: Option<String>,
    /// For `client_secret_post`.
    client_secret: Option<String>,
    /// For `private_key_jwt`: `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    client_assertion_type: Option<String>,
    /// For `private_key_jwt` (RFC 7523 §2.2): a JWT signed (EdDSA) with a key registered
    /// for the client (`iss` = `sub` = the client id), or an external JWT from a trusted
    /// issuer (workload identity federation: a Kubernetes service-account, GitHub
    /// Actions, GitLab CI or SPIFFE token, RS256, ES256 or EdDSA) that matches exactly
    /// one client's federated identity; single-use.
    client_assertion: Option<String>,
}

/// What the audit log should know of a request, filled in as it is understood. What
/// the request said is [`UntrustedText`]: escaped and capped before it is stored.
#[derive(Debug, Default)]
struct Seen {
    grant_type: Option<UntrustedText>,
    client_id: Option<UntrustedText>,
    auth_method: Option<&'static str>,
    scope: Option<UntrustedText>,
    resource: Option<UntrustedText>,
    dpop_jkt: Option<String>,
    /// The external identity (workload identity federation), once a token verified.
    external: Option<serde_json::Value>,
}

/// Issues an access token: for the client itself (client_credentials), for a user
/// (password; with a refresh token when the client may refresh), for a refresh token
/// (rotated), or in exchange for another access token (RFC 8693).
#[utoipa::path(
    post,
    path = "/oauth2/token",
    tag = "oauth",
    request_body(content = TokenRequestForm, content_type = "application/x-www-form-urlencoded"),
    security(("client_secret_basic" = []), ()),
    params(("DPoP" = Option<String>, Header, description = "A DPoP proof (RFC 9449): binds the token to its key")),
    responses(
        (status = 200, description = "A token (RFC 6749 §5.1)", body = mayfly_core::wire::TokenResponse),
        (status = 400, description = "invalid_request, invalid_grant, invalid_scope, invalid_target, unauthorized_client (grant type or network not allowed), unsupported_grant_type, invalid_dpop_proof, use_dpop_nonce", body = mayfly_core::wire::ErrorResponse),
        (status = 401, description = "invalid_client", body = mayfly_core::wire::ErrorResponse),
        (status = 408, description = "invalid_request: the body did not arrive within the body read timeout", body = mayfly_core::wire::ErrorResponse),
        (status = 413, description = "Body too large", body = mayfly_core::wire::ErrorResponse),
        (status = 429, description = "temporarily_unavailable: too many failed client authentications or logins; retry after Retry-After", body = mayfly_core::wire::ErrorResponse),
        (status = 503, description = "temporarily_unavailable; retry after Retry-After", body = mayfly_core::wire::ErrorResponse),
    )
)]
pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let ctx = crate::http::request_context(&state, &parts.headers, &parts.extensions);
    let mut seen = Seen::default();
    let mut result = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => exchange(&state, &parts.headers, &body, &mut seen, &ctx).await,
        Err(e) if is_timeout(&e) => Err(TokenError::SlowBody),
        Err(_) => Err(TokenError::TooLarge),
    };
    let event = match &result {
        Ok(issued) => issued_event(&state, issued, &seen, &ctx),
        Err(e) => denied_event(&state, e, &seen, &ctx),
    };
    // Fail closed: no token leaves without its audit event committed. A throttled (or
    // turned away: full password queue, database down) caller may retry at once,
    // thousands of times a second: those refusals are counted and summarised per place
    // and window instead (see `audit/repeats.rs`). A refresh's rotation commits with
    // its event; if it did not apply, the refresh is refused and that is audited.
    let rotation = result
        .as_mut()
        .ok()
        .and_then(|issued| issued.rotation.take());
    let recorded = match (&result, repeat_place(&event, ctx.source_ip), &rotation) {
        (Err(TokenError::Throttled(_) | TokenError::Unavailable), Some(place), _) => {
            state.audit.record_repeated(event, place).await
        }
        (Ok(_), _, Some(rotation)) => {
            match state
                .audit
                .record_rotation(event, rotation.rotation.clone())
                .await
            {
                Ok(true) => {
                    grant::refresh::applied(&state, rotation);
                    Ok(Repeat::First)
                }
                Ok(false) => {
                    let refusal = grant::refresh::lost_race(&state, rotation, &ctx).await;
                    let event = denied_event(&state, &refusal, &seen, &ctx);
                    result = Err(refusal);
                    state.audit.record(event).await.map(|()| Repeat::First)
                }
                Err(e) => Err(e),
            }
        }
        _ => state.audit.record(event).await.map(|()| Repeat::First),
    };
    match recorded {
        Err(e) => {
            tracing::error!(error = %e, "audit unavailable; refusing token request");
            return TokenError::Unavailable.into_response();
        }
        // A caller that retries a throttled request at once is answered after a pause
        // (a timer, no work): each of its connections then costs at most one refusal a
        // `--throttled-hold`, instead of as many as it can send.
        Ok(Repeat::Counted) if matches!(result, Err(TokenError::Throttled(_))) => {
            tokio::time::sleep(state.config.limits.throttled_hold.unsigned_abs()).await;
        }
        Ok(_) => {}
    }
    match &result {
        Ok(_) => TOKENS_ISSUED.get().increment(1),
        Err(e) => TOKENS_DENIED.get(e.code().as_str()).increment(1),
    }
    if let Ok(issued) = &result {
        watch(&state, issued, &ctx);
    }
    let mut response = match result {
        Ok(issued) => {
            let mut response = (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                issued.response.to_json(),
            )
                .into_response();
            no_store(&mut response);
            response
        }
        Err(e) => e.into_response(),
    };
    // RFC 9449 §8: the nonce to put in the next proof.
    if state.config.dpop_nonce
        && let Ok(nonce) = HeaderValue::from_str(&state.nonces.issue(state.clock.now()))
    {
        response.headers_mut().insert("dpop-nonce", nonce);
    }
    response
}

/// Whether reading a body failed because its deadline passed
/// ([`tower_http::timeout::RequestBodyDeadlineLayer`]).
fn is_timeout(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Authenticates the calling client, refusing (429) while too many authentications
/// failed recently for that client from this network, or from this address, and
/// counting failures (against the client only when it exists: see
/// [`client_auth::throttle`]).
///
/// `external` receives the external identity an external JWT proved (workload identity
/// federation), accepted or refused after it verified, for the audit event.
pub(super) async fn authenticate_client(
    state: &AppState,
    presented: Result<client_auth::Presented, client_auth::PresentError>,
    source: Option<std::net::IpAddr>,
    external: &mut Option<client_auth::federated::External>,
) -> Result<std::sync::Arc<mayfly_store::ClientView>, TokenError> {
    let now = state.clock.now();
    let claimed = presented
        .as_ref()
        .ok()
        .and_then(|p| client_auth::canonical_id(p.client_id()));
    if let Some(wait) = state.throttle.check(claimed, source, now) {
        return Err(TokenError::Throttled(wait.whole_seconds() + 1));
    }
    let auth = client_auth::Authenticator {
        directory: &state.directory,
        replay: state.store.as_ref(),
        federation: state.store.as_ref(),
        verifier: &state.verifier,
        issuer: &state.issuer,
        now,
    };
    let (result, existing) = match presented {
        Ok(presented) => match client_auth::authenticate(&auth, &presented).await {
            Ok(authenticated) => {
                *external = authenticated.external;
                (Ok(authenticated.view), claimed)
            }
            Err(client_auth::AuthError::UnknownClient) => (
                Err(TokenError::from(client_auth::AuthError::UnknownClient)),
                None,
            ),
            Err(e) => {
                external.clone_from(&e.external().cloned());
                (Err(TokenError::from(e)), claimed)
            }
        },
        Err(e) => (Err(TokenError::from(e)), None),
    };
    if matches!(result, Err(TokenError::InvalidClient(_))) {
        let tripped = state.throttle.fail(existing, source, now);
        if !tripped.is_empty() {
            let ctx = crate::audit::RequestContext {
                source_ip: source,
                ..Default::default()
            };
            crate::anomaly::bursts(state, tripped, &ctx);
        }
    }
    result
}

/// Hands an issued token to anomaly detection, which never delays the response.
fn watch(state: &AppState, issued: &Issued, ctx: &RequestContext) {
    let claims = &issued.claims;
    let Ok(client_id) = uuid::Uuid::parse_str(&claims.client_id) else {
        return;
    };
    let now = state.clock.now();
    state
        .anomalies
        .issued(&claims.jti, ctx.source_ip, claims.exp, now);
    crate::anomaly::inspect_later(
        state,
        Observation {
            seen_in: SeenIn::Issuance,
            client_id,
            subject: Some(claims.sub.clone()),
            jti: Some(claims.jti.clone()),
            token_exp: Some(claims.exp),
            address: ctx.source_ip,
            audience: Some(claims.aud.clone()),
            endpoint: None,
            request: ctx.clone(),
        },
    );
}

/// The client credentials a form and its headers carry.
pub(super) fn credentials<'a>(
    headers: &'a HeaderMap,
    form: &'a Form,
) -> client_auth::Credentials<'a> {
    client_auth::Credentials {
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        client_id: form.get("client_id"),
        client_secret: form.get("client_secret"),
        client_assertion_type: form.get("client_assertion_type"),
        client_assertion: form.get("client_assertion"),
    }
}

/// The one DPoP proof of a request (RFC 9449 §4.3: exactly one `DPoP` header).
pub(super) fn dpop_header(headers: &HeaderMap) -> Result<Option<&str>, TokenError> {
    let mut values = headers.get_all("dpop").iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => v
            .to_str()
            .map(Some)
            .map_err(|_| TokenError::InvalidDpopProof("malformed DPoP header".into())),
        (Some(_), Some(_)) => Err(TokenError::InvalidDpopProof(
            "exactly one DPoP header is allowed".into(),
        )),
    }
}

async fn exchange(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    seen: &mut Seen,
    ctx: &RequestContext,
) -> Result<Issued, TokenError> {
    let source = ctx.source_ip;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let form = Form::parse(content_type, body)?;
    seen.grant_type = form.get("grant_type").map(UntrustedText::new);
    seen.scope = form.get("scope").map(UntrustedText::new);
    let resource = match form.resources() {
        [] => None,
        [one] => Some(one.clone()),
        _ => {
            return Err(TokenError::InvalidTarget(
                "a token is for exactly one resource".into(),
            ));
        }
    };
    seen.resource = resource.as_deref().map(UntrustedText::new);

    let presented = client_auth::presented_any(&credentials(headers, &form));
    if let Ok(p) = &presented {
        let claimed = p.audited_id();
        seen.client_id = (!claimed.is_empty()).then(|| UntrustedText::new(&claimed));
        seen.auth_method = Some(p.audit_method());
    }
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| TokenError::InvalidRequest("the grant_type parameter is required".into()))?;
    if !grant::GRANT_TYPES.contains(&grant_type) {
        return Err(TokenError::UnsupportedGrantType(
            UntrustedText::capped(grant_type, 64).into_string(),
        ));
    }
    // RFC 9449: the proof is checked (a nonce challenge included) before the client is
    // authenticated, and spent after (see `dpop::verify`).
    let proof = match dpop_header(headers)? {
        Some(proof) => {
            let htu = format!("{}/oauth2/token", state.issuer);
            let ctx = crate::oauth::dpop::ProofContext {
                htm: "POST",
                htu: &htu,
                access_token: None,
                jkt: None,
                nonce_required: state.config.dpop_nonce,
            };
            let verified = crate::oauth::dpop::verify(state, proof, &ctx)?;
            seen.dpop_jkt = Some(verified.jkt.clone());
            Some(verified)
        }
        None => None,
    };
    let mut external = None;
    let authenticated = authenticate_client(state, presented, source, &mut external).await;
    seen.external = external
        .as_ref()
        .map(client_auth::federated::External::detail);
    let client = authenticated?;
    // RFC 9449 §5: a valid proof binds the token to its key; some clients must.
    let binding = match proof {
        Some(verified) => {
            crate::oauth::dpop::spend(state, &verified).await?;
            Some(verified.jkt)
        }
        None if client.client.require_dpop => {
            return Err(TokenError::InvalidDpopProof(
                "this client must send a DPoP proof (RFC 9449)".into(),
            ));
        }
        None => None,
    };
    let request = ScopeRequest {
        scope: form.get("scope").map(str::to_owned),
        resource,
        binding,
        source,
    };
    // The rarer grant types are boxed: their futures are large, and the state machine
    // of this function (allocated for every token request) would grow to the largest.
    match grant_type {
        grant::PASSWORD => {
            let password = form.get("password").map(|p| Zeroizing::new(p.to_owned()));
            Box::pin(grant::password::grant(
                state,
                &client,
                form.get("username"),
                password,
                &request,
            ))
            .await
        }
        grant::REFRESH_TOKEN => {
            Box::pin(grant::refresh::grant(
                state,
                &client,
                form.get("refresh_token"),
                &request,
                ctx,
            ))
            .await
        }
        grant::TOKEN_EXCHANGE => {
            let exchange = grant::exchange::ExchangeRequest {
                subject_token: form.get("subject_token"),
                subject_token_type: form.get("subject_token_type"),
                actor_token: form.get("actor_token"),
                actor_token_type: form.get("actor_token_type"),
                requested_token_type: form.get("requested_token_type"),
                audience: form.get("audience"),
                scope: request,
            };
            Box::pin(grant::exchange::grant(state, &client, &exchange)).await
        }
        _ => grant::client_credentials::grant(state, &client, &request).await,
    }
}

fn issued_event(
    state: &AppState,
    issued: &Issued,
    seen: &Seen,
    ctx: &RequestContext,
) -> AuditEvent {
    let claims = &issued.claims;
    let mut event = with_external(
        AuditEvent {
            actor: Some(claims.client_id.clone()),
            subject: Some(claims.sub.clone()),
            client_id: Some(claims.client_id.clone()),
            jti: Some(claims.jti.clone()),
            audience: Some(claims.aud.clone()),
            scopes: Some(claims.scope.clone()),
            detail: serde_json::json!({
                "grant_type": seen.grant_type,
                "auth_method": seen.auth_method,
                "expires_in": issued.response.expires_in,
                "kid": issued.kid,
                "grants": issued.grant_ids,
                "dpop_jkt": claims.cnf.as_ref().map(|c| &c.jkt),
                "cidr": claims.cidr,
                "family": claims.fam,
                "act": claims.act.as_ref().map(|a| &a.sub),
                "exchanged_from": claims.orig.first().map(|o| &o.jti),
                "refresh_token_issued": issued.response.refresh_token.is_some(),
            }),
            ..audit::event(kind::TOKEN_ISSUED, outcome::SUCCESS, state.clock.now(), ctx)
        },
        // A federated exchange names the user's external identity; the client's own
        // (a federated client authentication) then goes beside it.
        issued.external.as_ref().or(seen.external.as_ref()),
    );
    if issued.external.is_some()
        && let (Some(client), Some(detail)) = (&seen.external, event.detail.as_object_mut())
    {
        detail.insert("client_external".into(), client.clone());
    }
    event
}

/// Adds `detail.external` (issuer, subject, matched claims) when an external token
/// verified: what `audit_events_by_external` searches. Absent otherwise, so the
/// partial index on it skips every other event.
fn with_external(mut event: AuditEvent, external: Option<&serde_json::Value>) -> AuditEvent {
    if let (Some(external), Some(detail)) = (external, event.detail.as_object_mut()) {
        detail.insert("external".into(), external.clone());
    }
    event
}

/// Where a refusal comes from, for counting its repeats: its kind, the client it named
/// and the address (IPv6 by /64, as the throttles count). `None` without an address.
fn repeat_place(event: &AuditEvent, source: Option<std::net::IpAddr>) -> Option<String> {
    let address = client_auth::throttle::prefix(source?, 32, 64);
    Some(format!(
        "{}|{}|{}|{address}",
        event.event_type,
        event.detail["reason"].as_str().unwrap_or_default(),
        event.client_id.as_deref().unwrap_or_default(),
    ))
}

fn denied_event(
    state: &AppState,
    error: &TokenError,
    seen: &Seen,
    ctx: &RequestContext,
) -> AuditEvent {
    let (event_type, result) = match error {
        TokenError::InvalidClient(_) => (kind::CLIENT_AUTH_FAILED, outcome::FAILURE),
        TokenError::UserAuthFailed { .. } => (kind::USER_AUTH_FAILED, outcome::FAILURE),
        TokenError::Unavailable | TokenError::Internal(_) => (kind::TOKEN_DENIED, outcome::FAILURE),
        _ => (kind::TOKEN_DENIED, outcome::DENIED),
    };
    let text = |s: &Option<UntrustedText>| s.clone().map(UntrustedText::into_string);
    let user = match error {
        TokenError::UserAuthFailed { user, .. } => user.map(|u| u.to_string()),
        _ => None,
    };
    with_external(
        AuditEvent {
            actor: text(&seen.client_id),
            subject: user,
            client_id: text(&seen.client_id),
            audience: text(&seen.resource),
            scopes: text(&seen.scope),
            detail: serde_json::json!({
                "error": error.code(),
                "reason": error.audit_reason(),
                "grant_type": seen.grant_type,
                "auth_method": seen.auth_method,
                "dpop_jkt": seen.dpop_jkt,
            }),
            ..audit::event(event_type, result, state.clock.now(), ctx)
        },
        match error {
            TokenError::ExternalSubjectRefused { external, .. } => external.as_ref(),
            _ => None,
        }
        .or(seen.external.as_ref()),
    )
}
