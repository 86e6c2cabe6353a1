//! The accept loop: every connection is bounded in time and in number, so that opening
//! connections (idle, slow, or many) cannot take the service down for others.
//!
//! - At most `--max-connections` are open; beyond that a new connection is answered
//!   `503` with `Retry-After` and closed, never left waiting nor turned into an accept
//!   error. The cap is lowered at start to fit the open-files limit
//!   ([`raise_open_files_limit`]).
//! - Request headers must arrive within `--header-read-timeout` (slowloris); hyper's
//!   timer runs from the moment a connection waits for a request's head.
//! - A connection with no bytes in either direction for `--idle-timeout` is closed
//!   gracefully (a response in progress, such as an event stream, is finished first);
//!   while more than three quarters of the cap are in use, for [`IDLE_UNDER_PRESSURE`],
//!   so idle connections make room for callers with something to ask.
//! - Request bodies must arrive within `--body-read-timeout` (in [`super::router`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

/// Idle time allowed while the connection cap is nearly reached.
pub const IDLE_UNDER_PRESSURE: Duration = Duration::from_secs(1);
/// File descriptors kept free beside connections: the database pool, files, the
/// listener, and connections being refused.
pub const RESERVED_FILES: u64 = 128;

/// How long a refused connection is read before, and drained after, its 503: short, as
/// a burst of refusals holds descriptors meanwhile.
const REFUSAL_WAIT: Duration = Duration::from_millis(500);

/// The answer to a connection beyond the cap.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
cache-control: no-store\r\n\
connection: close\r\n\
content-length: 83\r\n\
\r\n\
{\"error\":\"temporarily_unavailable\",\"error_description\":\"too many open connections\"}";

/// The bounds of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Open connections at most.
    pub max_connections: usize,
    /// Time allowed for a request's headers (and between requests on a connection).
    pub header_read: Duration,
    /// Time a connection may stay idle.
    pub idle: Duration,
}

/// Raises the soft open-files limit to the hard limit; returns the limit in force (the
/// old one if raising failed, `None` where there is none to read).
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// The connection cap that fits `open_files`, leaving [`RESERVED_FILES`] free.
pub fn fit_cap(configured: usize, open_files: Option<u64>) -> usize {
    open_files
        .map(|limit| limit.saturating_sub(RESERVED_FILES).max(1))
        .and_then(|room| usize::try_from(room).ok())
        .map_or(configured, |room| configured.min(room))
}

/// Serves `app` on `listener` within `bounds` until `shutdown` resolves, then lets open
/// connections finish their requests and waits for them.
///
/// # Errors
/// None so far: accept errors are logged and the loop goes on.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    bounds: Bounds,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let cap = bounds.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(cap));
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_read);
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: log, wait
                    // a moment (the condition may last), and go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("mayfly_connections_refused_total").increment(1);
            tokio::spawn(refuse(stream));
            continue;
        };
        let service = app
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection = Connection {
            builder: builder.clone(),
            slots: slots.clone(),
            cap,
            idle: bounds.idle,
            stopped: stopped.clone(),
        };
        tokio::spawn(async move {
            connection.run(stream, service).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it ends.
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

/// Answers 503 and closes. The request's head is read first (for at most half a second), as
/// clients take an answer before their request for a broken connection; then whatever
/// else the client sends, until it closes: closing with unread data would reset the
/// connection and could lose the answer.
async fn refuse(mut stream: TcpStream) {
    let mut head = Vec::new();
    let read_head = async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_WAIT, read_head).await;
    let answer = async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(REFUSAL_WAIT, answer).await;
}

struct Connection {
    builder: Builder,
    slots: Arc<Semaphore>,
    cap: usize,
    idle: Duration,
    stopped: watch::Receiver<bool>,
}

impl Connection {
    async fn run<S>(mut self, stream: TcpStream, service: S)
    where
        S: tower::Service<
                axum::extract::Request<hyper::body::Incoming>,
                Response = axum::response::Response,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let start = Instant::now();
        let activity = Arc::new(AtomicU64::new(0));
        let io = TokioIo::new(Tracked {
            inner: stream,
            start,
            activity: activity.clone(),
        });
        let conn = self
            .builder
            .serve_connection(io, TowerToHyperService::new(service))
            .with_upgrades();
        tokio::pin!(conn);
        let mut tick = tokio::time::interval(IDLE_UNDER_PRESSURE.min(self.idle));
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended");
                    }
                    return;
                }
                _ = self.stopped.changed(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = tick.tick(), if !closing => {
                    let last = Duration::from_millis(activity.load(Ordering::Relaxed));
                    let idle_for = start.elapsed().saturating_sub(last);
                    let pressed = self.slots.available_permits() < self.cap / 4;
                    let allowed = if pressed { IDLE_UNDER_PRESSURE } else { self.idle };
                    if idle_for >= allowed {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// A socket that notes when bytes last moved, for the idle timeout.
struct Tracked {
    inner: TcpStream,
    start: Instant,
    activity: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(now, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_open_files_limit() {
        assert_eq!(fit_cap(4096, Some(1024)), 1024 - RESERVED_FILES as usize);
        assert_eq!(fit_cap(100, Some(1024)), 100);
        assert_eq!(fit_cap(100, None), 100);
        assert_eq!(fit_cap(100, Some(10)), 1);
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "temporarily_unavailable");
    }
}
