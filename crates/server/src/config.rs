//! Configuration: flags, each with a `MAYFLY_*` environment variable. The defaults make
//! `mayfly serve` work with no setup (SQLite file and a generated dev master key in the
//! working directory).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use mayfly_core::Audience;
use time::Duration;

/// Hard ceiling on any token lifetime, whatever the configuration says.
pub const TTL_CEILING: Duration = Duration::hours(1);

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(
        long,
        env = "MAYFLY_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Issuer URL: the `iss` of every token and the audience of the admin API.
    /// Default: `http://` + the listen address.
    #[arg(long, env = "MAYFLY_ISSUER", global = true)]
    pub issuer: Option<String>,

    /// Database URL: `sqlite://FILE` (created on first start) or `postgres://…`.
    #[arg(
        long,
        env = "MAYFLY_DATABASE_URL",
        default_value = "sqlite://mayfly.db",
        global = true
    )]
    pub database_url: String,

    /// File holding the master key (64 hex characters) that encrypts private signing keys.
    /// Created (mode 0600, with a warning) when missing. With SQLite it defaults to
    /// `mayfly.key` beside the database; with Postgres it must be named explicitly, since
    /// every replica needs the same key.
    #[arg(long, env = "MAYFLY_MASTER_KEY_FILE", global = true)]
    pub master_key_file: Option<PathBuf>,

    /// Default token lifetime, e.g. `300s`, `5m`.
    #[arg(long, env = "MAYFLY_TOKEN_TTL", default_value = "300s", value_parser = parse_duration, global = true)]
    pub token_ttl: Duration,

    /// Longest token lifetime any client or grant may get (at most 1h).
    #[arg(long, env = "MAYFLY_MAX_TOKEN_TTL", default_value = "3600s", value_parser = parse_duration, global = true)]
    pub max_token_ttl: Duration,

    /// Log format.
    #[arg(long, env = "MAYFLY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

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
        let beside = config(&["--database-url", "sqlite:///var/lib/mayfly/m.db"])
            .master_key_source()
            .unwrap();
        assert_eq!(beside.path, PathBuf::from("/var/lib/mayfly/mayfly.key"));
    }
}
