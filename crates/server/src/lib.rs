//! mayfly-server: the Mayfly security token service.
//!
//! The modules are layers; every import points down (`tests/layering.rs` holds the table
//! of allowed edges and fails on an upward one or a cycle):
//!
//! - `cli/` — the command line, one file per command family; `main.rs` only dispatches.
//! - `app` — the composition root: `App::build(settings, clock)` builds the state, binds
//!   the listeners and starts every background task (one `Tasks` owner); `mayfly serve`
//!   and the end-to-end tests boot through it.
//! - `http/` — the web layer: `oauth/` (token, introspection, revocation, metadata),
//!   `v1/` (revocation feed, usage, access requests), `admin/` (the admin API), `ops/`
//!   (health, metrics, OpenAPI), and what they share: `auth` (the `Admin` extractor and
//!   the `ROUTES` table), `extract`, `form`, `error` (the one place errors become
//!   responses), `connections`.
//! - `anomaly` — anomaly responses on issuance, introspection and reported use.
//! - `oauth/` — issuing tokens (`grant/`, one module per grant type), DPoP proofs,
//!   whether a token is active, and the errors the OAuth endpoints share.
//! - `runtime/` — `AppState`, what a process shares between requests, and its in-memory
//!   pieces (anomaly sightings, DPoP nonces, database availability).
//! - `keys/` — keyring, master key, rotation.
//! - `service/` — the service layer: admin operations (`create_*`, `get_*`, `list_*`,
//!   `update_*`, `delete_*`, and named transitions such as `approve_access`), acting as
//!   an `Actor`; knows no HTTP, runtime or OAuth.
//! - `api/` — the admin API's wire types, shared by REST, CLI and webhook.
//! - infrastructure and leaves: `audit/`, `client_auth/`, `directory`, `revocation`,
//!   `password`, `webhook`, `gateway/`, `login`, `config`, `clock`, `telemetry`, and
//!   `vocab` (grant types and `mayfly:*` scopes, each defined once).
//!
//! Handlers stay thin and no SQL lives here.

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
pub mod service;
pub mod telemetry;
pub mod vocab;
pub mod webhook;

pub use runtime::AppState;
