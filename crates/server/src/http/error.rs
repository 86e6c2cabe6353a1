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

use crate::grant::TokenError;

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
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(detail) => {
                tracing::error!(detail, "token request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        };
        if status.is_client_error() {
            tracing::debug!(error = %self.code(), reason = %self.audit_reason(), "token request refused");
        }
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
