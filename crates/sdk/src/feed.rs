//! Following the issuer's revocation feed: the backlog from `GET /v1/revocations`, then
//! `GET /v1/revocations/stream` (Server-Sent Events, resumed with `Last-Event-ID` after
//! any disconnect, reconnecting with capped backoff). Every entry becomes a rule in the
//! shared [`RuleSet`] the verifier checks on each request.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration as StdDuration;

use mayfly_core::revocation::{Rule, RuleSet};
use time::OffsetDateTime;

use crate::clock::Clock;
use mayfly_core::wire::{RevocationEntry, RevocationPage, StreamClosed};

use crate::Error;
use crate::retry::{self, RetryPolicy};
use crate::token_source::TokenSource;

/// Longest a stream may stay silent: the issuer sends a keep-alive every 15 s, so two
/// missed ones mean a dead connection (one a load balancer still holds open), and the
/// follower reconnects instead of waiting on it forever.
pub(crate) const STREAM_SILENCE: StdDuration = StdDuration::from_secs(35);

/// What the feed follower shares with the verifier.
#[derive(Debug, Default)]
pub(crate) struct FeedState {
    pub(crate) rules: RwLock<RuleSet>,
    /// The last cursor applied.
    pub(crate) cursor: Mutex<String>,
    /// Every rule held, with the time after which it can match no valid token.
    live: Mutex<Vec<(OffsetDateTime, Rule)>>,
    /// When the issuer was last heard: the backlog loaded, the stream connected, or any
    /// bytes on it (events or the keep-alive comments the issuer sends every 15 s).
    heard_at: Mutex<Option<OffsetDateTime>>,
}

impl FeedState {
    /// Adds an entry's rule; forgets rules whose `expires_at` has passed (the issuer
    /// prunes them too: no token they match can still be valid).
    pub(crate) fn apply(&self, entry: &RevocationEntry, now: OffsetDateTime) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.push((entry.expires_at, entry.rule()));
        let mut rules = self.rules.write().unwrap_or_else(|e| e.into_inner());
        if live.iter().any(|(expires, _)| *expires <= now) {
            live.retain(|(expires, _)| *expires > now);
            let mut fresh = RuleSet::default();
            for (_, rule) in live.iter() {
                fresh.insert(rule.clone());
            }
            *rules = fresh;
        } else {
            rules.insert(entry.rule());
        }
        *self.cursor.lock().unwrap_or_else(|e| e.into_inner()) = entry.cursor.clone();
    }

    pub(crate) fn heard(&self, now: OffsetDateTime) {
        *self.heard_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
    }

    pub(crate) fn heard_at(&self) -> Option<OffsetDateTime> {
        *self.heard_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn cursor(&self) -> String {
        self.cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Where the feed lives and how to read it.
pub(crate) struct Feed {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) reader: TokenSource,
    pub(crate) retry: RetryPolicy,
    pub(crate) state: Arc<FeedState>,
    pub(crate) clock: Arc<dyn Clock>,
    /// How long a stream may stay silent before it counts as dead ([`STREAM_SILENCE`]).
    pub(crate) silence: StdDuration,
}

impl Feed {
    /// Reads every page after the current cursor.
    pub(crate) async fn load_backlog(&self) -> Result<usize, Error> {
        let mut loaded = 0;
        loop {
            let token = self.reader.token().await?;
            // Cursors are decimal numbers; anything else starts from the beginning.
            let after = Some(self.state.cursor()).filter(|c| c.bytes().all(|b| b.is_ascii_digit()));
            let url = format!(
                "{}/v1/revocations?after={}",
                self.base,
                after.unwrap_or_default()
            );
            let response = retry::send(&self.retry, || {
                self.http
                    .get(&url)
                    .timeout(StdDuration::from_secs(10))
                    .bearer_auth(token.secret())
            })
            .await?;
            if !response.status().is_success() {
                return Err(Error::rejected(response).await);
            }
            let page: RevocationPage = response
                .json()
                .await
                .map_err(|e| Error::InvalidResponse(format!("revocation page: {e}")))?;
            if page.items.is_empty() {
                self.state.heard(self.clock.now());
                return Ok(loaded);
            }
            loaded += page.items.len();
            for entry in &page.items {
                self.state.apply(entry, self.clock.now());
            }
        }
    }

    /// Follows the stream for ever, reconnecting with backoff.
    pub(crate) async fn follow(self) {
        let mut failures = 0u32;
        loop {
            match self.stream_once().await {
                Ok(()) => failures = 0,
                Err(e) => {
                    tracing::warn!(error = %e, "revocation stream failed");
                    failures = failures.saturating_add(1);
                }
            }
            let wait = self.retry.backoff(failures.min(10));
            tokio::time::sleep(wait).await;
        }
    }

    /// One connection: returns when the server ends the stream, or on an error.
    async fn stream_once(&self) -> Result<(), Error> {
        let token = match self.reader.token().await {
            Ok(t) => t,
            Err(e) => return Err(e),
        };
        let cursor = self.state.cursor();
        let mut request = self
            .http
            .get(format!("{}/v1/revocations/stream", self.base))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .bearer_auth(token.secret());
        if !cursor.is_empty() {
            request = request.header("last-event-id", cursor);
        }
        let mut response = request.send().await.map_err(Error::Transport)?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            self.reader.invalidate();
        }
        if !response.status().is_success() {
            return Err(Error::rejected(response).await);
        }
        tracing::debug!("revocation stream connected");
        self.state.heard(self.clock.now());
        let mut parser = SseParser::default();
        loop {
            let Ok(chunk) = tokio::time::timeout(self.silence, response.chunk()).await else {
                return Err(Error::InvalidResponse(format!(
                    "the revocation stream was silent for {} s",
                    self.silence.as_secs()
                )));
            };
            let Some(chunk) = chunk.map_err(Error::Transport)? else {
                break;
            };
            self.state.heard(self.clock.now());
            for event in parser.push(&chunk) {
                if event.event == "closed" {
                    // A stream whose token expired or was revoked: reconnect with a
                    // fresh one. One the issuer ended for its own reasons (an outage, a
                    // restart): the token still holds, and asking for another on every
                    // reconnect would only add load to an issuer in trouble.
                    tracing::debug!(reason = %event.data, "revocation stream closed by the issuer");
                    let holds = serde_json::from_str::<StreamClosed>(&event.data)
                        .is_ok_and(|closed| closed.token_holds());
                    if !holds {
                        self.reader.invalidate();
                    }
                    continue;
                }
                if event.event != "revocation" {
                    continue;
                }
                match serde_json::from_str::<RevocationEntry>(&event.data) {
                    Ok(entry) => self.state.apply(&entry, self.clock.now()),
                    Err(e) => tracing::warn!(error = %e, "unreadable revocation event"),
                }
            }
        }
        Ok(())
    }
}

/// One Server-Sent Event (WHATWG HTML §9.2).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub(crate) event: String,
    pub(crate) id: Option<String>,
    pub(crate) data: String,
}

/// An incremental `text/event-stream` parser.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buffer: String,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.push_str(&String::from_utf8_lossy(bytes));
        if self.buffer.contains('\r') {
            self.buffer = self.buffer.replace("\r\n", "\n").replace('\r', "\n");
        }
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = SseEvent {
                event: "message".into(),
                ..SseEvent::default()
            };
            let mut has_data = false;
            for line in block.lines() {
                if line.starts_with(':') || line.is_empty() {
                    continue; // comment (keep-alive)
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event.event = value.to_owned(),
                    "id" => event.id = Some(value.to_owned()),
                    "data" => {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            if has_data {
                events.push(event);
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::Json;
    use axum::extract::{Query, State};
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};

    use super::*;
    use crate::token_source::ClientSecret;

    #[derive(Clone, Default)]
    struct FakeFeed {
        base: Arc<Mutex<String>>,
        /// `Last-Event-ID` of each stream connection.
        resumes: Arc<Mutex<Vec<Option<String>>>>,
        /// Tokens handed out.
        tokens: Arc<std::sync::atomic::AtomicUsize>,
        /// When set, every stream ends with `event: closed` giving this reason.
        closing: Option<&'static str>,
    }

    fn entry(cursor: &str, jti: &str) -> serde_json::Value {
        serde_json::json!({
            "cursor": cursor, "kind": "jti", "value": jti,
            "issued_before": "2026-11-28T12:00:00Z", "expires_at": "2026-11-28T13:00:00Z",
        })
    }

    async fn metadata(State(s): State<FakeFeed>) -> Json<serde_json::Value> {
        let b = s.base.lock().unwrap().clone();
        Json(serde_json::json!({
            "issuer": b, "token_endpoint": format!("{b}/token"),
            "jwks_uri": format!("{b}/jwks"), "introspection_endpoint": format!("{b}/i"),
            "introspection_endpoint_auth_methods_supported": [],
            "revocation_endpoint": format!("{b}/r"), "revocation_endpoint_auth_methods_supported": [],
            "grant_types_supported": [], "token_endpoint_auth_methods_supported": [],
            "response_types_supported": [],
        }))
    }

    async fn token(State(s): State<FakeFeed>) -> Json<serde_json::Value> {
        s.tokens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Json(serde_json::json!({
            "access_token": "v4.public.reader", "token_type": "Bearer",
            "expires_in": 300, "scope": "mayfly:revocations:read",
        }))
    }

    async fn page(
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> Json<serde_json::Value> {
        let after = q.get("after").cloned().unwrap_or_default();
        let items = if after.is_empty() {
            vec![entry("1", "a")]
        } else {
            vec![]
        };
        Json(serde_json::json!({ "items": items, "next_cursor": "1" }))
    }

    async fn stream(State(s): State<FakeFeed>, headers: HeaderMap) -> impl IntoResponse {
        let last = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        s.resumes.lock().unwrap().push(last.clone());
        // Each connection delivers what follows the cursor, then drops.
        let mut body = match last.as_deref() {
            Some("1") => format!(
                ": keep-alive\n\nevent: revocation\nid: 2\ndata: {}\n\n",
                entry("2", "b")
            ),
            _ => String::new(),
        };
        if let Some(reason) = s.closing {
            let closed = StreamClosed {
                reason: reason.into(),
            };
            let data = serde_json::to_string(&closed).unwrap();
            body.push_str(&format!("event: closed\ndata: {data}\n\n"));
        }
        ([("content-type", "text/event-stream")], body)
    }

    /// Serves `fake` (metadata, token, feed pages and stream); its base URL.
    async fn serve(fake: &FakeFeed) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        *fake.base.lock().unwrap() = base.clone();
        let app = axum::Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/token", post(token))
            .route("/v1/revocations", get(page))
            .route("/v1/revocations/stream", get(stream))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    /// A follower of the feed at `feed_base`, reading with a token from the fake issuer
    /// at `issuer`; quick retries.
    fn feed(issuer: &str, feed_base: &str, silence: std::time::Duration) -> Feed {
        let retry = RetryPolicy {
            max_attempts: 2,
            base_delay: std::time::Duration::from_millis(5),
            max_delay: std::time::Duration::from_millis(20),
        };
        let http = crate::discovery::default_http().unwrap();
        Feed {
            http: http.clone(),
            base: feed_base.to_owned(),
            reader: TokenSource::builder(issuer)
                .client_secret("reader", ClientSecret::new("s"))
                .scopes(["mayfly:revocations:read"])
                .http_client(http)
                .retry(retry)
                .build()
                .unwrap(),
            retry,
            state: Arc::new(FeedState::default()),
            clock: Arc::new(crate::ManualClock::new(
                time::macros::datetime!(2026-11-28 12:00 UTC),
            )),
            silence,
        }
    }

    #[tokio::test]
    async fn loads_the_backlog_then_follows_and_resumes_the_stream() {
        let fake = FakeFeed::default();
        let base = serve(&fake).await;

        let feed = feed(&base, &base, STREAM_SILENCE);
        let state = feed.state.clone();
        assert_eq!(feed.load_backlog().await.unwrap(), 1);
        assert_eq!(state.cursor(), "1");
        let task = tokio::spawn(feed.follow());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while fake.resumes.lock().unwrap().len() < 3 {
            assert!(std::time::Instant::now() < deadline, "reconnects");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        task.abort();
        let resumes = fake.resumes.lock().unwrap().clone();
        assert_eq!(
            resumes[..3],
            [Some("1".into()), Some("2".into()), Some("2".into())]
        );
        assert_eq!(state.rules.read().unwrap().len(), 2);
    }

    /// Follows a feed whose streams all end with `event: closed` giving `reason`, for
    /// three connections; how many tokens the follower asked for.
    async fn tokens_over_three_closed_streams(reason: &'static str) -> usize {
        use std::sync::atomic::Ordering;
        let fake = FakeFeed {
            closing: Some(reason),
            ..FakeFeed::default()
        };
        let base = serve(&fake).await;
        let task = tokio::spawn(feed(&base, &base, STREAM_SILENCE).follow());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while fake.resumes.lock().unwrap().len() < 3 {
            assert!(std::time::Instant::now() < deadline, "reconnects");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        task.abort();
        fake.tokens.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_stream_closed_for_its_token_reconnects_with_a_fresh_one() {
        assert!(tokens_over_three_closed_streams("token expired").await >= 3);
        assert!(tokens_over_three_closed_streams("no reason we know").await >= 3);
    }

    #[tokio::test]
    async fn a_stream_closed_for_the_issuers_reasons_keeps_its_token() {
        for reason in [
            StreamClosed::REVOCATIONS_UNAVAILABLE,
            StreamClosed::SHUTTING_DOWN,
        ] {
            assert_eq!(
                tokens_over_three_closed_streams(reason).await,
                1,
                "{reason}"
            );
        }
    }

    /// A stream that sends one keep-alive and then nothing, its connection held open (a
    /// load balancer keeping a dead backend's connection): the follower gives up on it
    /// after `silence` and reconnects.
    #[tokio::test]
    async fn a_silent_stream_is_dropped_and_reconnected() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let base = serve(&FakeFeed::default()).await;

        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_base = format!("http://{}", silent.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = silent.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                          transfer-encoding: chunked\r\n\r\ne\r\n: keep-alive\n\n\r\n",
                    )
                    .await;
                held.push(socket);
            }
        });

        let feed = feed(&base, &silent_base, std::time::Duration::from_millis(200));
        let task = tokio::spawn(feed.follow());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while connections.load(Ordering::SeqCst) < 3 {
            assert!(std::time::Instant::now() < deadline, "reconnects");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        task.abort();
    }

    #[test]
    fn expired_rules_are_forgotten() {
        let state = FeedState::default();
        let at =
            |m: i64| time::macros::datetime!(2026-11-28 12:00 UTC) + time::Duration::minutes(m);
        let entry = |cursor: &str, expires: i64| RevocationEntry {
            cursor: cursor.into(),
            kind: mayfly_core::revocation::RevocationKind::Jti,
            value: format!("jti-{cursor}"),
            issued_before: at(0),
            expires_at: at(expires),
        };
        state.apply(&entry("1", 5), at(0));
        state.apply(&entry("2", 60), at(1));
        assert_eq!(state.rules.read().unwrap().len(), 2);
        state.apply(&entry("3", 60), at(6));
        assert_eq!(state.rules.read().unwrap().len(), 2, "jti-1 forgotten");
        assert_eq!(state.cursor(), "3");
    }

    #[test]
    fn parses_events_across_chunks_and_skips_keep_alives() {
        let mut p = SseParser::default();
        assert!(p.push(b":\n\nevent: revocation\nid: 4").is_empty());
        let events = p.push(b"\ndata: {\"a\":1}\n\n:keep-alive\n\ndata: x\r\ndata: y\r\n\r\n");
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: "revocation".into(),
                    id: Some("4".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: "message".into(),
                    id: None,
                    data: "x\ny".into()
                },
            ]
        );
    }
}
