//! The one place errors become HTTP responses.
//!
//! OAuth endpoints answer RFC 6749 §5.2 JSON with `Cache-Control: no-store`; 401 carries
//! `WWW-Authenticate`, 503 carries `Retry-After`. Internal errors are logged here, once,
//! and the client learns nothing of them.

use std::any::Any;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mayfly_core::wire::{ErrorCode, ErrorResponse};

use crate::oauth::TokenError;

/// Seconds a client should wait after a 503.
pub const RETRY_AFTER_SECS: &str = "1";

/// Headers every OAuth response carries (RFC 6749 §5.1).
pub fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::SlowBody => StatusCode::REQUEST_TIMEOUT,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(detail) => {
                tracing::error!(detail, "token request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        };
        if status.is_client_error() {
            tracing::debug!(error = %self.code(), reason = %mayfly_core::UntrustedText::new(&self.audit_reason()), "token request refused");
        }
        let retry_after = match &self {
            Self::Throttled(seconds) => HeaderValue::from_str(&seconds.max(&1).to_string()).ok(),
            _ => None,
        };
        let body = ErrorResponse {
            error: self.code(),
            error_description: Some(self.to_string()),
        };
        let mut response = (status, Json(body)).into_response();
        no_store(&mut response);
        let headers = response.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="mayfly""#),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
            }
            StatusCode::TOO_MANY_REQUESTS => {
                if let Some(value) = retry_after {
                    headers.insert(header::RETRY_AFTER, value);
                }
            }
            _ => {}
        }
        response
    }
}

/// A handler panicked: log it, answer a bare 500 in the OAuth error format.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(detail, "handler panicked");
    let body = ErrorResponse {
        error: ErrorCode::ServerError,
        error_description: None,
    };
    let mut response = (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
    no_store(&mut response);
    response
}

/// An RFC 7807 problem: the admin API's error body (`application/problem+json`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what happened.
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// The status's reason phrase.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Field-level problems (422).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip)]
    www_authenticate: Option<String>,
}

/// One invalid field.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field, as named in the request.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl Problem {
    /// A problem with a status and a detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            type_: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: Some(detail.into()),
            errors: Vec::new(),
            www_authenticate: None,
        }
    }

    /// A 422 naming the invalid field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            errors: vec![FieldError {
                field: field.into(),
                message: message.clone(),
            }],
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("invalid {field}: {message}"),
            )
        }
    }

    /// Adds a `WWW-Authenticate` challenge (401, 403).
    #[must_use]
    pub fn challenge(mut self, value: String) -> Self {
        self.www_authenticate = Some(value);
        self
    }

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(detail = ?self.detail, "admin request failed");
        } else {
            tracing::debug!(status = self.status, detail = ?self.detail, "admin request refused");
        }
        let challenge = self.www_authenticate.clone();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            body,
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(value) = challenge.and_then(|v| HeaderValue::from_str(&v).ok()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

impl From<crate::service::AdminError> for Problem {
    fn from(e: crate::service::AdminError) -> Self {
        use crate::service::AdminError;
        match e {
            AdminError::Invalid { field, reason } => Self::field(field, reason),
            AdminError::Conflict(what) => Self::new(StatusCode::CONFLICT, what),
            AdminError::Forbidden(why) => Self::new(StatusCode::FORBIDDEN, why),
            AdminError::InsufficientScope { scope, why } => Self::new(
                StatusCode::FORBIDDEN,
                format!("this needs the scope {scope}, which the caller does not hold: {why}"),
            )
            .challenge(format!(
                r#"Bearer realm="mayfly", error="insufficient_scope", scope="{scope}""#
            )),
            AdminError::NotFound(what) => {
                Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
            }
            AdminError::Store(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily unavailable, retry later",
                )
            }
            AdminError::Store(e) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), "admin store call failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for Problem {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection;
        match &e {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            ),
            JsonRejection::JsonDataError(_) => {
                // serde's message names the field: "unknown field `x`", "missing field `y`".
                let text = e.body_text();
                let detail = text
                    .split_once(": ")
                    .map_or(text.as_str(), |(_, d)| d)
                    .to_owned();
                let field = field_of(&detail).unwrap_or_else(|| "body".into());
                Self {
                    errors: vec![FieldError {
                        field,
                        message: detail.clone(),
                    }],
                    ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
                }
            }
            JsonRejection::BytesRejection(_) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or unreadable",
            ),
            _ => Self::new(StatusCode::BAD_REQUEST, "request body is not valid JSON"),
        }
    }
}

/// The field a serde message names with backquotes, if any.
fn field_of(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

impl From<axum::extract::rejection::PathRejection> for Problem {
    fn from(_: axum::extract::rejection::PathRejection) -> Self {
        Self::new(StatusCode::NOT_FOUND, "no such resource: ids are UUIDs")
    }
}

impl From<axum::extract::rejection::QueryRejection> for Problem {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        let text = e.body_text();
        let detail = text
            .split_once(": ")
            .map_or(text.as_str(), |(_, d)| d)
            .to_owned();
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
}

/// Any unknown route: a 404 problem rather than an empty body.
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "no such endpoint")
}
