//! `mayfly gateway`: a verifying sidecar that proxies ask before each request (nginx
//! `auth_request`, Traefik `ForwardAuth`, Envoy HTTP `ext_authz`), so resource servers in
//! any language get the SDK's checks: signature with the issuer's key set, the
//! revocation feed, DPoP proofs against the original method and URL, network
//! restrictions against the original client address, per-route scopes, usage reports.
//!
//! *Invariant*: no matching logic of its own. Verdicts are [`mayfly_sdk::Verifier`]'s;
//! this module only maps the proxy's description of the original request onto a
//! [`mayfly_sdk::Presentation`] and the route file ([`routes`]) onto required scopes.
//!
//! Fails closed: until the key set is loaded, or while the revocation feed has been
//! silent for longer than the bound, every verdict is 503 (`/readyz` says which).
//! The route file is reloaded on SIGHUP; requests in flight finish with the table they
//! started with, and a file that does not parse leaves the old table in place.

pub mod cli;
pub mod handler;
pub mod routes;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration as StdDuration;

use mayfly_sdk::{ClientSecret, Clock, TokenSource, UsageReporter, Verifier};
use time::Duration;

pub use routes::{RouteError, RouteTable};

/// Default bound on the revocation feed's silence before verdicts stop (fail closed).
pub const DEFAULT_MAX_FEED_SILENCE: Duration = Duration::seconds(30);

/// What the gateway is started with.
pub struct GatewayOptions {
    /// The issuer's URL.
    pub issuer: String,
    /// The route file.
    pub routes_file: PathBuf,
    /// Addresses whose `X-Original-*`/`X-Forwarded-*` headers are believed; requests
    /// from any other address are refused.
    pub proxies: Vec<ipnet::IpNet>,
    /// The header those proxies write the client's address in.
    pub forwarded_header: mayfly_core::net::ForwardedHeader,
    /// The client following the revocation feed (`mayfly:revocations:read` on the
    /// issuer's audience) and, with `report_usage`, reporting use (`mayfly:usage:write`).
    pub client_id: String,
    /// Its secret.
    pub client_secret: ClientSecret,
    /// Whether accepted requests are reported to the issuer.
    pub report_usage: bool,
    /// Longest silence of the revocation feed before verdicts stop.
    pub max_feed_silence: Duration,
    /// Clock-skew allowance for `exp` and `nbf` (the SDK's default: 30 s).
    pub leeway: Duration,
    /// HTTP client for the issuer (tests resolve the issuer's host to a port).
    pub http: Option<reqwest::Client>,
    /// Clock (tests).
    pub clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("issuer", &self.issuer)
            .field("routes_file", &self.routes_file)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Why verdicts are not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// The key set (and revocation backlog) has not been loaded yet.
    NoKeySet,
    /// The revocation feed has been silent for longer than the bound.
    FeedBehind,
}

impl NotReady {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoKeySet => "no_key_set",
            Self::FeedBehind => "feed_behind",
        }
    }
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoKeySet => "no key set yet",
            Self::FeedBehind => "revocation feed behind",
        })
    }
}

/// A running gateway: share it (it is an `Arc`) with [`handler::router`].
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    routes_file: PathBuf,
    routes: RwLock<Arc<RouteTable>>,
    verifier: RwLock<Option<Verifier>>,
    usage: RwLock<Option<UsageReporter>>,
    proxies: Vec<ipnet::IpNet>,
    max_feed_silence: Duration,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("routes_file", &self.inner.routes_file)
            .finish_non_exhaustive()
    }
}

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The route file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The route file is invalid.
    #[error(transparent)]
    Routes(#[from] RouteError),
    /// The SDK refused the configuration.
    #[error(transparent)]
    Sdk(#[from] mayfly_sdk::Error),
}

/// Reads and parses a route file.
///
/// # Errors
/// [`StartError`] when it cannot be read or parsed.
pub fn load_routes(path: &std::path::Path) -> Result<RouteTable, StartError> {
    let text = std::fs::read_to_string(path).map_err(|source| StartError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(RouteTable::parse(&text)?)
}

impl Gateway {
    /// Loads the route file and starts connecting to the issuer in the background
    /// (retrying until the key set and the revocation backlog are loaded); verdicts are
    /// 503 until then. Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// [`StartError`] when the route file is unusable.
    pub fn start(options: GatewayOptions) -> Result<Self, StartError> {
        let routes = load_routes(&options.routes_file)?;
        let gateway = Self {
            inner: Arc::new(Inner {
                routes_file: options.routes_file.clone(),
                routes: RwLock::new(Arc::new(routes.clone())),
                verifier: RwLock::new(None),
                usage: RwLock::new(None),
                proxies: options.proxies.clone(),
                max_feed_silence: options.max_feed_silence,
            }),
        };
        let weak = Arc::downgrade(&gateway.inner);
        tokio::spawn(async move {
            let mut wait = StdDuration::from_millis(200);
            loop {
                match connect(&options, &routes).await {
                    Ok((verifier, usage)) => {
                        let Some(inner) = weak.upgrade() else { return };
                        *inner.usage.write().unwrap_or_else(|e| e.into_inner()) = usage;
                        *inner.verifier.write().unwrap_or_else(|e| e.into_inner()) = Some(verifier);
                        tracing::info!(issuer = %options.issuer, "key set and revocation backlog loaded: ready");
                        return;
                    }
                    Err(e) => {
                        if weak.strong_count() == 0 {
                            return;
                        }
                        tracing::warn!(error = %e, "cannot load the key set yet; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(StdDuration::from_secs(10));
                    }
                }
            }
        });
        Ok(gateway)
    }

    /// The verifier, when verdicts can be given.
    ///
    /// # Errors
    /// [`NotReady`] naming why not.
    pub fn ready(&self) -> Result<Verifier, NotReady> {
        let verifier = self
            .inner
            .verifier
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(NotReady::NoKeySet)?;
        match verifier.revocation_feed_silence() {
            Some(silence) if silence <= self.inner.max_feed_silence => Ok(verifier),
            _ => Err(NotReady::FeedBehind),
        }
    }

    /// The current route table.
    pub fn routes(&self) -> Arc<RouteTable> {
        self.inner
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn usage(&self) -> Option<UsageReporter> {
        self.inner
            .usage
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The peer's address when it is a configured proxy.
    fn trusted_peer(&self, peer: SocketAddr) -> Option<IpAddr> {
        let ip = peer.ip().to_canonical();
        self.inner
            .proxies
            .iter()
            .any(|net| net.contains(&ip))
            .then_some(ip)
    }

    /// Rereads the route file and swaps the table in; requests in flight keep the one
    /// they hold. The audience and `resource_base` are fixed at start (the verifier is
    /// built for them), so a file changing them is refused.
    ///
    /// # Errors
    /// [`StartError`] when the new file is unusable; the old table stays.
    pub fn reload(&self) -> Result<(), StartError> {
        let fresh = load_routes(&self.inner.routes_file)?;
        let held = self.routes();
        if fresh.audience != held.audience || fresh.resource_base != held.resource_base {
            return Err(RouteError::Syntax(
                "audience and resource_base cannot change on reload; restart the gateway".into(),
            )
            .into());
        }
        *self.inner.routes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    /// Reloads the route file on every SIGHUP, for as long as the gateway lives.
    ///
    /// # Errors
    /// When the signal handler cannot be installed.
    pub fn reload_on_sighup(&self) -> std::io::Result<()> {
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let Some(inner) = weak.upgrade() else { return };
                let gateway = Gateway { inner };
                match gateway.reload() {
                    Ok(()) => tracing::info!("route file reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "route file reload refused; keeping the old table")
                    }
                }
            }
        });
        Ok(())
    }
}

async fn connect(
    options: &GatewayOptions,
    routes: &RouteTable,
) -> Result<(Verifier, Option<UsageReporter>), mayfly_sdk::Error> {
    let mut builder = Verifier::builder(options.issuer.clone(), routes.audience.clone())
        .revocation_feed(options.client_id.clone(), options.client_secret.clone())
        .trusted_proxies(options.proxies.clone())
        .forwarded_header(options.forwarded_header)
        .leeway(options.leeway);
    if let Some(base) = &routes.resource_base {
        builder = builder.resource_base(base.clone());
    }
    if let Some(http) = &options.http {
        builder = builder.http_client(http.clone());
    }
    if let Some(clock) = &options.clock {
        builder = builder.clock(clock.clone());
    }
    let verifier = builder.build().await?;
    let usage = if options.report_usage {
        let mut source = TokenSource::builder(options.issuer.clone())
            .client_secret(options.client_id.clone(), options.client_secret.clone())
            .audience(options.issuer.clone())
            .scopes([mayfly_sdk::USAGE_WRITE_SCOPE]);
        let mut reporter_http = None;
        if let Some(http) = &options.http {
            source = source.http_client(http.clone());
            reporter_http = Some(http.clone());
        }
        if let Some(clock) = &options.clock {
            source = source.clock(clock.clone());
        }
        let mut reporter = UsageReporter::builder(options.issuer.clone(), source.build()?);
        if let Some(http) = reporter_http {
            reporter = reporter.http_client(http);
        }
        if let Some(clock) = &options.clock {
            reporter = reporter.clock(clock.clone());
        }
        Some(reporter.start()?)
    } else {
        None
    };
    Ok((verifier, usage))
}
