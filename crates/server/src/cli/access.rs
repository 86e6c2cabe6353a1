//! `mayfly access …`: just-in-time access from the command line, over HTTP, as the
//! person (or client) whose login `mayfly login` stored: the issuer and a valid token
//! (refreshed when needed) come from the token file, so nobody handles a token by hand.
//!
//! Speaks JSON to `/v1/access-requests` and `/admin/v1/access-requests`; a refusal is
//! an error carrying the problem's `detail` (RFC 7807), never the token.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Serialize;
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::now;
use super::output::print;
use crate::api::DecisionComment;
use crate::api::NewAccessRequestIn;
use crate::config::parse_duration;
use crate::login::{self, LoginError};

/// `mayfly access …`
#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Ask for scopes on an audience for a while; prints the request as JSON (approved at
    /// once under an `auto` policy, else pending for approvers).
    Request {
        /// The audience URI.
        #[arg(long)]
        audience: String,
        /// A scope (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// For how long from approval, e.g. 15m (at most what the policy allows).
        #[arg(long = "for", value_parser = parse_duration)]
        duration: Duration,
        /// Why (shown to approvers, kept in the audit log).
        #[arg(long)]
        reason: String,
        /// Emergency: approve it yourself, where a policy allows break-glass (always an
        /// anomaly, reviewed afterwards).
        #[arg(long)]
        break_glass: bool,
    },
    /// Your own requests.
    List {
        /// Only those in this state (pending, approved, denied, cancelled, expired).
        #[arg(long)]
        state: Option<String>,
    },
    /// One of your requests.
    Show {
        /// Request id.
        id: Uuid,
    },
    /// Withdraw your request; an approved one's access ends now (its tokens revoked).
    Cancel {
        /// Request id.
        id: Uuid,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Approvers: the requests waiting for a decision.
    Queue {
        /// Which state to list.
        #[arg(long, default_value = "pending")]
        state: String,
    },
    /// Approvers: approve a request (never your own).
    Approve {
        /// Request id.
        id: Uuid,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Approvers: deny a request.
    Deny {
        /// Request id.
        id: Uuid,
        /// Why (required).
        #[arg(long)]
        comment: String,
    },
}

/// Runs `mayfly access …` as the login stored in `token_file` (default: the default
/// token file); prints the server's answer.
///
/// # Errors
/// No usable login, the server could not be reached, or it refused.
pub async fn run(token_file: Option<PathBuf>, command: AccessCommand) -> anyhow::Result<()> {
    let api = Api::new(&super::login::token_file(token_file)?);
    let now = now();
    let answer = match command {
        AccessCommand::Request {
            audience,
            scopes,
            duration,
            reason,
            break_glass,
        } => {
            let body = NewAccessRequestIn {
                audience,
                scopes,
                duration_secs: duration.whole_seconds(),
                reason,
                break_glass,
            };
            api.post("/v1/access-requests", &body, now).await?
        }
        AccessCommand::List { state } => {
            let query = state.map(|s| format!("?state={s}")).unwrap_or_default();
            api.get(&format!("/v1/access-requests{query}"), now).await?
        }
        AccessCommand::Show { id } => api.get(&format!("/v1/access-requests/{id}"), now).await?,
        AccessCommand::Cancel { id, comment } => {
            let path = format!("/v1/access-requests/{id}/cancel");
            api.post(&path, &DecisionComment { comment }, now).await?
        }
        AccessCommand::Queue { state } => {
            api.get(&format!("/admin/v1/access-requests?state={state}"), now)
                .await?
        }
        AccessCommand::Approve { id, comment } => {
            let path = format!("/admin/v1/access-requests/{id}/approve");
            api.post(&path, &DecisionComment { comment }, now).await?
        }
        AccessCommand::Deny { id, comment } => {
            let path = format!("/admin/v1/access-requests/{id}/deny");
            api.post(&path, &DecisionComment { comment }, now).await?
        }
    };
    print(&answer)
}

/// The token must stay valid at least this long for a call.
const MIN_VALID: Duration = Duration::seconds(30);

/// The API as the stored login.
#[derive(Debug, Clone)]
pub struct Api {
    token_file: PathBuf,
}

impl Api {
    /// Calls as the login stored in `token_file`.
    pub fn new(token_file: &Path) -> Self {
        Self {
            token_file: token_file.to_owned(),
        }
    }

    /// `GET path`.
    ///
    /// # Errors
    /// [`LoginError`] when the login cannot be used, the server cannot be reached, or it
    /// refuses (the problem's detail).
    pub async fn get(&self, path: &str, now: OffsetDateTime) -> Result<Value, LoginError> {
        self.call(reqwest::Method::GET, path, None, now).await
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// As [`Api::get`].
    pub async fn post(
        &self,
        path: &str,
        body: &impl Serialize,
        now: OffsetDateTime,
    ) -> Result<Value, LoginError> {
        let body = serde_json::to_value(body)
            .map_err(|e| LoginError::Http(format!("encoding the request: {e}")))?;
        self.call(reqwest::Method::POST, path, Some(&body), now)
            .await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        now: OffsetDateTime,
    ) -> Result<Value, LoginError> {
        let token = login::current_token(&self.token_file, MIN_VALID, now).await?;
        let issuer = login::load(&self.token_file)?.issuer;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| LoginError::Http(format!("building the HTTP client: {e}")))?;
        let url = format!("{}{path}", issuer.trim_end_matches('/'));
        let mut request = http.request(method, &url).bearer_auth(token.as_str());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| LoginError::Http(format!("calling {url}: {e}")))?;
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .map_err(|e| LoginError::Http(format!("reading the answer of {url}: {e}")))?;
        if status.is_success() {
            return Ok(answer);
        }
        let detail = answer["detail"].as_str().unwrap_or("refused");
        let fields: Vec<String> = answer["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["field"].as_str().unwrap_or("?"),
                            e["message"]
                                .as_str()
                                .or(e["detail"].as_str())
                                .unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Err(LoginError::Http(if fields.is_empty() {
            format!("{url} answered {status}: {detail}")
        } else {
            format!("{url} answered {status}: {detail} ({})", fields.join("; "))
        }))
    }
}
