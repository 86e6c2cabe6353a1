//! The `mayfly` binary.

use std::process::ExitCode;
use std::sync::Arc;

use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser as _;
use mayfly_server::admin::{Actor, ClientSpec, CreatedClient, GrantSpec};
use mayfly_server::cli::{
    AccessCommand, AccessPolicyCommand, AdminCommand, AudienceCommand, Cli, ClientCommand, Command,
    GrantCommand, KeysCommand, LoginArgs, ScopeCommand, TokenArgs, UserCommand,
};
use mayfly_server::clock::{Clock, SystemClock};
use mayfly_server::config::{Config, MasterKeySource};
use mayfly_server::keys::rotation::{self, RotateOptions, RotateOutcome, Rotator};
use mayfly_server::keys::{self, KeyInfo, Keyring, MasterKey};
use mayfly_server::state::AppState;
use mayfly_server::{http, telemetry};
use mayfly_store::Subject;
use serde_json::json;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mayfly: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mayfly: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error chain on one line, skipping causes a wrapper already printed (sqlx errors
/// repeat their source in their own message).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => {
            let store = open_store(&cli.config).await?;
            tracing::info!(backend = ?store.backend(), "migrations applied");
            Ok(())
        }
        Command::Openapi => {
            print!("{}", http::openapi::document());
            Ok(())
        }
        Command::Admin { command } => admin(&cli.config, command).await,
        Command::Keys { command } => keys_command(&cli.config, command).await,
        Command::Audit { command } => audit_command(&cli.config, command).await,
        Command::Login(args) => login(&cli.config, args).await,
        Command::Token(args) => token(args).await,
        Command::Gateway(args) => {
            mayfly_server::gateway::cli::run(&cli.config, args, shutdown_signal())
                .await
                .context("mayfly gateway")
        }
        Command::Access {
            token_file,
            command,
        } => access(token_file, command).await,
        Command::Logout { token_file } => {
            let path = match token_file {
                Some(path) => path,
                None => mayfly_server::login::default_token_file()?,
            };
            mayfly_server::login::logout(&path).await?;
            eprintln!("mayfly: logged out; {} deleted", path.display());
            Ok(())
        }
    }
}

async fn login(config: &Config, args: LoginArgs) -> anyhow::Result<()> {
    use mayfly_server::login::{self, Client};
    let issuer = config.issuer()?;
    let secret = match &args.client_secret_file {
        Some(path) => zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => zeroize::Zeroizing::new(std::env::var("MAYFLY_CLIENT_SECRET").map_err(|_| {
            anyhow::anyhow!("set MAYFLY_CLIENT_SECRET or --client-secret-file for the client")
        })?),
    };
    let path = match &args.token_file {
        Some(path) => path.clone(),
        None => login::default_token_file()?,
    };
    let username = match args.username {
        Some(name) => name,
        None => login::read_visible("Username: ")?,
    };
    let password = login::read_secret("Password: ")?;
    let client = Client::new(&issuer, &args.client_id, secret)?;
    let response = client
        .login(&username, &password, &args.scope, args.resource.as_deref())
        .await?;
    if args.print {
        println!("{}", response.access_token);
        return Ok(());
    }
    let file = client.file(&response, args.resource.as_deref(), SystemClock.now());
    login::save(&path, &file)?;
    eprintln!(
        "mayfly: logged in as {username}; tokens stored in {} ({}); `mayfly token` prints one",
        path.display(),
        if file.refresh_token.is_some() {
            "refreshable"
        } else {
            "not refreshable: log in again when it expires"
        }
    );
    Ok(())
}

async fn access(
    token_file: Option<std::path::PathBuf>,
    command: AccessCommand,
) -> anyhow::Result<()> {
    use mayfly_server::access_cli::Api;
    let path = match token_file {
        Some(path) => path,
        None => mayfly_server::login::default_token_file()?,
    };
    let api = Api::new(&path);
    let now = SystemClock.now();
    let answer = match command {
        AccessCommand::Request {
            audience,
            scopes,
            duration,
            reason,
            break_glass,
        } => {
            api.post(
                "/v1/access-requests",
                &json!({
                    "audience": audience, "scopes": scopes, "duration_secs": duration.whole_seconds(),
                    "reason": reason, "break_glass": break_glass,
                }),
                now,
            )
            .await?
        }
        AccessCommand::List { state } => {
            let query = state.map(|s| format!("?state={s}")).unwrap_or_default();
            api.get(&format!("/v1/access-requests{query}"), now).await?
        }
        AccessCommand::Show { id } => api.get(&format!("/v1/access-requests/{id}"), now).await?,
        AccessCommand::Cancel { id, comment } => {
            api.post(
                &format!("/v1/access-requests/{id}/cancel"),
                &json!({ "comment": comment }),
                now,
            )
            .await?
        }
        AccessCommand::Queue { state } => {
            api.get(&format!("/admin/v1/access-requests?state={state}"), now)
                .await?
        }
        AccessCommand::Approve { id, comment } => {
            api.post(
                &format!("/admin/v1/access-requests/{id}/approve"),
                &json!({ "comment": comment }),
                now,
            )
            .await?
        }
        AccessCommand::Deny { id, comment } => {
            api.post(
                &format!("/admin/v1/access-requests/{id}/deny"),
                &json!({ "comment": comment }),
                now,
            )
            .await?
        }
    };
    print_json(&answer);
    Ok(())
}

async fn token(args: TokenArgs) -> anyhow::Result<()> {
    use mayfly_server::login;
    let path = match &args.token_file {
        Some(path) => path.clone(),
        None => login::default_token_file()?,
    };
    let token = login::current_token(&path, args.min_valid, SystemClock.now()).await?;
    println!("{}", token.as_str());
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let started = AppState::start(config, Arc::new(SystemClock))
        .await
        .context("starting")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    // The bound address: with port 0 the system picked one.
    let bound = listener.local_addr().unwrap_or(listen);
    tracing::info!(
        listen = %bound,
        issuer = %started.state.issuer,
        backend = ?started.state.store.backend(),
        kid = %started.state.keyring.current().active.id(),
        "mayfly ready"
    );
    let rotation = rotation::spawn(&started.state);
    let retention = mayfly_server::audit::spawn_retention(&started.state);
    let one_time_ids = mayfly_server::dpop::spawn_pruning(&started.state);
    let refresh_pruning = mayfly_server::grant::refresh::spawn_pruning(&started.state);
    let access_expiry = mayfly_server::admin::access::spawn_expiry(&started.state);
    let metrics = match started.state.config.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --metrics-listen {addr}"))?;
            tracing::info!(listen = %addr, "metrics served apart");
            Some(http::metrics::serve_apart(listener, started.state.clone()))
        }
        None => None,
    };
    let served = http::serve(listener, started.state, shutdown_signal()).await;
    if let Some(metrics) = metrics {
        metrics.abort();
        let _ = metrics.await;
    }
    // The task holds the state (and its audit sink): stop it before draining the audit.
    rotation.abort();
    let _ = rotation.await;
    retention.abort();
    one_time_ids.abort();
    refresh_pruning.abort();
    access_expiry.abort();
    served.context("serving")?;
    // Every sink is gone with the router: the writer drains the queue and stops.
    started.audit_writer.await.context("audit writer")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining open requests");
}

async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn mayfly_store::Store>> {
    let store = mayfly_store::connect(&config.database_url)
        .await
        .context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

fn created_client_json(created: &CreatedClient) -> serde_json::Value {
    json!({ "client_id": created.client.id, "client_secret": created.secret.expose() })
}

async fn admin(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let actor = Actor {
        store: store.as_ref(),
        id: "cli".into(),
        now: SystemClock.now(),
        caller: mayfly_server::admin::Caller::trusted(),
    };
    match command {
        AdminCommand::Bootstrap => {
            let issuer = config.issuer()?;
            let created = actor.bootstrap(&issuer).await?;
            print_json(&created_client_json(&created));
        }
        AdminCommand::Audience {
            command:
                AudienceCommand::Create {
                    uri,
                    description,
                    scopes,
                },
        } => {
            let (audience, scopes) = actor.create_audience(&uri, &description, &scopes).await?;
            print_json(&json!({
                "id": audience.id,
                "uri": audience.uri,
                "scopes": scopes.iter().map(|s| &s.name).collect::<Vec<_>>(),
            }));
        }
        AdminCommand::Scope {
            command: ScopeCommand::Add { audience, names },
        } => {
            let scopes = actor.add_scopes_to(&audience, &names).await?;
            print_json(
                &json!({ "audience": audience, "scopes": scopes.iter().map(|s| &s.name).collect::<Vec<_>>() }),
            );
        }
        AdminCommand::Client { command } => match command {
            ClientCommand::Create {
                name,
                ttl,
                max_ttl,
                public_keys,
                allowed_cidrs,
                require_dpop,
                grant_types,
            } => {
                let defaults = ClientSpec::named(&name);
                let spec = ClientSpec {
                    default_ttl: ttl,
                    max_ttl,
                    allowed_cidrs,
                    require_dpop,
                    grant_types: if grant_types.is_empty() {
                        defaults.grant_types.clone()
                    } else {
                        grant_types
                    },
                    ..defaults
                };
                if public_keys.is_empty() {
                    let created = actor.create_client(spec).await?;
                    print_json(&created_client_json(&created));
                } else {
                    use base64::Engine as _;
                    let keys = public_keys
                        .iter()
                        .map(|x| {
                            base64::engine::general_purpose::URL_SAFE_NO_PAD
                                .decode(x.trim())
                                .ok()
                                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                                .map(|k| (None, k))
                                .context("--public-key must be the base64url of 32 bytes")
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let (client, keys) = actor.create_keyed_client(spec, &keys).await?;
                    print_json(&json!({
                        "client_id": client.id,
                        "public_keys": keys.iter().map(|k| json!({ "id": k.id, "kid": k.kid })).collect::<Vec<_>>(),
                    }));
                }
            }
            ClientCommand::AddSecret { id, expires_in } => {
                let added = actor
                    .add_client_secret(id, expires_in.map(|d| actor.now + d))
                    .await?;
                print_json(
                    &json!({ "client_id": id, "secret_id": added.record.id, "client_secret": added.secret.expose() }),
                );
            }
            ClientCommand::Disable { id } => {
                actor.set_client_enabled(id, false).await?;
                print_json(&json!({ "client_id": id, "enabled": false }));
            }
            ClientCommand::Enable { id } => {
                actor.set_client_enabled(id, true).await?;
                print_json(&json!({ "client_id": id, "enabled": true }));
            }
        },
        AdminCommand::User {
            command: UserCommand::Create { username },
        } => {
            let password = mayfly_server::login::read_secret("Password: ")?;
            let hash = mayfly_server::password::Passwords::default()
                .hash(password)
                .await?;
            let user = actor.create_user(&username, hash, true, &[]).await?;
            print_json(&json!({ "id": user.id, "username": user.username }));
        }
        AdminCommand::Grant {
            command:
                GrantCommand::Create {
                    client,
                    user,
                    audience,
                    scopes,
                    not_before,
                    expires_at,
                    max_ttl,
                    reason,
                },
        } => {
            let subject = match (client, user) {
                (Some(id), _) => Subject::Client(id),
                (None, Some(id)) => Subject::User(id),
                (None, None) => anyhow::bail!("name a --client or a --user"),
            };
            let grant = actor
                .grant(GrantSpec {
                    subject,
                    audience,
                    scopes,
                    not_before,
                    expires_at,
                    allowed_cidrs: Vec::new(),
                    max_ttl,
                    may_act: Vec::new(),
                    reason,
                })
                .await?;
            print_json(&json!({
                "id": grant.id, "client_id": client, "user_id": user, "scopes": grant.scopes,
            }));
        }
        AdminCommand::AccessPolicy {
            command:
                AccessPolicyCommand::Create {
                    name,
                    audience,
                    scopes,
                    subjects,
                    max_duration,
                    decision,
                    approvals,
                    break_glass,
                },
        } => {
            use mayfly_server::admin::access::{AccessPolicySpec, Decision};
            let decision = Decision::parse(&decision)
                .ok_or_else(|| anyhow::anyhow!("--decision is auto, approval or deny"))?;
            let policy = actor
                .create_access_policy(AccessPolicySpec {
                    name,
                    audience,
                    scopes,
                    subjects,
                    max_duration,
                    decision,
                    approvals_required: approvals,
                    break_glass,
                })
                .await?;
            print_json(&json!({
                "id": policy.id, "name": policy.name, "scopes": policy.scopes,
                "subjects": policy.subjects, "max_duration_secs": policy.max_duration_secs,
                "decision": policy.decision, "approvals_required": policy.approvals_required,
                "break_glass": policy.break_glass,
            }));
        }
    }
    Ok(())
}

async fn keys_command(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let now = SystemClock.now();
    match command {
        KeysCommand::List => {
            let keys: Vec<KeyInfo> = store
                .all_signing_keys()
                .await
                .context("reading the signing keys")?
                .iter()
                .map(KeyInfo::from)
                .collect();
            print_json(&json!({ "keys": keys }));
        }
        KeysCommand::Rotate { emergency } => {
            config.check_ttls()?;
            config.check_key_periods()?;
            let master = MasterKey::load(&config.master_key_source()?)?;
            let keyring = Keyring::load(store.as_ref(), master, now)
                .await
                .context("loading the signing keys")?;
            let outcome = Rotator::new(store.as_ref(), &keyring, config.key_policy(), "cli")
                .rotate_now(now, RotateOptions { emergency })
                .await?;
            print_json(&rotate_outcome_json(&outcome));
        }
        KeysCommand::Rewrap {
            new_master_key_file,
        } => {
            // Neither file may be generated here: a fresh key would open nothing.
            let old = MasterKey::load(&MasterKeySource {
                create_if_missing: false,
                ..config.master_key_source()?
            })?;
            let new = MasterKey::load(&MasterKeySource {
                path: new_master_key_file.clone(),
                create_if_missing: false,
            })?;
            let count = keys::rewrap(store.as_ref(), &old, &new, "cli", now)
                .await
                .context("re-encrypting the signing keys")?;
            print_json(&json!({
                "rewrapped": count,
                "master_key_file": new_master_key_file.display().to_string(),
            }));
        }
    }
    Ok(())
}

fn rotate_outcome_json(outcome: &RotateOutcome) -> serde_json::Value {
    let changes = |changes: &[mayfly_store::KeyChange]| -> Vec<serde_json::Value> {
        changes
            .iter()
            .map(|c| {
                json!({
                    "kid": c.id,
                    "from": c.from.map(mayfly_store::KeyState::as_str),
                    "to": c.to.as_str(),
                    "revoked": c.revoked,
                })
            })
            .collect()
    };
    match outcome {
        RotateOutcome::Activated { active, changes: c } => {
            json!({ "status": "activated", "active": active, "changes": changes(c) })
        }
        RotateOutcome::Pending {
            next,
            activates_at,
            changes: c,
        } => json!({
            "status": "pending",
            "next": next,
            "activates_at": activates_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            "changes": changes(c),
        }),
    }
}

async fn audit_command(
    config: &Config,
    command: mayfly_server::cli::AuditCommand,
) -> anyhow::Result<()> {
    let mayfly_server::cli::AuditCommand::Search {
        event_type,
        outcome,
        client_id,
        subject,
        jti,
        audience,
        ip,
        since,
        limit,
    } = command;
    let store = open_store(config).await?;
    let query = mayfly_store::AuditQuery {
        event_type,
        client_id,
        outcome,
        subject,
        jti,
        audience,
        network: ip.map(|n| n.trunc()),
        since: since.map(|d| SystemClock.now() - d),
        until: None,
        before: None,
        limit: limit.min(1000),
    };
    let mut stdout = std::io::stdout().lock();
    for event in store
        .audit_events(&query)
        .await
        .context("searching the audit log")?
    {
        let out = mayfly_server::http::admin::audit::AuditEventOut::from(event);
        // A closed pipe (`| head`) ends the listing quietly.
        if writeln!(stdout, "{}", serde_json::to_string(&out)?).is_err() {
            break;
        }
    }
    Ok(())
}
