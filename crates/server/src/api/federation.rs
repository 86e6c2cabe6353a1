//! Wire types of workload identity federation (issue #20): trusted issuers and the
//! federated identities of clients and users. The settings and rules have exactly the
//! serde shape of `mayfly-federation`'s `TrustedIssuerConfig` and `Condition`, so what
//! an admin writes is what the verifier reads; these types add the API description.

use mayfly_federation::{ClaimPath, Condition, KeySource, SpiffeIdPrefix, TrustedIssuerConfig};
use mayfly_store::{FederatedIdentityRecord, Subject, TrustedIssuerRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a trusted issuer's public keys come from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySourceIn {
    /// OpenID Connect Discovery at `{issuer}/.well-known/openid-configuration`.
    Discovery,
    /// This JWK Set URL (`https`, or `http` on a loopback host).
    JwksUri {
        /// The JWK Set URL.
        jwks_uri: String,
    },
    /// This JWK Set, for issuers the server cannot reach; rotation means updating it.
    Inline {
        /// The JWK Set document (`{"keys": [...]}`).
        #[schema(value_type = Object)]
        jwks: Value,
    },
}

impl From<KeySourceIn> for KeySource {
    fn from(source: KeySourceIn) -> Self {
        match source {
            KeySourceIn::Discovery => Self::Discovery,
            KeySourceIn::JwksUri { jwks_uri } => Self::JwksUri { jwks_uri },
            KeySourceIn::Inline { jwks } => Self::Inline { jwks },
        }
    }
}

/// A trusted issuer to create: whose external tokens (Kubernetes, GitHub Actions,
/// SPIFFE, OIDC) Mayfly accepts, and how it checks them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTrustedIssuerIn {
    /// The issuer, compared exactly with a token's `iss`: an `https` URL (`http` only on
    /// a loopback host), no query or fragment. Fixed once created.
    #[schema(max_length = 2048)]
    pub issuer: String,
    /// Where its keys come from (default: discovery).
    #[serde(default = "discovery")]
    pub key_source: KeySourceIn,
    /// Accepted `alg` values, a non-empty subset of `RS256`, `ES256`, `EdDSA` (`none`
    /// and HMAC are refused). Default: all three.
    #[serde(default = "all_algorithms")]
    pub algorithms: Vec<String>,
    /// The audience external tokens must carry in `aud`.
    #[schema(max_length = 512)]
    pub audience: String,
    /// Oldest accepted `iat`, in seconds (default 300, at most 86 400).
    #[serde(default)]
    pub max_age_seconds: Option<i64>,
    /// Clock-skew allowance, in seconds (default 30, at most 300).
    #[serde(default)]
    pub clock_skew_seconds: Option<i64>,
    /// Longest accepted `exp - iat`, in seconds (default none, at most 366 days).
    #[serde(default)]
    pub max_lifetime_seconds: Option<i64>,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

fn discovery() -> KeySourceIn {
    KeySourceIn::Discovery
}

fn all_algorithms() -> Vec<String> {
    TrustedIssuerConfig::new("", "").algorithms
}

impl NewTrustedIssuerIn {
    /// The verifier settings this asks for (validated by the service layer).
    pub fn config(&self) -> TrustedIssuerConfig {
        TrustedIssuerConfig {
            issuer: self.issuer.clone(),
            key_source: self.key_source.clone().into(),
            algorithms: self.algorithms.clone(),
            audience: self.audience.clone(),
            max_age_seconds: self.max_age_seconds,
            clock_skew_seconds: self.clock_skew_seconds,
            max_lifetime_seconds: self.max_lifetime_seconds,
        }
    }
}

/// Changes to a trusted issuer: absent fields stay; a duration given as `null` returns
/// to its default. The issuer URL cannot change (create another issuer instead).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerPatch {
    /// New description.
    pub description: Option<String>,
    /// New key source.
    pub key_source: Option<KeySourceIn>,
    /// New accepted algorithms.
    pub algorithms: Option<Vec<String>>,
    /// New audience.
    pub audience: Option<String>,
    /// New maximum age (`null`: the default).
    #[serde(
        default,
        deserialize_with = "super::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub max_age_seconds: Option<Option<i64>>,
    /// New clock skew (`null`: the default).
    #[serde(
        default,
        deserialize_with = "super::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub clock_skew_seconds: Option<Option<i64>>,
    /// New maximum lifetime (`null`: none).
    #[serde(
        default,
        deserialize_with = "super::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub max_lifetime_seconds: Option<Option<i64>>,
}

impl TrustedIssuerPatch {
    /// `config` with this patch's settings applied (the issuer URL kept).
    pub fn apply(&self, mut config: TrustedIssuerConfig) -> TrustedIssuerConfig {
        if let Some(source) = &self.key_source {
            config.key_source = source.clone().into();
        }
        if let Some(algorithms) = &self.algorithms {
            config.algorithms = algorithms.clone();
        }
        if let Some(audience) = &self.audience {
            config.audience = audience.clone();
        }
        if let Some(value) = self.max_age_seconds {
            config.max_age_seconds = value;
        }
        if let Some(value) = self.clock_skew_seconds {
            config.clock_skew_seconds = value;
        }
        if let Some(value) = self.max_lifetime_seconds {
            config.max_lifetime_seconds = value;
        }
        config
    }
}

/// A trusted issuer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrustedIssuerOut {
    /// Id.
    pub id: Uuid,
    /// The issuer URL (`iss`).
    pub issuer: String,
    /// Free text.
    pub description: String,
    /// The verifier settings: `issuer`, `key_source`, `algorithms`, `audience` and the
    /// durations that are set.
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<TrustedIssuerRecord> for TrustedIssuerOut {
    fn from(r: TrustedIssuerRecord) -> Self {
        Self {
            id: r.id,
            issuer: r.issuer,
            description: r.description,
            settings: r.settings,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// One condition on an external token's claims.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConditionIn {
    /// The claim at `claim` (a JSON Pointer, e.g. `/repository` or
    /// `/kubernetes.io/namespace`) equals `value` (a string, number or boolean).
    Equals {
        /// JSON Pointer (RFC 6901) to the claim; segments are member names.
        #[schema(value_type = String)]
        claim: ClaimPath,
        /// The value it must equal.
        #[schema(value_type = Object)]
        value: Value,
    },
    /// `sub` is a SPIFFE ID at or below `prefix` (on path-segment boundaries).
    SpiffePrefix {
        /// `spiffe://trust-domain` or `spiffe://trust-domain/path`.
        #[schema(value_type = String)]
        prefix: SpiffeIdPrefix,
    },
}

impl From<ConditionIn> for Condition {
    fn from(c: ConditionIn) -> Self {
        match c {
            ConditionIn::Equals { claim, value } => Self::Equals { claim, value },
            ConditionIn::SpiffePrefix { prefix } => Self::SpiffePrefix { prefix },
        }
    }
}

/// A federated identity to add: tokens of `issuer` with exactly `subject`, or
/// satisfying every one of `conditions`, may obtain tokens as this client or user.
/// Exactly one of `subject` and `conditions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFederatedIdentityIn {
    /// The trusted issuer's URL.
    pub issuer: String,
    /// The exact `sub`.
    #[serde(default)]
    pub subject: Option<String>,
    /// Conditions, all of which must hold (1 to 16).
    #[serde(default)]
    pub conditions: Option<Vec<ConditionIn>>,
}

/// A federated identity of a client or user.
#[derive(Debug, Serialize, ToSchema)]
pub struct FederatedIdentityOut {
    /// Id, for deletion.
    pub id: Uuid,
    /// The trusted issuer's id.
    pub trusted_issuer_id: Uuid,
    /// The trusted issuer's URL.
    pub issuer: String,
    /// `client` or `user`.
    pub owner_kind: String,
    /// The client's or user's id.
    pub owner_id: Uuid,
    /// The exact `sub`, for a subject rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The conditions, for a claims rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub conditions: Option<Value>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl FederatedIdentityOut {
    /// The wire form of `record`, whose trusted issuer is `issuer`.
    pub fn new(record: FederatedIdentityRecord, issuer: String) -> Self {
        let (owner_kind, owner_id) = match record.owner {
            Subject::Client(id) => ("client", id),
            Subject::User(id) => ("user", id),
        };
        Self {
            id: record.id,
            trusted_issuer_id: record.trusted_issuer_id,
            issuer,
            owner_kind: owner_kind.to_owned(),
            owner_id,
            subject: record.exact_subject,
            conditions: record.rule.get("conditions").cloned(),
            created_at: record.created_at,
        }
    }
}
