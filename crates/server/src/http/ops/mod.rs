//! Operations: health and readiness, Prometheus metrics, the OpenAPI document.

pub mod health;
pub mod metrics;
pub mod openapi;
