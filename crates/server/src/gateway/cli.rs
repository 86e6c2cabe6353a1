//! `mayfly gateway` and `mayfly gateway check`: flags, and running the sidecar.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use mayfly_sdk::ClientSecret;

use super::{Gateway, GatewayOptions, StartError, load_routes};
use crate::config::{Config, parse_duration, parse_network};

/// `mayfly gateway` flags, beside its `--issuer` and `--forwarded-header`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// `check`: validate the route file and print the effective table.
    #[command(subcommand)]
    pub command: Option<GatewayCommand>,
    /// The route file (TOML).
    #[arg(long, env = "MAYFLY_GATEWAY_ROUTES", global = true)]
    pub routes: Option<PathBuf>,
    /// Where the gateway listens for the proxy's verdict requests.
    #[arg(long, env = "MAYFLY_GATEWAY_LISTEN", default_value = "127.0.0.1:8181")]
    pub bind: SocketAddr,
    /// Proxies allowed to ask for verdicts (their `X-Original-*`, `X-Forwarded-*` and
    /// forwarding headers are believed), comma-separated CIDRs; any other peer is refused.
    #[arg(long, env = "MAYFLY_GATEWAY_PROXIES", value_delimiter = ',', value_parser = parse_network, default_value = "127.0.0.1/32,::1/128")]
    pub proxies: Vec<ipnet::IpNet>,
    /// The gateway's client at the issuer: follows the revocation feed (needs
    /// `mayfly:revocations:read` on the issuer's audience).
    #[arg(long, env = "MAYFLY_GATEWAY_CLIENT_ID")]
    pub client_id: Option<String>,
    /// A file holding that client's secret (one line).
    #[arg(long, env = "MAYFLY_GATEWAY_CLIENT_SECRET_FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// Also report accepted requests to the issuer (the client then needs
    /// `mayfly:usage:write` on the issuer's audience too).
    #[arg(long, env = "MAYFLY_GATEWAY_REPORT_USAGE")]
    pub report_usage: bool,
    /// Longest silence of the revocation feed (the issuer sends a keep-alive every 15 s)
    /// before verdicts stop with 503.
    #[arg(long, env = "MAYFLY_GATEWAY_MAX_FEED_SILENCE", value_parser = parse_duration, default_value = "30s")]
    pub max_feed_silence: time::Duration,
    /// Clock-skew allowance for a token's `exp` and `nbf`.
    #[arg(long, env = "MAYFLY_GATEWAY_LEEWAY", value_parser = parse_duration, default_value = "30s")]
    pub leeway: time::Duration,
}

/// `mayfly gateway` subcommands.
#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Validate the route file and print the effective table (exit 1 if invalid).
    Check,
}

/// Why `mayfly gateway` stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A flag is missing or unusable.
    #[error("{0}")]
    Usage(String),
    /// The gateway could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Listening or serving failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// Runs `mayfly gateway` (until SIGTERM or Ctrl-C) or `mayfly gateway check`.
///
/// # Errors
/// [`RunError`] when the configuration is unusable or the listener fails.
pub async fn run(
    config: &Config,
    args: GatewayArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let routes_file = args
        .routes
        .ok_or_else(|| RunError::Usage("--routes (MAYFLY_GATEWAY_ROUTES) is required".into()))?;
    if let Some(GatewayCommand::Check) = args.command {
        let table = load_routes(&routes_file)?;
        println!("{table}");
        return Ok(());
    }
    let issuer = config
        .issuer
        .clone()
        .ok_or_else(|| RunError::Usage("--issuer (MAYFLY_ISSUER) is required".into()))?;
    let client_id = args.client_id.ok_or_else(|| {
        RunError::Usage("--client-id (MAYFLY_GATEWAY_CLIENT_ID) is required".into())
    })?;
    let secret_file = args.client_secret_file.ok_or_else(|| {
        RunError::Usage(
            "--client-secret-file (MAYFLY_GATEWAY_CLIENT_SECRET_FILE) is required".into(),
        )
    })?;
    let secret = std::fs::read_to_string(&secret_file).map_err(|source| RunError::Io {
        context: format!("reading {}", secret_file.display()),
        source,
    })?;
    let gateway = Gateway::start(GatewayOptions {
        issuer,
        routes_file,
        proxies: args.proxies,
        forwarded_header: config.forwarded_header,
        client_id,
        client_secret: ClientSecret::new(secret.trim()),
        report_usage: args.report_usage,
        max_feed_silence: args.max_feed_silence,
        leeway: args.leeway,
        http: None,
        clock: None,
    })?;
    let io = |context: &str| {
        let context = context.to_owned();
        move |source| RunError::Io { context, source }
    };
    gateway
        .reload_on_sighup()
        .map_err(io("installing the SIGHUP handler"))?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(io("binding the gateway listener"))?;
    tracing::info!(listen = %args.bind, "mayfly gateway listening");
    serve(listener, gateway, shutdown)
        .await
        .map_err(io("serving"))
}

/// Serves the gateway on `listener` (with the peer address each verdict needs).
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(
        listener,
        super::handler::router(gateway).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
