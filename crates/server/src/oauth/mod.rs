//! The OAuth side of the service: issuing tokens (`grant/`, one module per grant type),
//! checking DPoP proofs (`dpop`), deciding whether a token is active (`active`, for
//! introspection and token exchange), and the errors these endpoints share (`error`).
//! Below the web layer (it knows no HTTP types), above the runtime state and the
//! service layer it calls.

pub mod active;
pub mod dpop;
pub mod error;
pub mod grant;

pub use error::{FormError, TokenError};
