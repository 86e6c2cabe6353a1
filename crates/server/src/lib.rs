//! mayfly-server: the Mayfly security token service.
//!
//! `http/` is the web layer (one module per endpoint family, and `http/error.rs`, the one
//! place errors become responses); `grant/` issues tokens, one module per grant type;
//! `client_auth/` authenticates clients, one module per method; `keys/` holds the keyring,
//! the master key and key rotation; `audit/` makes events durable with group commit; `directory` caches who may get
//! which token; `admin/` is the
//! service layer behind the admin CLI. Handlers stay thin and no SQL lives here.

pub mod active;
pub mod admin;
pub mod anomaly;
pub mod app;
pub mod audit;
pub mod availability;
pub mod cli;
pub mod client_auth;
pub mod clock;
pub mod config;
pub mod directory;
pub mod dpop;
pub mod gateway;
pub mod grant;
pub mod http;
pub mod keys;
pub mod login;
pub mod password;
pub mod revocation;
pub mod state;
pub mod telemetry;
pub mod webhook;

pub use state::AppState;
