//! Retries of transient failures: connection errors, timeouts and 5xx answers (honoring
//! `Retry-After`, RFC 9110 §10.2.3), with capped exponential backoff and jitter. A 4xx is
//! never retried: asking again will not change the answer.

use std::time::Duration as StdDuration;

use crate::Error;

/// How transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, including the first (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles with each further one.
    pub base_delay: StdDuration,
    /// No delay is longer, `Retry-After` included.
    pub max_delay: StdDuration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: StdDuration::from_millis(100),
            max_delay: StdDuration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (0-based): `base · 2^retry`, capped, less a
    /// random 0–50 % so that many clients do not retry in step.
    pub fn backoff(&self, retry: u32) -> StdDuration {
        let full = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(16)))
            .min(self.max_delay);
        full.mul_f64(1.0 - rand::random_range(0.0..0.5))
    }
}

/// Sends the request `build` makes, retrying transient failures. Returns any answer that
/// is not a 5xx (the caller judges 4xx); a 5xx or transport error only once retries are
/// exhausted.
pub(crate) async fn send(
    policy: &RetryPolicy,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, Error> {
    let attempts = policy.max_attempts.max(1);
    let mut retry = 0;
    loop {
        let last = retry + 1 >= attempts;
        let wait = match build().send().await {
            Ok(response) if response.status().is_server_error() => {
                let status = response.status().as_u16();
                let retry_after = retry_after(&response);
                if last {
                    return Err(Error::Unavailable {
                        status,
                        retry_after,
                    });
                }
                retry_after.unwrap_or_else(|| policy.backoff(retry))
            }
            Ok(response) => return Ok(response),
            Err(e) if (e.is_connect() || e.is_timeout()) && !last => policy.backoff(retry),
            Err(e) => return Err(Error::Transport(e)),
        };
        tracing::debug!(
            retry,
            wait_ms = wait.as_millis() as u64,
            "transient failure; retrying"
        );
        tokio::time::sleep(wait.min(policy.max_delay)).await;
        retry += 1;
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Mayfly).
fn retry_after(response: &reqwest::Response) -> Option<StdDuration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(StdDuration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: StdDuration::from_millis(100),
            max_delay: StdDuration::from_secs(1),
        };
        for _ in 0..50 {
            let b0 = p.backoff(0);
            assert!(b0 > StdDuration::from_millis(50) && b0 <= StdDuration::from_millis(100));
            let b2 = p.backoff(2);
            assert!(b2 > StdDuration::from_millis(200) && b2 <= StdDuration::from_millis(400));
            assert!(p.backoff(30) <= StdDuration::from_secs(1));
        }
    }
}
