//! Configuration: flags, each with a `MAYFLY_*` environment variable. The defaults make
//! `mayfly serve` work with no setup (SQLite file and a generated dev master key in the
//! working directory).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use mayfly_core::Audience;
use mayfly_store::KeyPolicy;
use time::Duration;

/// Hard ceiling on any token lifetime, whatever the configuration says.
pub const TTL_CEILING: Duration = Duration::hours(1);

/// The least a retired key stays published beyond the maximum token TTL: covers the
/// verifiers' leeway past `exp` (30 s in mayfly-sdk), a replica that signs a few more
/// seconds with a key another replica just retired (it reloads within 5 s), and some
/// clock skew between them.
pub const MIN_CLOCK_SKEW: Duration = Duration::seconds(60);

/// The default allowance beyond the maximum token TTL before a retired key is removed.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::minutes(5);

/// Longest accepted key lifecycle period.
pub const MAX_KEY_PERIOD: Duration = Duration::days(365);

/// Longest interval between two reloads of the key set from the store (each process
/// also reloads right after its own key changes).
pub const MAX_KEY_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The server's settings: taken by `serve` and by the commands that open the database
/// themselves (`migrate`, `admin bootstrap`, `keys rewrap`), and by nothing else, so
/// every other command's help shows only its own options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server settings")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "MAYFLY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Issuer URL: the `iss` of every token and the audience of the admin API.
    /// Default: `http://` + the listen address.
    #[arg(long, env = "MAYFLY_ISSUER")]
    pub issuer: Option<String>,

    /// Database URL: `sqlite://FILE` (created on first start) or `postgres://…`.
    #[arg(
        long,
        env = "MAYFLY_DATABASE_URL",
        default_value = "sqlite://mayfly.db"
    )]
    pub database_url: String,

    /// File holding the master key (64 hex characters) that encrypts private signing keys.
    /// Created (mode 0600, with a warning) when missing. With SQLite it defaults to
    /// `mayfly.key` beside the database; with Postgres it must be named explicitly, since
    /// every replica needs the same key.
    #[arg(long, env = "MAYFLY_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// Default token lifetime, e.g. `300s`, `5m`.
    #[arg(long, env = "MAYFLY_TOKEN_TTL", default_value = "300s", value_parser = parse_duration)]
    pub token_ttl: Duration,

    /// Longest token lifetime any client or grant may get (at most 1h).
    #[arg(long, env = "MAYFLY_MAX_TOKEN_TTL", default_value = "3600s", value_parser = parse_duration)]
    pub max_token_ttl: Duration,

    /// How long a signing key signs before its successor takes over, e.g. `24h`.
    #[arg(long, env = "MAYFLY_KEY_LIFETIME", default_value = "24h", value_parser = parse_duration)]
    pub key_lifetime: Duration,

    /// How long a new key is published as `next` before it signs, e.g. `1h`. Must be more
    /// than twice the key set's cache age, so every cached key set holds a key before the
    /// first token signed with it, and shorter than the key lifetime.
    #[arg(long, env = "MAYFLY_KEY_PUBLISH_LEAD", default_value = "1h", value_parser = parse_duration)]
    pub key_publish_lead: Duration,

    /// How long resource servers may cache the key set (`Cache-Control: max-age`, less a
    /// random 0–10 % per response so caches do not expire together), e.g. `300s`.
    #[arg(long, env = "MAYFLY_KEY_SET_MAX_AGE", default_value = "300s", value_parser = parse_duration)]
    pub key_set_max_age: Duration,

    /// How long a retired key stays published, so tokens it signed still verify. At least
    /// the maximum token TTL + 60 s. Default: the maximum token TTL + 5 min.
    #[arg(long, env = "MAYFLY_KEY_RETIRE_HOLD", value_parser = parse_duration)]
    pub key_retire_hold: Option<Duration>,

    /// How long audit events are kept before a background task deletes them.
    #[arg(long, env = "MAYFLY_AUDIT_RETENTION", default_value = "90d", value_parser = parse_duration)]
    pub audit_retention: Duration,

    /// How long after a client is created its networks, audiences and endpoints are
    /// learnt without raising anomalies.
    #[arg(long, env = "MAYFLY_ANOMALY_LEARNING_PERIOD", default_value = "1h", value_parser = parse_duration)]
    pub anomaly_learning_period: Duration,

    /// How long a just-in-time access request waits for approvers before it expires,
    /// e.g. `1h`.
    #[arg(long, env = "MAYFLY_ACCESS_PENDING_TIMEOUT", default_value = "1h", value_parser = parse_duration)]
    pub access_pending_timeout: Duration,

    /// URL that receives anomaly and access events as signed JSON POSTs (none: no webhook).
    #[arg(long, env = "MAYFLY_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// File holding the webhook's HMAC secret (at least 32 characters); required with
    /// --webhook-url.
    #[arg(long, env = "MAYFLY_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,

    /// Consecutive failed password logins that lock a user out.
    #[arg(long, env = "MAYFLY_PASSWORD_MAX_FAILURES", default_value_t = 5)]
    pub password_max_failures: u32,

    /// How long a locked-out user stays locked, e.g. `15m`.
    #[arg(long, env = "MAYFLY_PASSWORD_LOCKOUT", default_value = "15m", value_parser = parse_duration)]
    pub password_lockout: Duration,

    /// Absolute lifetime of a refresh-token family (one login), e.g. `7d`: after it the
    /// user logs in again, however often the tokens were refreshed.
    #[arg(long, env = "MAYFLY_REFRESH_TOKEN_LIFETIME", default_value = "7d", value_parser = parse_duration)]
    pub refresh_token_lifetime: Duration,

    /// Idle timeout of a refresh token, e.g. `24h`: unused that long, it stops working.
    #[arg(long, env = "MAYFLY_REFRESH_TOKEN_IDLE", default_value = "24h", value_parser = parse_duration)]
    pub refresh_token_idle: Duration,

    /// Log format.
    #[arg(long, env = "MAYFLY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Threads serving requests (the async runtime's workers); by default one per core.
    /// Where other busy processes share the cores (a sidecar, a database, a load
    /// generator), fewer spend less CPU per request on switching threads: BENCHMARKS.md
    /// measures one worker on two shared cores.
    #[arg(long, env = "MAYFLY_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers are believed,
    /// comma-separated CIDRs (e.g. `10.0.0.0/8,192.168.1.10`). From any other peer those
    /// headers are ignored and the socket address is the client's.
    #[arg(long, env = "MAYFLY_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// The one header the trusted proxies write the forwarding chain in:
    /// `x-forwarded-for` or `forwarded` (RFC 7239). The other is ignored; a chain with a
    /// malformed or `unknown` hop is refused with 400.
    #[arg(long, env = "MAYFLY_FORWARDED_HEADER", default_value = "x-forwarded-for", value_parser = parse_forwarded_header)]
    pub forwarded_header: mayfly_core::net::ForwardedHeader,

    /// Serve `/metrics` on this address only (e.g. `127.0.0.1:9090`), not on `--listen`.
    /// Default: on `--listen`.
    #[arg(long, env = "MAYFLY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Require a server nonce in DPoP proofs at the token endpoint (RFC 9449 §8): a
    /// proof without a current one is answered `use_dpop_nonce` with a `DPoP-Nonce`
    /// header. Nonces are derived from the master key and a 5-minute window, so every
    /// replica accepts every other's.
    #[arg(long, env = "MAYFLY_DPOP_NONCE")]
    pub dpop_nonce: bool,

    /// Bounds on what callers can make the service hold: connections, password work.
    #[command(flatten)]
    pub limits: Limits,
}

/// Bounds on the resources callers can make the service hold, so that no client,
/// credential or connection can take issuance down for the others.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Open connections at most; beyond it a new connection is answered 503 and closed.
    /// Lowered at start to fit the open-files limit (less room for the database pool,
    /// files and the listener).
    #[arg(long, env = "MAYFLY_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// How long a client may take to send a request's headers (slowloris), e.g. `10s`;
    /// also how long a kept-alive connection waits for its next request.
    #[arg(long, env = "MAYFLY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a client may take to send a request's body, e.g. `10s`.
    #[arg(long, env = "MAYFLY_BODY_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// How long a connection may move no bytes at all before it is closed (once its
    /// response, if any, is done), e.g. `60s`.
    #[arg(long, env = "MAYFLY_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Threads hashing passwords (argon2id, 19 MiB each, allocated once): memory for
    /// password work is bounded by this many times 19 MiB, whatever the load.
    #[arg(long, env = "MAYFLY_PASSWORD_WORKERS", default_value_t = 2)]
    pub password_workers: usize,

    /// Password checks waiting for a worker at most; beyond it a login is answered 503
    /// with `Retry-After` at once.
    #[arg(long, env = "MAYFLY_PASSWORD_QUEUE", default_value_t = 32)]
    pub password_queue: usize,

    /// Failed logins (any username) allowed from one address (IPv6: one /64) within
    /// `--password-lockout`; beyond it logins from there are answered 429.
    #[arg(long, env = "MAYFLY_LOGIN_FAILURES_PER_ADDRESS", default_value_t = 50)]
    pub login_failures_per_address: usize,

    /// How long the repeats of a throttled refusal from one address are counted before
    /// one summary event records them, e.g. `10s`; the first of each window is written at
    /// once. A crash loses at most one window's count.
    #[arg(long, env = "MAYFLY_AUDIT_REPEAT_WINDOW", default_value = "10s", value_parser = parse_duration)]
    pub audit_repeat_window: Duration,

    /// How long a repeated throttled refusal (a 429 within the same window from the same
    /// place) waits before it is answered, e.g. `1s`; `0s` answers at once. A timer, no
    /// work: a caller retrying at full speed gets one refusal per connection per hold.
    #[arg(long, env = "MAYFLY_THROTTLED_HOLD", default_value = "1s", value_parser = parse_duration)]
    pub throttled_hold: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::seconds(10),
            body_read_timeout: Duration::seconds(10),
            idle_timeout: Duration::seconds(60),
            password_workers: 2,
            password_queue: 32,
            login_failures_per_address: 50,
            audit_repeat_window: Duration::seconds(10),
            throttled_hold: Duration::seconds(1),
        }
    }
}

impl Limits {
    /// Checks the limits.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first setting out of range.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(invalid(
                "--max-connections / MAYFLY_MAX_CONNECTIONS",
                "must be at least 1",
            ));
        }
        let in_range =
            |d: Duration| (Duration::MILLISECOND * 100..=Duration::hours(1)).contains(&d);
        for (setting, value) in [
            (
                "--header-read-timeout / MAYFLY_HEADER_READ_TIMEOUT",
                self.header_read_timeout,
            ),
            (
                "--body-read-timeout / MAYFLY_BODY_READ_TIMEOUT",
                self.body_read_timeout,
            ),
            ("--idle-timeout / MAYFLY_IDLE_TIMEOUT", self.idle_timeout),
            (
                "--audit-repeat-window / MAYFLY_AUDIT_REPEAT_WINDOW",
                self.audit_repeat_window,
            ),
        ] {
            if !in_range(value) {
                return Err(invalid(setting, "must be between 100ms and 1h"));
            }
        }
        if !(Duration::ZERO..=Duration::seconds(10)).contains(&self.throttled_hold) {
            return Err(invalid(
                "--throttled-hold / MAYFLY_THROTTLED_HOLD",
                "must be between 0s and 10s",
            ));
        }
        if !(1..=64).contains(&self.password_workers) {
            return Err(invalid(
                "--password-workers / MAYFLY_PASSWORD_WORKERS",
                "must be between 1 and 64",
            ));
        }
        if self.password_queue > 100_000 {
            return Err(invalid(
                "--password-queue / MAYFLY_PASSWORD_QUEUE",
                "must be at most 100000",
            ));
        }
        if self.login_failures_per_address == 0 {
            return Err(invalid(
                "--login-failures-per-address / MAYFLY_LOGIN_FAILURES_PER_ADDRESS",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Parses `--forwarded-header`.
///
/// # Errors
/// A message naming the accepted values.
pub fn parse_forwarded_header(text: &str) -> Result<mayfly_core::net::ForwardedHeader, String> {
    use mayfly_core::net::ForwardedHeader;
    [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded]
        .into_iter()
        .find(|h| h.name().eq_ignore_ascii_case(text.trim()))
        .ok_or_else(|| format!("{text:?}: expected x-forwarded-for or forwarded"))
}

/// Parses one CIDR (or a single address) for `--trusted-proxies`.
///
/// # Errors
/// A message naming the value.
pub fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    mayfly_core::net::parse_networks(&[text])
        .ok()
        .and_then(|mut v| v.pop())
        .ok_or_else(|| format!("{text:?} is not a CIDR or an IP address"))
}

/// Where the webhook posts, and the HMAC secret it signs with.
pub type WebhookTarget = (reqwest::Url, zeroize::Zeroizing<Vec<u8>>);

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration mistake, naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An invalid value.
    #[error("invalid {setting}: {reason}")]
    Invalid {
        /// The flag and variable.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

/// Where the master key comes from, once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeySource {
    /// The key file.
    pub path: PathBuf,
    /// Whether a missing file may be generated.
    pub create_if_missing: bool,
}

impl Config {
    /// What `mayfly` runs with when given no flags and no `MAYFLY_*` variables (the
    /// environment is not read). The end-to-end tests start from it, so they run
    /// production's settings except where a test says otherwise.
    ///
    /// # Errors
    /// clap's, if a default did not parse (a bug the unit tests catch).
    pub fn defaults() -> Result<Self, clap::Error> {
        use clap::{Args as _, FromArgMatches as _};
        let command = Self::augment_args(clap::Command::new("mayfly"))
            .mut_args(|arg| arg.env(None::<&'static str>));
        Self::from_arg_matches(&command.try_get_matches_from(["mayfly"])?)
    }

    /// The issuer URL, defaulted and validated.
    ///
    /// # Errors
    /// [`ConfigError`] when it is not an http(s) URL or ends with `/`.
    pub fn issuer(&self) -> Result<String, ConfigError> {
        let issuer = self
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen));
        const SETTING: &str = "--issuer / MAYFLY_ISSUER";
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(invalid(SETTING, "must start with https:// or http://"));
        }
        if issuer.ends_with('/') || issuer.contains(['?', '#']) {
            return Err(invalid(
                SETTING,
                "must not end with '/' or carry a query or fragment (RFC 8414 §2)",
            ));
        }
        Audience::parse(&issuer).map_err(|e| invalid(SETTING, e.to_string()))?;
        Ok(issuer)
    }

    /// Checks the lifetimes.
    ///
    /// # Errors
    /// [`ConfigError`] when a lifetime is zero, above the ceiling, or default > max.
    pub fn check_ttls(&self) -> Result<(), ConfigError> {
        if self.max_token_ttl <= Duration::ZERO || self.max_token_ttl > TTL_CEILING {
            return Err(invalid(
                "--max-token-ttl / MAYFLY_MAX_TOKEN_TTL",
                "must be between 1s and 3600s",
            ));
        }
        if self.token_ttl <= Duration::ZERO || self.token_ttl > self.max_token_ttl {
            return Err(invalid(
                "--token-ttl / MAYFLY_TOKEN_TTL",
                "must be between 1s and the maximum token TTL",
            ));
        }
        Ok(())
    }

    /// Checks that the key lifecycle periods fit together: a key is published for longer
    /// than any cache may hold the key set before it signs, and stays published for
    /// longer than any token it signed lives. Call after [`Config::check_ttls`].
    ///
    /// # Errors
    /// [`ConfigError`] naming the first setting that does not fit.
    pub fn check_key_periods(&self) -> Result<(), ConfigError> {
        const LIFETIME: &str = "--key-lifetime / MAYFLY_KEY_LIFETIME";
        const LEAD: &str = "--key-publish-lead / MAYFLY_KEY_PUBLISH_LEAD";
        const MAX_AGE: &str = "--key-set-max-age / MAYFLY_KEY_SET_MAX_AGE";
        const HOLD: &str = "--key-retire-hold / MAYFLY_KEY_RETIRE_HOLD";
        // Bounded so that time arithmetic on them can never overflow.
        let in_range = |d: Duration| (Duration::SECOND..=MAX_KEY_PERIOD).contains(&d);
        for (setting, value) in [
            (LIFETIME, self.key_lifetime),
            (LEAD, self.key_publish_lead),
            (MAX_AGE, self.key_set_max_age),
            (HOLD, self.key_retire_hold()),
        ] {
            if !in_range(value) {
                return Err(invalid(setting, "must be between 1s and 365d"));
            }
        }
        if self.key_set_max_age * 2 >= self.key_publish_lead {
            return Err(invalid(
                MAX_AGE,
                format!(
                    "{} must be less than half the key publish lead ({}), so cached key sets know a key before it signs",
                    secs(self.key_set_max_age),
                    secs(self.key_publish_lead)
                ),
            ));
        }
        if self.key_publish_lead >= self.key_lifetime {
            return Err(invalid(
                LEAD,
                format!(
                    "{} must be shorter than the key lifetime ({})",
                    secs(self.key_publish_lead),
                    secs(self.key_lifetime)
                ),
            ));
        }
        let least = self.max_token_ttl + MIN_CLOCK_SKEW;
        if self.key_retire_hold() < least {
            return Err(invalid(
                HOLD,
                format!(
                    "{} must be at least the maximum token TTL plus {} ({}), so tokens outlive no key",
                    secs(self.key_retire_hold()),
                    secs(MIN_CLOCK_SKEW),
                    secs(least)
                ),
            ));
        }
        Ok(())
    }

    /// Checks the password lockout and refresh-token settings.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first setting out of range.
    pub fn check_user_logins(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.password_max_failures) {
            return Err(invalid(
                "--password-max-failures / MAYFLY_PASSWORD_MAX_FAILURES",
                "must be between 1 and 1000",
            ));
        }
        let in_range = |d: Duration| (Duration::SECOND..=MAX_KEY_PERIOD).contains(&d);
        if !in_range(self.access_pending_timeout) {
            return Err(invalid(
                "--access-pending-timeout / MAYFLY_ACCESS_PENDING_TIMEOUT",
                "must be between 1s and 365d",
            ));
        }
        if !in_range(self.password_lockout) {
            return Err(invalid(
                "--password-lockout / MAYFLY_PASSWORD_LOCKOUT",
                "must be between 1s and 365d",
            ));
        }
        if !in_range(self.refresh_token_lifetime) {
            return Err(invalid(
                "--refresh-token-lifetime / MAYFLY_REFRESH_TOKEN_LIFETIME",
                "must be between 1s and 365d",
            ));
        }
        if self.refresh_token_idle < Duration::SECOND
            || self.refresh_token_idle > self.refresh_token_lifetime
        {
            return Err(invalid(
                "--refresh-token-idle / MAYFLY_REFRESH_TOKEN_IDLE",
                "must be between 1s and the refresh-token lifetime",
            ));
        }
        Ok(())
    }

    /// How long a retired key stays published, defaulted.
    pub fn key_retire_hold(&self) -> Duration {
        self.key_retire_hold
            .unwrap_or(self.max_token_ttl + DEFAULT_CLOCK_SKEW)
    }

    /// The key lifecycle periods (check them first with [`Config::check_key_periods`]).
    pub fn key_policy(&self) -> KeyPolicy {
        KeyPolicy {
            lifetime: self.key_lifetime,
            publish_lead: self.key_publish_lead,
            retire_hold: self.key_retire_hold(),
        }
    }

    /// How often each process reloads the key set from the store and checks whether a
    /// lifecycle step is due: a quarter of the cache age, at most
    /// [`MAX_KEY_RELOAD_INTERVAL`], so a replica serves a newly published key well
    /// within one cache age.
    pub fn key_reload_interval(&self) -> std::time::Duration {
        let quarter = self.key_set_max_age / 4;
        std::time::Duration::try_from(quarter)
            .unwrap_or(MAX_KEY_RELOAD_INTERVAL)
            .min(MAX_KEY_RELOAD_INTERVAL)
    }

    /// Checks that the database URL names a supported backend.
    ///
    /// # Errors
    /// [`ConfigError`] for any other scheme.
    pub fn check_database_url(&self) -> Result<(), ConfigError> {
        if self.is_postgres() || self.database_url.starts_with("sqlite:") {
            Ok(())
        } else {
            Err(invalid(
                "--database-url / MAYFLY_DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://",
            ))
        }
    }

    /// Whether the database is Postgres.
    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
    }

    /// The webhook's URL and secret, when one is configured.
    ///
    /// # Errors
    /// [`ConfigError`] for a URL that is not http(s), a missing or unreadable secret
    /// file, or a secret shorter than 32 characters.
    pub fn webhook(&self) -> Result<Option<WebhookTarget>, ConfigError> {
        const URL: &str = "--webhook-url / MAYFLY_WEBHOOK_URL";
        const SECRET: &str = "--webhook-secret-file / MAYFLY_WEBHOOK_SECRET_FILE";
        let Some(url) = &self.webhook_url else {
            return Ok(None);
        };
        let url = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| invalid(URL, "must be an http(s) URL"))?;
        let path = self
            .webhook_secret_file
            .as_ref()
            .ok_or_else(|| invalid(SECRET, "required with a webhook URL"))?;
        let raw = zeroize::Zeroizing::new(
            std::fs::read(path).map_err(|e| invalid(SECRET, format!("cannot read: {e}")))?,
        );
        let secret = zeroize::Zeroizing::new(raw.trim_ascii().to_vec());
        if secret.len() < 32 {
            return Err(invalid(SECRET, "the secret must be at least 32 characters"));
        }
        Ok(Some((url, secret)))
    }

    /// Resolves the master key file: explicit, or (SQLite only) `mayfly.key` beside the DB.
    /// A missing file is generated on first start; a replica given a different key fails
    /// at start-up, since the stored signing keys do not decrypt.
    ///
    /// # Errors
    /// [`ConfigError`] when Postgres is used without an explicit key file.
    pub fn master_key_source(&self) -> Result<MasterKeySource, ConfigError> {
        match (&self.master_key_file, self.is_postgres()) {
            (Some(path), _) => Ok(MasterKeySource {
                path: path.clone(),
                create_if_missing: true,
            }),
            (None, true) => Err(invalid(
                "--master-key-file / MAYFLY_MASTER_KEY_FILE",
                "required with Postgres (create one with: openssl rand -hex 32 > mayfly.key)",
            )),
            (None, false) => Ok(MasterKeySource {
                path: sqlite_dir(&self.database_url).join("mayfly.key"),
                create_if_missing: true,
            }),
        }
    }
}

impl Config {
    /// The file a `sqlite:` database URL names; `None` for Postgres and in-memory
    /// databases. Commands other than `serve` refuse to create it (a second database
    /// in the wrong directory would hold credentials the running server never sees).
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        if !self.database_url.starts_with("sqlite:") {
            return None;
        }
        let path = self
            .database_url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:")
            .split('?')
            .next()
            .unwrap_or_default();
        (!path.is_empty() && path != ":memory:" && !self.database_url.contains("mode=memory"))
            .then(|| PathBuf::from(path))
    }
}

/// The directory of a `sqlite:` URL's file ("." for a bare file name or memory).
fn sqlite_dir(url: &str) -> PathBuf {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    match Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A duration for messages, in whole seconds.
fn secs(d: Duration) -> String {
    format!("{}s", d.whole_seconds())
}

/// Parses `300`, `300s`, `5m`, `1h`, `2d` into a duration.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 300s, 5m, 1h or 2d"))?;
    let seconds = match unit {
        "" | "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(|| format!("{text:?} is not a duration like 300s, 5m, 1h or 2d"))?;
    Ok(Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        config: Config,
    }

    fn config(args: &[&str]) -> Config {
        Probe::try_parse_from(std::iter::once("mayfly").chain(args.iter().copied()))
            .unwrap()
            .config
    }

    #[test]
    fn defaults_are_the_flags_defaults_without_the_environment() {
        let defaults = Config::defaults().unwrap();
        assert_eq!(defaults.listen, config(&[]).listen);
        assert_eq!(defaults.token_ttl, Duration::seconds(300));
        assert_eq!(defaults.key_set_max_age, Duration::seconds(300));
        assert_eq!(
            defaults.limits.max_connections,
            Limits::default().max_connections
        );
    }

    #[test]
    fn workers_are_one_per_core_unless_set_within_range() {
        assert_eq!(config(&[]).workers, None);
        assert_eq!(config(&["--workers", "1"]).workers, Some(1));
        for bad in ["0", "1025", "-1", "two"] {
            let parsed = Probe::try_parse_from(["mayfly", "--workers", bad]);
            assert!(parsed.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300"), Ok(Duration::seconds(300)));
        assert_eq!(parse_duration("300s"), Ok(Duration::seconds(300)));
        assert_eq!(parse_duration("5m"), Ok(Duration::minutes(5)));
        assert_eq!(parse_duration("1h"), Ok(Duration::hours(1)));
        assert_eq!(parse_duration("2d"), Ok(Duration::days(2)));
        for bad in ["", "s", "5x", "-5s", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_work_with_no_setup() {
        let c = config(&[]);
        assert_eq!(c.issuer().unwrap(), "http://127.0.0.1:8080");
        c.check_ttls().unwrap();
        c.check_key_periods().unwrap();
        c.check_user_logins().unwrap();
        assert_eq!(c.password_max_failures, 5);
        assert_eq!(c.password_lockout, Duration::minutes(15));
        assert_eq!(
            (c.refresh_token_lifetime, c.refresh_token_idle),
            (Duration::days(7), Duration::hours(24))
        );
        assert_eq!(
            c.key_policy(),
            KeyPolicy {
                lifetime: Duration::hours(24),
                publish_lead: Duration::hours(1),
                retire_hold: Duration::hours(1) + Duration::minutes(5),
            }
        );
        assert_eq!(c.key_reload_interval(), std::time::Duration::from_secs(5));
        assert_eq!(
            c.master_key_source().unwrap(),
            MasterKeySource {
                path: PathBuf::from("./mayfly.key"),
                create_if_missing: true
            }
        );
    }

    #[test]
    fn invalid_settings_are_named() {
        let err = config(&["--issuer", "ftp://x"])
            .issuer()
            .unwrap_err()
            .to_string();
        assert!(err.contains("MAYFLY_ISSUER"), "{err}");
        assert!(config(&["--issuer", "https://x/"]).issuer().is_err());
        let err = config(&["--max-token-ttl", "2h"])
            .check_ttls()
            .unwrap_err()
            .to_string();
        assert!(err.contains("MAYFLY_MAX_TOKEN_TTL"), "{err}");
        assert!(
            config(&["--token-ttl", "10m", "--max-token-ttl", "5m"])
                .check_ttls()
                .is_err()
        );
        let err = config(&["--database-url", "postgres://localhost/db"])
            .master_key_source()
            .unwrap_err()
            .to_string();
        assert!(err.contains("MAYFLY_MASTER_KEY_FILE"), "{err}");
        let pg = config(&[
            "--database-url",
            "postgres://h/db",
            "--master-key-file",
            "/k",
        ])
        .master_key_source()
        .unwrap();
        assert!(pg.create_if_missing && pg.path == Path::new("/k"));
        for (args, needle) in [
            (&["--key-set-max-age", "30m"][..], "MAYFLY_KEY_SET_MAX_AGE"),
            (&["--key-set-max-age", "0s"][..], "MAYFLY_KEY_SET_MAX_AGE"),
            (
                &["--key-lifetime", "99999999999999d"][..],
                "MAYFLY_KEY_LIFETIME",
            ),
            (&["--key-retire-hold", "366d"][..], "MAYFLY_KEY_RETIRE_HOLD"),
            (
                &["--key-lifetime", "365d", "--key-publish-lead", "364d"][..],
                "",
            ),
            (
                &["--key-publish-lead", "10m", "--key-set-max-age", "5m"][..],
                "MAYFLY_KEY_SET_MAX_AGE",
            ),
            (
                &["--key-publish-lead", "24h"][..],
                "MAYFLY_KEY_PUBLISH_LEAD",
            ),
            (
                &[
                    "--key-lifetime",
                    "30m",
                    "--key-set-max-age",
                    "60s",
                    "--key-publish-lead",
                    "5m",
                ][..],
                "",
            ),
            (&["--key-retire-hold", "30m"][..], "MAYFLY_KEY_RETIRE_HOLD"),
            (
                &["--key-retire-hold", "3600s"][..],
                "MAYFLY_KEY_RETIRE_HOLD",
            ),
            (&["--key-retire-hold", "3660s"][..], ""),
            (
                &[
                    "--max-token-ttl",
                    "5s",
                    "--token-ttl",
                    "5s",
                    "--key-retire-hold",
                    "65s",
                ][..],
                "",
            ),
        ] {
            let result = config(args).check_key_periods();
            match result {
                Ok(()) => assert_eq!(needle, "", "{args:?} was accepted"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(!needle.is_empty() && e.contains(needle), "{args:?}: {e}");
                    assert!(!e.contains('\n'), "one line: {e}");
                }
            }
        }
        for (args, needle) in [
            (
                &["--password-max-failures", "0"][..],
                "MAYFLY_PASSWORD_MAX_FAILURES",
            ),
            (&["--password-lockout", "0s"][..], "MAYFLY_PASSWORD_LOCKOUT"),
            (
                &["--refresh-token-idle", "8d"][..],
                "MAYFLY_REFRESH_TOKEN_IDLE",
            ),
            (
                &["--refresh-token-lifetime", "366d"][..],
                "MAYFLY_REFRESH_TOKEN_LIFETIME",
            ),
        ] {
            let e = config(args).check_user_logins().unwrap_err().to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
        let quick = config(&[
            "--key-set-max-age",
            "1s",
            "--key-publish-lead",
            "3s",
            "--key-lifetime",
            "6s",
        ]);
        quick.check_key_periods().unwrap();
        assert_eq!(
            quick.key_reload_interval(),
            std::time::Duration::from_millis(250)
        );
        let beside = config(&["--database-url", "sqlite:///var/lib/mayfly/m.db"])
            .master_key_source()
            .unwrap();
        assert_eq!(beside.path, PathBuf::from("/var/lib/mayfly/mayfly.key"));
    }

    #[test]
    fn webhook_needs_an_http_url_and_a_long_secret() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "too-short\n").unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, "0123456789abcdef0123456789abcdef\n").unwrap();
        let (short, good) = (short.to_str().unwrap(), good.to_str().unwrap());

        assert!(config(&[]).webhook().unwrap().is_none());
        let no_secret = config(&["--webhook-url", "https://hooks.example.com/x"]).webhook();
        assert!(
            no_secret
                .unwrap_err()
                .to_string()
                .contains("MAYFLY_WEBHOOK_SECRET_FILE")
        );
        let weak = config(&[
            "--webhook-url",
            "https://h.example/x",
            "--webhook-secret-file",
            short,
        ]);
        assert!(
            weak.webhook()
                .unwrap_err()
                .to_string()
                .contains("at least 32")
        );
        let ftp = config(&[
            "--webhook-url",
            "ftp://h.example/x",
            "--webhook-secret-file",
            good,
        ]);
        assert!(ftp.webhook().unwrap_err().to_string().contains("http(s)"));
        let (url, secret) = config(&[
            "--webhook-url",
            "https://h.example/x",
            "--webhook-secret-file",
            good,
        ])
        .webhook()
        .unwrap()
        .unwrap();
        assert_eq!(url.as_str(), "https://h.example/x");
        assert_eq!(
            secret.as_slice(),
            b"0123456789abcdef0123456789abcdef",
            "trailing newline trimmed"
        );
    }
}
