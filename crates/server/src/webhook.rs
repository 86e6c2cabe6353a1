//! Outgoing webhook: anomaly events (and other notices) are POSTed as JSON to one
//! configured URL, signed with HMAC-SHA256, retried with backoff, and never waited for.
//!
//! Each delivery carries `Mayfly-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>">` (the timestamp lets receivers refuse replays) and `Mayfly-Event-Id`
//! (retries repeat it, so receivers can drop duplicates).

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::{Semaphore, mpsc};
use zeroize::Zeroizing;

use crate::clock::Clock;

/// Notices waiting for delivery; beyond this they are dropped (and counted).
const QUEUE: usize = 1024;
/// Deliveries in flight at once.
const IN_FLIGHT: usize = 8;
/// Attempts per notice: the first, then retries after 1, 2, 4, 8 and 16 s.
const ATTEMPTS: u32 = 6;
/// Time allowed for one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Signature header name.
pub const SIGNATURE_HEADER: &str = "mayfly-signature";
/// Event id header name.
pub const EVENT_ID_HEADER: &str = "mayfly-event-id";

/// One notice to deliver.
#[derive(Debug)]
struct Notice {
    id: String,
    body: Vec<u8>,
}

/// Handle to the delivery task. Cheap to clone.
#[derive(Clone)]
pub struct Webhook {
    queue: mpsc::Sender<Notice>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Webhook")
    }
}

/// The `Mayfly-Signature` value for `body` sent at unix time `t`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable_hmac());
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

// HMAC accepts keys of any length; this cannot happen.
#[allow(clippy::panic)]
fn unreachable_hmac() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 refused a key")
}

impl Webhook {
    /// Starts delivering to `url`, signing with `secret`.
    pub fn start(url: reqwest::Url, secret: Zeroizing<Vec<u8>>, clock: Arc<dyn Clock>) -> Self {
        let (queue, mut rx) = mpsc::channel::<Notice>(QUEUE);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let secret = Arc::new(secret);
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        tokio::spawn(async move {
            while let Some(notice) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (http, url, secret, clock) =
                    (http.clone(), url.clone(), secret.clone(), clock.clone());
                tokio::spawn(async move {
                    deliver(&http, &url, &secret, clock.as_ref(), &notice).await;
                    drop(permit);
                });
            }
        });
        Self { queue }
    }

    /// Queues `payload` for delivery and returns at once. When the queue is full the
    /// notice is dropped, counted and logged: a slow receiver never slows issuance.
    pub fn notify(&self, id: String, payload: &serde_json::Value) {
        let body = payload.to_string().into_bytes();
        if self.queue.try_send(Notice { id, body }).is_err() {
            metrics::counter!("mayfly_webhook_dropped_total").increment(1);
            tracing::warn!("webhook queue full; notice dropped");
        }
    }
}

async fn deliver(
    http: &reqwest::Client,
    url: &reqwest::Url,
    secret: &[u8],
    clock: &dyn Clock,
    notice: &Notice,
) {
    let mut backoff = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let t = clock.now().unix_timestamp();
        let sent = http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(secret, t, &notice.body))
            .header(EVENT_ID_HEADER, &notice.id)
            .body(notice.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                metrics::counter!("mayfly_webhook_deliveries_total", "result" => "ok").increment(1);
                return;
            }
            Ok(r) => tracing::warn!(status = r.status().as_u16(), attempt, "webhook refused"),
            // Without the URL: Slack, Teams and Discord put the hook's secret in it.
            Err(e) => tracing::warn!(error = %e.without_url(), attempt, "webhook unreachable"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    metrics::counter!("mayfly_webhook_deliveries_total", "result" => "failed").increment(1);
    tracing::error!(event_id = %notice.id, "webhook: gave up after {ATTEMPTS} attempts");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_and_body() {
        // Checked against openssl:
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        let sig = signature(b"key", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            sig,
            "t=1700000000,v1=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
        assert_ne!(sig, signature(b"other", 1_700_000_000, br#"{"a":1}"#));
    }

    /// What a subscriber writes, kept for the test to read.
    #[derive(Clone, Default)]
    struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Slack, Teams and Discord webhook URLs carry their secret in the path: a failed
    /// delivery's log lines must not show it.
    #[tokio::test(start_paused = true)]
    async fn a_failed_delivery_does_not_log_the_url() {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // A port nothing listens on: every attempt fails to connect.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let url =
            reqwest::Url::parse(&format!("http://{closed}/services/T0/B0/SECRETPATH")).unwrap();
        let notice = Notice {
            id: "evt-1".into(),
            body: b"{}".to_vec(),
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        deliver(
            &reqwest::Client::new(),
            &url,
            b"key",
            &crate::clock::SystemClock,
            &notice,
        )
        .await;
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("webhook unreachable"), "{text}");
        assert!(!text.contains("SECRETPATH"), "{text}");
    }
}
