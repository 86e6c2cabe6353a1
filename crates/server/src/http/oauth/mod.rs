//! The OAuth endpoints: token (RFC 6749), introspection (RFC 7662), revocation (RFC
//! 7009), and the metadata and key set resource servers fetch (RFC 8414, the JWKS).

pub mod introspect;
pub mod metadata;
pub mod revoke;
pub mod token;
