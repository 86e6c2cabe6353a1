//! mayfly-core: the vocabulary Mayfly's server and SDK share.
//!
//! It owns the token format (PASETO `v4.public` with a `{"kid":…}` footer), key ids
//! (PASERK `k4.pid`), the scope and audience grammar, and the wire types of the OAuth
//! endpoints. It performs no I/O and never reads the clock: every time-dependent
//! function takes `now` as a parameter.

#![deny(missing_docs)]

pub mod audience;
pub mod dpop;
pub mod jose;
pub mod keys;
pub mod net;
mod paseto;
pub mod revocation;
pub mod scope;
pub mod text;
pub mod token;
pub mod wire;

pub use audience::{Audience, AudienceError};
pub use keys::{KeyError, KeyId, PublicKey, SigningKey};
pub use scope::{Scope, ScopeError, ScopeSet};
pub use text::UntrustedText;
pub use token::{Actor, Claims, Confirmation, MintError, Origin, VerifyError, VerifyOptions};
