//! The fixed strings of the protocol and of Mayfly itself, each defined once: the grant
//! types (RFC 6749, RFC 8693) and Mayfly's own `mayfly:*` scopes of the issuer audience.
//! Every layer names them from here (the service layer creates them at bootstrap, the
//! OAuth endpoints and the authorization table require them); a test keeps `"mayfly:`
//! scope literals out of every other file.

/// RFC 6749 §4.4.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
/// RFC 6749 §4.3 (resource owner password credentials).
pub const PASSWORD: &str = "password";
/// RFC 6749 §6; in a client's `grant_types`, it may also receive refresh tokens.
pub const REFRESH_TOKEN: &str = "refresh_token";
/// RFC 8693 token exchange.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Every grant type Mayfly supports (the RFC 8414 metadata lists them).
pub const GRANT_TYPES: &[&str] = &[CLIENT_CREDENTIALS, PASSWORD, REFRESH_TOKEN, TOKEN_EXCHANGE];

/// The scope that grants full administration.
pub const ADMIN_SCOPE: &str = "mayfly:admin";
/// Read every admin resource.
pub const ADMIN_READ_SCOPE: &str = "mayfly:admin:read";
/// Read and change audiences and scopes.
pub const ADMIN_AUDIENCES_SCOPE: &str = "mayfly:admin:audiences";
/// Read and change clients, their secrets and public keys.
pub const ADMIN_CLIENTS_SCOPE: &str = "mayfly:admin:clients";
/// Read and change users.
pub const ADMIN_USERS_SCOPE: &str = "mayfly:admin:users";
/// Read and change grants.
pub const ADMIN_GRANTS_SCOPE: &str = "mayfly:admin:grants";
/// Read and rotate signing keys.
pub const ADMIN_KEYS_SCOPE: &str = "mayfly:admin:keys";
/// Read and make revocations.
pub const ADMIN_REVOCATIONS_SCOPE: &str = "mayfly:admin:revocations";
/// Search the audit log.
pub const ADMIN_AUDIT_SCOPE: &str = "mayfly:admin:audit";
/// Read and change access policies, read access requests.
pub const ADMIN_ACCESS_SCOPE: &str = "mayfly:admin:access";
/// Every admin scope, created on the issuer audience by bootstrap. Each finer one
/// allows reading and changing one family of resources.
pub const ADMIN_SCOPES: &[&str] = &[
    ADMIN_SCOPE,
    ADMIN_READ_SCOPE,
    ADMIN_AUDIENCES_SCOPE,
    ADMIN_CLIENTS_SCOPE,
    ADMIN_USERS_SCOPE,
    ADMIN_GRANTS_SCOPE,
    ADMIN_KEYS_SCOPE,
    ADMIN_REVOCATIONS_SCOPE,
    ADMIN_AUDIT_SCOPE,
    ADMIN_ACCESS_SCOPE,
];
/// Lets a client call `POST /oauth2/introspect`.
pub const INTROSPECT_SCOPE: &str = "mayfly:introspect";
/// Lets a resource server read `GET /v1/revocations` and its stream; and report token
/// use (`POST /v1/usage`). Defined in core, once, as the SDK asks for them too.
pub use mayfly_core::scope::{REVOCATIONS_READ_SCOPE, USAGE_WRITE_SCOPE};
/// Lets a caller request just-in-time access for itself and see its own requests.
pub const ACCESS_SCOPE: &str = "mayfly:access";
/// Lets a caller decide (approve or deny) access requests: a scope of the issuer
/// audience, held by approvers instead of full admin.
pub const APPROVE_SCOPE: &str = "mayfly:approve";
/// Scopes of the issuer audience for services and people rather than admins: calling
/// introspection, reading the revocation feed, reporting token use, requesting
/// just-in-time access, and approving it.
pub const SERVICE_SCOPES: &[&str] = &[
    INTROSPECT_SCOPE,
    REVOCATIONS_READ_SCOPE,
    USAGE_WRITE_SCOPE,
    ACCESS_SCOPE,
    APPROVE_SCOPE,
];

/// The actor named in the audit events of automatic anomaly responses (not a scope).
pub const ANOMALY_ACTOR: &str = "mayfly:anomaly";
