//! Wire types of the OAuth endpoints, shared by the server (which writes them) and the
//! SDK (which reads them).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A successful token response (RFC 6749 §5.1).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    /// The PASETO `v4.public` access token.
    pub access_token: String,
    /// Always `Bearer` for now.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// A refresh token (`mfy_rt_…`), for user logins by clients allowed to refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// RFC 8693 §2.2.1: the type of `access_token`, on token-exchange responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

impl TokenResponse {
    /// The response as JSON, the same document `serde_json` writes, in one allocation.
    /// Issuance is the hot path and its strings (PASETO tokens, refresh tokens, scopes)
    /// need no escaping, so they are copied as they are; a string that would need
    /// escaping goes through `serde_json`.
    pub fn to_json(&self) -> Vec<u8> {
        let refresh = self.refresh_token.as_deref().map_or(0, str::len);
        let issued = self.issued_token_type.as_deref().map_or(0, str::len);
        let mut out = Vec::with_capacity(
            self.access_token.len()
                + self.token_type.len()
                + self.scope.len()
                + refresh
                + issued
                + 128,
        );
        out.extend_from_slice(b"{\"access_token\":");
        json_str(&mut out, &self.access_token);
        out.extend_from_slice(b",\"token_type\":");
        json_str(&mut out, &self.token_type);
        out.extend_from_slice(b",\"expires_in\":");
        out.extend_from_slice(self.expires_in.to_string().as_bytes());
        out.extend_from_slice(b",\"scope\":");
        json_str(&mut out, &self.scope);
        if let Some(refresh) = &self.refresh_token {
            out.extend_from_slice(b",\"refresh_token\":");
            json_str(&mut out, refresh);
        }
        if let Some(kind) = &self.issued_token_type {
            out.extend_from_slice(b",\"issued_token_type\":");
            json_str(&mut out, kind);
        }
        out.push(b'}');
        out
    }
}

/// Appends `text` as a JSON string.
fn json_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, text).is_err() {
        // Writing a string into a Vec cannot fail; keep the document valid regardless.
        out.extend_from_slice(b"\"\"");
    }
}

/// OAuth error codes (RFC 6749 §5.2, RFC 8707 §2 `invalid_target`), plus the two the
/// authorization endpoint defines and token endpoints use for outages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// RFC 6749 §5.2: malformed request.
    InvalidRequest,
    /// RFC 6749 §5.2: client authentication failed.
    InvalidClient,
    /// RFC 6749 §5.2: the grant is invalid, expired or revoked.
    InvalidGrant,
    /// RFC 6749 §5.2: the client may not use this grant type (or from here).
    UnauthorizedClient,
    /// RFC 6749 §5.2: grant type not supported.
    UnsupportedGrantType,
    /// RFC 6749 §5.2: scope invalid, unknown, or not granted.
    InvalidScope,
    /// RFC 8707 §2: the requested resource is invalid or unknown.
    InvalidTarget,
    /// RFC 7009 §2.2.1: revocation of this token type is not supported.
    UnsupportedTokenType,
    /// RFC 6749 §4.1.2.1: unexpected server condition.
    ServerError,
    /// RFC 6749 §4.1.2.1: temporarily unable to handle the request.
    TemporarilyUnavailable,
    /// RFC 9449 §5: the DPoP proof is invalid (or missing where required).
    InvalidDpopProof,
    /// RFC 9449 §8: retry with the server's nonce from the `DPoP-Nonce` header.
    UseDpopNonce,
}

impl ErrorCode {
    /// The wire code, e.g. `invalid_scope`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error response body (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorResponse {
    /// The error code.
    pub error: ErrorCode,
    /// Human-readable detail for the client developer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// Authorization server metadata (RFC 8414 §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerMetadata {
    /// The issuer identifier; equals the `iss` of every token.
    pub issuer: String,
    /// The token endpoint URL.
    pub token_endpoint: String,
    /// The key set URL.
    pub jwks_uri: String,
    /// RFC 7662 introspection endpoint.
    pub introspection_endpoint: String,
    /// Client authentication methods at the introspection endpoint.
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// RFC 7009 revocation endpoint.
    pub revocation_endpoint: String,
    /// Client authentication methods at the revocation endpoint.
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// Supported grant types. Token exchange (RFC 8693) is not impersonation: without
    /// `actor_token` only the client a subject token was issued to may exchange it
    /// (down-scoping); acting for its subject needs an `actor_token` named in one of the
    /// subject's grants' `may_act` (delegation, `act` claim).
    pub grant_types_supported: Vec<String>,
    /// Supported client authentication methods at the token endpoint.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Always empty: Mayfly has no authorization endpoint.
    pub response_types_supported: Vec<String>,
    /// Algorithms for `private_key_jwt` assertions (`EdDSA`).
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// Algorithms for DPoP proofs (RFC 9449 §5.1).
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
}

/// A published signing key: an OKP/Ed25519 JWK (RFC 8037 §2) with its PASERK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// base64url of the raw public key.
    pub x: String,
    /// PASERK `k4.pid` key id; the token footer's `kid`.
    pub kid: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Always `EdDSA`.
    pub alg: String,
    /// The key as PASERK `k4.public.…`.
    pub paserk: String,
}

impl Jwk {
    /// The JWK for a public key.
    pub fn from_public(key: &crate::PublicKey) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: key.jwk_x(),
            kid: key.id().to_string(),
            use_: "sig".into(),
            alg: "EdDSA".into(),
            paserk: key.paserk(),
        }
    }
}

/// The published key set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JwkSet {
    /// Every key a valid token may be signed with.
    pub keys: Vec<Jwk>,
}

/// An introspection answer (RFC 7662 §2.2). Inactive tokens get `{"active":false}` only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Introspection {
    /// Whether the token is valid now: signature, time, not revoked, and its client,
    /// subject, grants and signing key still in good standing.
    pub active: bool,
    /// Granted scopes, space-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client that obtained it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Its subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Its audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Its issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Expiry, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `Bearer`, or `DPoP` for a token bound to a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The key a DPoP-bound token is bound to (RFC 9449 §6.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<crate::token::Confirmation>,
    /// The networks the token may be used from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Vec<String>>,
    /// Who acts for `sub`, on delegated tokens (RFC 8693 §4.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<crate::token::Actor>,
}

impl Introspection {
    /// The answer for an active token.
    pub fn active(claims: &crate::Claims) -> Self {
        Self {
            active: true,
            scope: Some(claims.scope.clone()),
            client_id: Some(claims.client_id.clone()),
            sub: Some(claims.sub.clone()),
            aud: Some(claims.aud.clone()),
            iss: Some(claims.iss.clone()),
            exp: Some(claims.exp.unix_timestamp()),
            iat: Some(claims.iat.unix_timestamp()),
            nbf: Some(claims.nbf.unix_timestamp()),
            jti: Some(claims.jti.clone()),
            token_type: Some(
                if claims.cnf.is_some() {
                    "DPoP"
                } else {
                    "Bearer"
                }
                .into(),
            ),
            cnf: claims.cnf.clone(),
            cidr: (!claims.cidr.is_empty()).then(|| claims.cidr.clone()),
            act: claims.act.clone(),
        }
    }
}

/// One revocation in the feed resource servers follow (`GET /v1/revocations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevocationEntry {
    /// Feed position; pass the last one seen as `after` (or `Last-Event-ID`).
    pub cursor: String,
    /// What it targets.
    pub kind: crate::revocation::RevocationKind,
    /// The jti, subject, client, grant or key id.
    pub value: String,
    /// Tokens issued before this are revoked (ignored for `jti`).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub issued_before: time::OffsetDateTime,
    /// After this no token it matches can still be valid; it may be forgotten.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: time::OffsetDateTime,
}

impl RevocationEntry {
    /// The rule this entry states.
    pub fn rule(&self) -> crate::revocation::Rule {
        crate::revocation::Rule {
            kind: self.kind,
            value: self.value.clone(),
            issued_before: self.issued_before,
        }
    }
}

/// A page of the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevocationPage {
    /// Revocations after the given cursor, in order.
    pub items: Vec<RevocationEntry>,
    /// Where to continue from (the last item's cursor, or the given one when empty).
    pub next_cursor: String,
}

/// Why the issuer ended a revocation stream: the data of its last event, `event:
/// closed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamClosed {
    /// Why, as [`StreamClosed::SHUTTING_DOWN`], [`StreamClosed::REVOCATIONS_UNAVAILABLE`],
    /// or a reason about the stream's token (expired, revoked, client disabled).
    pub reason: String,
}

impl StreamClosed {
    /// The issuer is stopping.
    pub const SHUTTING_DOWN: &'static str = "shutting down";
    /// This replica could not read the store's revocations for a while.
    pub const REVOCATIONS_UNAVAILABLE: &'static str = "revocations unavailable";

    /// Whether the stream's token still holds: it ended for the issuer's reasons, so the
    /// follower reconnects with the same token. Any other reason (an unknown one too)
    /// speaks of the token, and a fresh one is needed.
    pub fn token_holds(&self) -> bool {
        matches!(
            self.reason.as_str(),
            Self::SHUTTING_DOWN | Self::REVOCATIONS_UNAVAILABLE
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(access_token: &str, scope: &str, refresh: Option<&str>) -> TokenResponse {
        TokenResponse {
            access_token: access_token.into(),
            token_type: "Bearer".into(),
            expires_in: 300,
            scope: scope.into(),
            refresh_token: refresh.map(Into::into),
            issued_token_type: refresh
                .map(|_| "urn:ietf:params:oauth:token-type:access_token".into()),
        }
    }

    #[test]
    fn to_json_is_what_serde_json_writes() {
        for r in [
            response(
                "v4.public.eyJhIjoxfQ-_abc.e30",
                "orders:read orders:write",
                None,
            ),
            response("v4.public.x", "", Some("mfy_rt_abc-_")),
            response("quote\"back\\slash", "tab\tnul\0 é ☃", Some("\u{1f}\u{7f}")),
        ] {
            assert_eq!(
                String::from_utf8(r.to_json()).unwrap(),
                serde_json::to_string(&r).unwrap()
            );
        }
    }
}
