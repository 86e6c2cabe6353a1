//! mayfly-server: the Mayfly security token service.
//!
//! `http/` is the web layer (one module per endpoint family, and `http/error.rs`, the one
//! place errors become responses); `grant/` issues tokens, one module per grant type;
//! `client_auth/` authenticates clients, one module per method; `keys/` holds the keyring,
//! the master key and key rotation; `audit/` makes events durable with group commit; `directory` caches who may get
//! which token; `admin/` is the
//! service layer behind the admin CLI. Handlers stay thin and no SQL lives here.

pub mod admin;
pub mod anomaly;
pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod client_auth;
pub mod clock;
pub mod config;
pub mod directory;
pub mod gateway;
pub mod http;
pub mod keys;
pub mod login;
pub mod oauth;
pub mod password;
pub mod revocation;
pub mod runtime;
pub mod telemetry;
pub mod vocab;
pub mod webhook;

pub use runtime::AppState;
