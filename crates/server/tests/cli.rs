//! The `mayfly` binary as an operator uses it: admin commands print JSON, the service
//! they set up issues tokens, and bad configuration stops with one line naming the
//! setting.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

fn mayfly(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mayfly"));
    command.args(args).current_dir(dir).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("MAYFLY_") {
            command.env_remove(k);
        }
    }
    command.envs(env.iter().copied());
    match command.output() {
        Ok(output) => output,
        Err(e) => panic!("running mayfly: {e}"),
    }
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    match serde_json::from_slice(&output.stdout) {
        Ok(v) => v,
        Err(e) => panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        ),
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `mayfly serve` in its own directory, on a random port, with `env` on top of the
/// defaults; stopped when dropped (before its database).
struct Running {
    server: Server,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    url: String,
    _db: Option<mayfly_store::testing::TestDb>,
}

impl Running {
    fn start(backend: mayfly_store::Backend, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let url = format!("http://{listen}");
        let mut env: Vec<(String, String)> = vec![("MAYFLY_LISTEN".into(), listen.clone())];
        let db = match backend {
            mayfly_store::Backend::Sqlite => None,
            mayfly_store::Backend::Postgres => {
                let db = tokio::runtime::Runtime::new()
                    .unwrap()
                    .block_on(mayfly_store::testing::TestDb::new(backend));
                env.push(("MAYFLY_DATABASE_URL".into(), db.url.clone()));
                env.push((
                    "MAYFLY_MASTER_KEY_FILE".into(),
                    dir.path().join("mayfly.key").display().to_string(),
                ));
                Some(db)
            }
        };
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let server = serve_with(dir.path(), &listen, &pairs);
        Self {
            server,
            dir,
            env,
            url,
            _db: db,
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// `mayfly args` in the server's directory with its settings (bootstrap, migrate).
    fn local(&self, args: &[&str]) -> Output {
        mayfly(self.dir.path(), args, &self.env())
    }

    /// Bootstraps the first admin and logs in as it from another directory.
    fn admin(&self) -> Admin {
        let boot = json(&self.local(&["admin", "bootstrap"]));
        let admin = Admin::new(&self.url);
        admin.login(
            boot["client_id"].as_str().unwrap(),
            boot["client_secret"].as_str().unwrap(),
            &[],
        );
        admin
    }
}

/// `mayfly admin` as an operator on another machine would run it: in a directory of
/// its own (which must stay without a database), with a profile of its own.
struct Admin {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Admin {
    fn new(server: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("config/mayfly/profile.json");
        Self {
            env: vec![
                ("MAYFLY_SERVER".into(), server.to_owned()),
                ("MAYFLY_PROFILE".into(), profile.display().to_string()),
            ],
            dir,
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn login(&self, client_id: &str, secret: &str, extra: &[&str]) {
        let args = [&["admin", "login", "--client-id", client_id][..], extra].concat();
        let out = mayfly_with_input(self.dir.path(), &args, &self.env(), secret);
        assert!(out.status.success(), "admin login: {}", stderr(&out));
    }

    fn run(&self, args: &[&str]) -> Output {
        mayfly(
            self.dir.path(),
            &[&["admin"][..], args].concat(),
            &self.env(),
        )
    }

    fn json(&self, args: &[&str]) -> Value {
        json(&self.run(&[args, &["-o", "json"]].concat()))
    }

    fn table(&self, args: &[&str]) -> String {
        stdout_line(&self.run(&[args, &["-o", "table"]].concat()))
    }

    fn with_input(&self, args: &[&str], input: &str) -> Value {
        json(&mayfly_with_input(
            self.dir.path(),
            &[&["admin"][..], args, &["-o", "json"]].concat(),
            &self.env(),
            input,
        ))
    }

    fn profile(&self) -> Value {
        serde_json::from_slice(&std::fs::read(&self.env[1].1).unwrap()).unwrap()
    }
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

/// A `--server` / `MAYFLY_SERVER` other than the profile's (a stale variable, a typo, a
/// host someone else runs) gets neither the profile's token nor its secret.
#[test]
fn a_profile_is_not_sent_to_another_server() {
    let running = Running::start(mayfly_store::Backend::Sqlite, &[]);
    let admin = running.admin();
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let other = format!("http://{}", elsewhere.local_addr().unwrap());
    let out = admin.run(&["audience", "list", "--server", &other]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds credentials for"),
        "{}",
        stderr(&out)
    );
    assert!(
        elsewhere.accept().is_err(),
        "a request reached the other server"
    );
    // The profile's own server, written with a trailing slash, is the same server.
    let own = format!("{}/", running.url);
    assert!(
        admin
            .run(&["audience", "list", "--server", &own])
            .status
            .success()
    );
}

/// Issue #19: the admin CLI is a client of the running server. From another directory
/// it changes what the server sees, creates no database there, prints the API's JSON,
/// and refuses bad input in one line.
#[test]
fn admin_commands_print_json_and_refuse_bad_input() {
    let running = Running::start(mayfly_store::Backend::Sqlite, &[]);
    let boot = json(&running.local(&["admin", "bootstrap"]));
    assert!(
        boot["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("mfy_cs_")
    );
    let again = running.local(&["admin", "bootstrap"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already bootstrapped"),
        "{}",
        stderr(&again)
    );
    let admin = Admin::new(&running.url);
    // Not logged in yet: the message says how.
    let out = admin.run(&["client", "list"]);
    assert!(
        stderr(&out).contains("mayfly admin login"),
        "{}",
        stderr(&out)
    );
    admin.login(
        boot["client_id"].as_str().unwrap(),
        boot["client_secret"].as_str().unwrap(),
        &[],
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let profile = admin.dir.path().join("config/mayfly/profile.json");
        let mode = std::fs::metadata(&profile).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let dir = std::fs::metadata(profile.parent().unwrap()).unwrap();
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    }

    let audience = admin.json(&[
        "audience",
        "create",
        "--uri",
        "https://api.example/orders",
        "--scope",
        "orders:read",
    ]);
    assert_eq!(audience["uri"], "https://api.example/orders");
    let scopes = admin.json(&["scope", "list", "--audience", "https://api.example/orders"]);
    assert_eq!(scopes["items"][0]["name"], "orders:read");
    let added = admin.json(&[
        "scope",
        "add",
        "--audience",
        "https://api.example/orders",
        "orders:write",
    ]);
    assert_eq!(added["name"], "orders:write");
    // Piped: JSON by default, the API's own fields (`jq -r .id`).
    let client = json(&admin.run(&["client", "create", "--name", "worker", "--ttl", "2m"]));
    assert_eq!(client["default_ttl_secs"], 120);
    let id = id_of(&client);
    let grant = admin.json(&[
        "grant",
        "create",
        "--client",
        &id,
        "--audience",
        "https://api.example/orders",
        "--scope",
        "orders:read",
        "--reason",
        "test",
    ]);
    assert_eq!(grant["scopes"], serde_json::json!(["orders:read"]));
    let secret = admin.json(&["client", "secret", "add", &id, "--expires-in", "1d"]);
    assert!(
        secret["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("mfy_cs_")
    );
    let third = admin.run(&["client", "secret", "add", &id]);
    assert!(!third.status.success(), "at most two valid secrets");
    assert_eq!(admin.json(&["client", "disable", &id])["enabled"], false);

    for (args, needle) in [
        (vec!["audience", "create", "--uri", "not a uri"], "422"),
        (
            vec!["audience", "create", "--uri", "https://api.example/orders"],
            "already exists",
        ),
        (
            vec![
                "scope",
                "add",
                "--audience",
                "https://api.example/orders",
                "bad scope",
            ],
            "422",
        ),
        (
            vec![
                "grant",
                "create",
                "--client",
                &id,
                "--audience",
                "https://nowhere.example",
                "--scope",
                "a:b",
            ],
            "no such audience",
        ),
        (
            vec![
                "grant",
                "create",
                "--client",
                &id,
                "--audience",
                "https://api.example/orders",
                "--scope",
                "orders:delete",
            ],
            "every scope must exist",
        ),
    ] {
        let out = admin.run(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(
            err.trim()
                .lines()
                .filter(|l| l.starts_with("mayfly:"))
                .count(),
            1,
            "one line: {err}"
        );
    }
    let entries: Vec<_> = std::fs::read_dir(admin.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        entries,
        ["config"],
        "no database beside the admin: {entries:?}"
    );
    let migrated = running.local(&["migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
}

/// Only `serve` creates a database: bootstrap and migrate elsewhere refuse, write
/// nothing, and say where they looked; with --create they make one.
#[test]
fn bootstrap_without_create_refuses_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for args in [&["admin", "bootstrap"][..], &["migrate"]] {
        let out = mayfly(d, args, &[]);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("no database at mayfly.db") && err.contains("--create"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(d).unwrap().count(), 0, "nothing written");
    }
    let boot = json(&mayfly(d, &["admin", "bootstrap", "--create"], &[]));
    assert!(boot["client_id"].is_string());
    assert!(d.join("mayfly.db").exists());
}

/// Every admin resource through the CLI against a real server: list, get, create,
/// update, delete, as tables and as the API's JSON; paging; revoke; introspect;
/// keys; audit. Both stores.
fn five_verbs(backend: mayfly_store::Backend) {
    let running = Running::start(backend, &[]);
    let admin = running.admin();
    let orders = "https://api.example/orders";

    // Audiences.
    let audience = admin.json(&[
        "audience",
        "create",
        "--uri",
        orders,
        "--description",
        "orders",
    ]);
    let audience_id = id_of(&audience);
    assert!(admin.table(&["audience", "list"]).contains(orders));
    assert_eq!(
        id_of(&admin.json(&["audience", "get", orders])),
        audience_id
    );
    let table = admin.table(&["audience", "get", &audience_id]);
    assert!(table.contains("uri") && table.contains(orders), "{table}");
    let updated = admin.json(&["audience", "update", orders, "--description", "all orders"]);
    assert_eq!(updated["description"], "all orders");

    // Scopes.
    let read = admin.json(&["scope", "create", "--audience", orders, "orders:read"]);
    let write = admin.json(&[
        "scope",
        "create",
        "--audience",
        &audience_id,
        "orders:write",
    ]);
    let listed = admin.json(&["scope", "list", "--audience", orders]);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(
        admin.json(&["scope", "get", &id_of(&read)])["name"],
        "orders:read"
    );
    let table = admin.table(&["scope", "list"]);
    assert!(
        table.starts_with("ID") && table.contains("orders:write"),
        "{table}"
    );
    let changed = admin.json(&["scope", "update", &id_of(&write), "--description", "w"]);
    assert_eq!(changed["description"], "w");
    admin.json(&["scope", "delete", &id_of(&write)]);
    assert_eq!(
        admin.json(&["scope", "list", "--audience", orders])["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Clients, their secrets and keys; paging.
    let client = admin.json(&["client", "create", "--name", "billing", "--label", "batch"]);
    let client_id = id_of(&client);
    assert!(
        client["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("mfy_cs_")
    );
    let table = admin.table(&["client", "list"]);
    assert!(
        table.contains("billing") && table.contains("mayfly-admin"),
        "{table}"
    );
    assert_eq!(
        admin.json(&["client", "get", &client_id])["name"],
        "billing"
    );
    let renamed = admin.json(&[
        "client",
        "update",
        &client_id,
        "--name",
        "billing-2",
        "--max-ttl",
        "10m",
    ]);
    assert_eq!(
        (renamed["name"].as_str(), renamed["max_ttl_secs"].as_i64()),
        (Some("billing-2"), Some(600))
    );
    let page = admin.json(&["client", "list", "--limit", "1"]);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_string(), "{page}");
    let next = admin.json(&[
        "client",
        "list",
        "--limit",
        "1",
        "--cursor",
        page["next_cursor"].as_str().unwrap(),
    ]);
    assert_ne!(next["items"][0]["id"], page["items"][0]["id"]);
    let all = admin.json(&["client", "list", "--limit", "1", "--all"]);
    assert_eq!(all["items"].as_array().unwrap().len(), 2, "{all}");
    let secret = admin.json(&["client", "secret", "add", &client_id]);
    let secrets = admin.json(&["client", "secret", "list", &client_id]);
    assert_eq!(secrets.as_array().unwrap().len(), 2);
    assert!(
        !secrets.to_string().contains("mfy_cs_"),
        "never the secret again"
    );
    admin.json(&["client", "secret", "delete", &client_id, &id_of(&secret)]);
    assert_eq!(
        admin
            .json(&["client", "secret", "list", &client_id])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    let key = admin.json(&["client", "key", "add", &client_id, "--x", x]);
    assert_eq!(
        admin.json(&["client", "key", "list", &client_id])[0]["id"],
        key["id"]
    );
    admin.json(&["client", "key", "delete", &client_id, &id_of(&key)]);
    assert_eq!(
        admin.json(&["client", "disable", &client_id])["enabled"],
        false
    );
    assert_eq!(
        admin.json(&["client", "enable", &client_id])["enabled"],
        true
    );

    // Users.
    let user = admin.with_input(
        &["user", "create", "--username", "alice", "--label", "oncall"],
        "correct horse battery staple\n",
    );
    let user_id = id_of(&user);
    assert!(admin.table(&["user", "list"]).contains("alice"));
    assert_eq!(admin.json(&["user", "get", &user_id])["username"], "alice");
    assert_eq!(
        admin.json(&["user", "update", &user_id, "--enabled", "false"])["enabled"],
        false
    );

    // Trusted issuers (by id or URL) and federated identities of clients and users.
    let github = "https://token.actions.githubusercontent.com";
    let issuer = admin.json(&[
        "trusted-issuer",
        "create",
        "--issuer",
        github,
        "--algorithm",
        "RS256",
        "--description",
        "GitHub Actions",
    ]);
    let issuer_id = id_of(&issuer);
    assert_eq!(
        issuer["settings"]["audience"],
        running.url.as_str(),
        "{issuer}"
    );
    assert_eq!(issuer["settings"]["key_source"]["type"], "discovery");
    assert_eq!(
        issuer["settings"]["algorithms"],
        serde_json::json!(["RS256"])
    );
    let cluster = "https://kubernetes.default.svc.cluster.local";
    let jwks = admin.dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
    )
    .unwrap();
    let k8s = admin.json(&[
        "trusted-issuer",
        "create",
        "--issuer",
        cluster,
        "--audience",
        "mayfly",
        "--jwks-file",
        jwks.to_str().unwrap(),
        "--max-age",
        "15m",
    ]);
    assert_eq!(k8s["settings"]["key_source"]["type"], "inline", "{k8s}");
    assert_eq!(
        k8s["settings"]["key_source"]["jwks"]["keys"][0]["kid"],
        "k1"
    );
    assert_eq!(k8s["settings"]["max_age_seconds"], 900);
    let table = admin.table(&["trusted-issuer", "list"]);
    assert!(
        table.starts_with("ID") && table.contains(github) && table.contains(cluster),
        "{table}"
    );
    assert_eq!(
        admin.json(&["trusted-issuer", "get", github])["id"],
        issuer["id"]
    );
    assert_eq!(
        admin.json(&["trusted-issuer", "get", &issuer_id])["description"],
        "GitHub Actions"
    );
    let changed = admin.json(&[
        "trusted-issuer",
        "update",
        cluster,
        "--description",
        "prod cluster",
        "--clock-skew",
        "1m",
    ]);
    assert_eq!(changed["description"], "prod cluster");
    assert_eq!(changed["settings"]["clock_skew_seconds"], 60);
    assert_eq!(
        changed["settings"]["max_age_seconds"], 900,
        "an option not given stays: {changed}"
    );
    let refused = admin.run(&["trusted-issuer", "update", github, "--algorithm", "HS256"]);
    assert!(
        !refused.status.success() && stderr(&refused).contains("algorithms"),
        "{}",
        stderr(&refused)
    );
    let identity = admin.json(&[
        "client",
        "federated-identity",
        "add",
        &client_id,
        "--issuer",
        github,
        "--claim",
        "repository=acme/api",
        "--claim",
        "/ref=refs/heads/main",
    ]);
    assert_eq!(
        identity["conditions"],
        serde_json::json!([
            {"type": "equals", "claim": "/repository", "value": "acme/api"},
            {"type": "equals", "claim": "/ref", "value": "refs/heads/main"},
        ]),
        "{identity}"
    );
    let worker = admin.json(&[
        "client",
        "federated-identity",
        "add",
        &client_id,
        "--issuer",
        cluster,
        "--claim",
        "kubernetes.io/namespace=pay",
        "--claim",
        "kubernetes.io/serviceaccount/name=worker",
    ]);
    assert_eq!(worker["conditions"][0]["claim"], "/kubernetes.io/namespace");
    let listed = admin.table(&["client", "federated-identity", "list", &client_id]);
    assert!(
        listed.starts_with("ID") && listed.contains("acme/api") && listed.contains(cluster),
        "{listed}"
    );
    let alice = admin.json(&[
        "user",
        "federated-identity",
        "add",
        &user_id,
        "--issuer",
        github,
        "--subject",
        "repo:acme/ops:ref:refs/heads/main",
    ]);
    assert_eq!(alice["owner_kind"], "user");
    assert_eq!(alice["subject"], "repo:acme/ops:ref:refs/heads/main");
    // A subject and conditions at once, no rule, a bad pointer or SPIFFE prefix: refused
    // before any request.
    for args in [
        &["--subject", "x", "--claim", "a=b"][..],
        &[],
        &["--claim", "no-equals-sign"],
        &["--claim", "/a//b=c"],
        &["--spiffe-prefix", "https://not-spiffe"],
    ] {
        let out = admin.run(
            &[
                &[
                    "user",
                    "federated-identity",
                    "add",
                    &user_id,
                    "--issuer",
                    github,
                ][..],
                args,
            ]
            .concat(),
        );
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains("error:"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // Overlapping the client's rule for the same issuer: the server's 409.
    let overlap = admin.run(&[
        "user",
        "federated-identity",
        "add",
        &user_id,
        "--issuer",
        github,
        "--claim",
        "repository=acme/api",
        "--claim",
        "ref=refs/heads/main",
    ]);
    assert!(stderr(&overlap).contains("409"), "{}", stderr(&overlap));
    admin.json(&[
        "user",
        "federated-identity",
        "remove",
        &user_id,
        &id_of(&alice),
    ]);
    assert_eq!(
        admin.json(&["user", "federated-identity", "list", &user_id]),
        serde_json::json!([])
    );
    // An issuer in use is not deleted; without identities it is.
    let in_use = admin.run(&["trusted-issuer", "delete", cluster]);
    assert!(!in_use.status.success(), "{}", stderr(&in_use));
    admin.json(&[
        "client",
        "federated-identity",
        "remove",
        &client_id,
        &id_of(&worker),
    ]);
    admin.json(&["trusted-issuer", "delete", cluster]);
    let gone = admin.run(&["trusted-issuer", "get", &id_of(&k8s)]);
    assert!(stderr(&gone).contains("404"), "{}", stderr(&gone));

    // Grants.
    let grant = admin.json(&[
        "grant",
        "create",
        "--client",
        &client_id,
        "--audience",
        orders,
        "--scope",
        "orders:read",
        "--reason",
        "reads orders",
    ]);
    let grant_id = id_of(&grant);
    let mine = admin.json(&["grant", "list", "--client", &client_id]);
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");
    assert!(
        admin
            .table(&["grant", "list", "--audience", orders])
            .contains(&format!("client:{client_id}"))
    );
    assert_eq!(
        admin.json(&["grant", "get", &grant_id])["reason"],
        "reads orders"
    );
    assert_eq!(
        admin.json(&["grant", "update", &grant_id, "--reason", "nightly"])["reason"],
        "nightly"
    );

    // Access policies and the approvers' queue.
    let policy = admin.json(&[
        "access-policy",
        "create",
        "--name",
        "on call",
        "--audience",
        orders,
        "--scope",
        "orders:read",
        "--subject",
        "label:oncall",
        "--max-duration",
        "1h",
        "--decision",
        "approval",
        "--approvals",
        "1",
    ]);
    let policy_id = id_of(&policy);
    assert!(admin.table(&["access-policy", "list"]).contains("on call"));
    assert_eq!(
        admin.json(&["access-policy", "get", &policy_id])["decision"],
        "approval"
    );
    assert_eq!(
        admin.json(&["access-policy", "update", &policy_id, "--name", "on-call"])["name"],
        "on-call"
    );
    assert_eq!(
        admin.json(&["access", "queue"])["items"],
        serde_json::json!([])
    );

    // Revoke, list revocations; introspect the admin's own token.
    let revoked = admin.json(&["revoke", "--kind", "grant", &grant_id, "--reason", "test"]);
    assert_eq!(revoked["kind"], "grant");
    let list = admin.json(&["revocation", "list"]);
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["value"] == grant_id.as_str()),
        "{list}"
    );
    let admin_id = admin.profile()["client_id"].as_str().unwrap().to_owned();
    admin.json(&[
        "grant",
        "create",
        "--client",
        &admin_id,
        "--audience",
        &running.url,
        "--scope",
        "mayfly:introspect",
    ]);
    let token = admin.profile()["access_token"].as_str().unwrap().to_owned();
    let verdict = admin.with_input(&["introspect"], &format!("{token}\n"));
    assert_eq!(verdict["active"], true, "{verdict}");
    assert_eq!(verdict["scope"], "mayfly:admin");

    // Keys and audit.
    let keys = admin.json(&["keys", "list"]);
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["state"] == "active"),
        "{keys}"
    );
    assert!(admin.table(&["keys", "list"]).contains("active"));
    let events = admin.json(&["audit", "search", "--type", "admin.change", "--limit", "3"]);
    assert_eq!(events["items"].as_array().unwrap().len(), 3, "{events}");
    assert!(
        admin
            .table(&["audit", "search", "--limit", "2"])
            .starts_with("OCCURRED_AT")
    );

    // Deletes, in dependency order.
    for args in [
        ["grant", "delete", &grant_id],
        ["access-policy", "delete", &policy_id],
        ["user", "delete", &user_id],
        ["client", "delete", &client_id],
        ["trusted-issuer", "delete", github],
        ["scope", "delete", &id_of(&read)],
        ["audience", "delete", orders],
    ] {
        admin.json(&args);
    }
    for (args, code) in [
        (["grant", "get", &grant_id], "404"),
        (["user", "get", &user_id], "404"),
        (["client", "get", &client_id], "404"),
        (["trusted-issuer", "get", &issuer_id], "404"),
        (["access-policy", "get", &policy_id], "404"),
        (["audience", "get", &audience_id], "404"),
    ] {
        let out = admin.run(&args);
        assert!(stderr(&out).contains(code), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn every_resource_has_five_verbs_sqlite() {
    five_verbs(mayfly_store::Backend::Sqlite);
}

#[test]
fn every_resource_has_five_verbs_postgres() {
    five_verbs(mayfly_store::Backend::Postgres);
}

/// Tokens live 1 s here: the CLI renews the profile's token before it expires, and
/// when the server refuses one anyway it gets a new one and retries; a client holding
/// an expired token is told it expired.
#[test]
fn admin_token_is_renewed_when_it_expires() {
    let running = Running::start(mayfly_store::Backend::Sqlite, &[("MAYFLY_TOKEN_TTL", "1s")]);
    let admin = running.admin();
    let first = admin.profile()["access_token"].as_str().unwrap().to_owned();
    // Past its expiry and the server's 5 s leeway.
    std::thread::sleep(Duration::from_millis(6500));
    admin.json(&["client", "list"]);
    let second = admin.profile()["access_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second, "renewed before use");

    // The server says an expired token expired.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-D",
            "-",
            &format!("{}/admin/v1/clients", running.url),
            "-H",
        ])
        .arg(format!("Authorization: Bearer {first}"))
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.contains(r#"error_description="the access token expired"#),
        "{answer}"
    );
    assert!(
        answer.contains(r#""detail":"the access token expired"#),
        "{answer}"
    );

    // A profile whose cached token looks valid but is not: refused once, renewed, done.
    let path = &admin.env[1].1;
    let mut stale = admin.profile();
    stale["access_token"] = first.into();
    stale["expires_at"] = "2999-01-01T00:00:00Z".into();
    std::fs::write(path, stale.to_string()).unwrap();
    assert!(admin.json(&["client", "list"])["items"].is_array());
    assert_ne!(admin.profile()["access_token"], stale["access_token"]);
}

/// An admin holding only `mayfly:admin:read` is told which scope a change needs.
#[test]
fn a_narrow_admin_is_told_the_scope_it_lacks() {
    let running = Running::start(mayfly_store::Backend::Sqlite, &[]);
    let admin = running.admin();
    let issuer = &running.url;
    let reader = admin.json(&["client", "create", "--name", "auditor"]);
    admin.json(&[
        "grant",
        "create",
        "--client",
        &id_of(&reader),
        "--audience",
        issuer,
        "--scope",
        "mayfly:admin:read",
    ]);
    let narrow = Admin::new(issuer);
    narrow.login(
        &id_of(&reader),
        reader["client_secret"].as_str().unwrap(),
        &["--scope", "mayfly:admin:read"],
    );
    assert!(narrow.json(&["client", "list"])["items"].is_array());
    let out = narrow.run(&["client", "create", "--name", "x"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("403") && err.contains("mayfly:admin:clients"),
        "{err}"
    );
    // Asking for a scope the client does not hold fails at login, not later.
    let out = mayfly_with_input(
        narrow.dir.path(),
        &[
            "admin",
            "login",
            "--client-id",
            &id_of(&reader),
            "--scope",
            "mayfly:admin",
        ],
        &narrow.env(),
        reader["client_secret"].as_str().unwrap(),
    );
    assert!(stderr(&out).contains("invalid_scope"), "{}", stderr(&out));
}

/// A Postgres database that does not exist: one line naming `createdb`, and no master
/// key file written.
#[test]
fn missing_postgres_database_names_createdb_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let admin_url = std::env::var("MAYFLY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let base = admin_url.rsplit_once('/').unwrap().0;
    let url = format!("{base}/mayfly_absent_{}", std::process::id());
    let env = [
        ("MAYFLY_DATABASE_URL", url.as_str()),
        ("MAYFLY_MASTER_KEY_FILE", "mayfly.key"),
    ];
    for args in [&["serve"][..], &["migrate"], &["admin", "bootstrap"]] {
        let out = mayfly(d, args, &env);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        let name = url.rsplit('/').next().unwrap();
        assert!(
            err.contains("createdb -h ") && err.contains(&format!("{name}`")),
            "{args:?}: {err}"
        );
        assert!(!err.contains("line "), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            !d.join("mayfly.key").exists(),
            "{args:?} wrote the key file"
        );
    }
}

/// Each command's help shows its own options: server settings only where the database
/// is opened.
#[test]
fn help_fits_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let help = |args: &[&str]| stdout_line(&mayfly(dir.path(), &[args, &["--help"]].concat(), &[]));
    let create = help(&["admin", "client", "create"]);
    assert!(
        create.lines().count() <= 40,
        "{} lines:\n{create}",
        create.lines().count()
    );
    assert!(create.contains("Example:") && create.contains("--name"));
    for args in [
        &["admin", "client", "create"][..],
        &["admin", "grant", "list"],
        &["login"],
        &["admin"],
    ] {
        let text = help(args);
        assert!(
            !text.contains("--database-url") && !text.contains("--key-lifetime"),
            "{args:?}:\n{text}"
        );
    }
    for args in [
        &["serve"][..],
        &["migrate"],
        &["admin", "bootstrap"],
        &["keys", "rewrap"],
    ] {
        assert!(help(args).contains("--database-url"), "{args:?}");
    }
}

#[test]
fn bad_configuration_stops_with_the_setting_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (env, needle) in [
        (vec![("MAYFLY_ISSUER", "ftp://x")], "MAYFLY_ISSUER"),
        (vec![("MAYFLY_MAX_TOKEN_TTL", "2h")], "MAYFLY_MAX_TOKEN_TTL"),
        (vec![("MAYFLY_TOKEN_TTL", "soon")], "soon"),
        (
            vec![(
                "MAYFLY_DATABASE_URL",
                "postgres://postgres@127.0.0.1:1/none",
            )],
            "MAYFLY_MASTER_KEY_FILE",
        ),
        (
            vec![("MAYFLY_DATABASE_URL", "mysql://x/y")],
            "MAYFLY_DATABASE_URL",
        ),
        (
            vec![("MAYFLY_MASTER_KEY_FILE", "/nonexistent/dir/k")],
            "/nonexistent/dir/k",
        ),
        (
            vec![("MAYFLY_KEY_SET_MAX_AGE", "30m")],
            "MAYFLY_KEY_SET_MAX_AGE",
        ),
        (
            vec![("MAYFLY_KEY_PUBLISH_LEAD", "2d")],
            "MAYFLY_KEY_PUBLISH_LEAD",
        ),
        (
            vec![("MAYFLY_KEY_RETIRE_HOLD", "10m")],
            "MAYFLY_KEY_RETIRE_HOLD",
        ),
        (vec![("MAYFLY_KEY_LIFETIME", "soon")], "soon"),
    ] {
        let out = mayfly(d, &["serve"], &env);
        assert!(!out.status.success(), "{env:?} started");
        assert!(stderr(&out).contains(needle), "{env:?}: {}", stderr(&out));
    }
    write_key(&d.join("bad.key"), "not hex");
    let out = mayfly(d, &["serve"], &[("MAYFLY_MASTER_KEY_FILE", "bad.key")]);
    assert!(
        stderr(&out).contains("64 hex characters"),
        "{}",
        stderr(&out)
    );
    // A key file others can read is refused, as ssh refuses such private keys.
    std::fs::write(d.join("open.key"), format!("{}\n", "5a".repeat(32))).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(d.join("open.key"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    let out = mayfly(d, &["serve"], &[("MAYFLY_MASTER_KEY_FILE", "open.key")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("too open (mode 644)"),
        "{}",
        stderr(&out)
    );
}

/// Writes a master key file as an operator should: owner-only.
fn write_key(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Starts `mayfly serve` and stops it once it logs that it is ready; `Err` carries its
/// output when it exits first.
fn serve_until_ready(dir: &Path, env: &[(&str, &str)]) -> Result<(), String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mayfly"));
    command
        .arg("serve")
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("MAYFLY_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("MAYFLY_") && k != "MAYFLY_LISTEN" {
            command.env_remove(k);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let outcome = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("mayfly ready") => break Ok(()),
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => break Err(seen),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

fn states(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_owned(),
                k["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `admin keys list|rotate` over the API; `keys rewrap` in the database, with the
/// servers stopped.
#[test]
fn keys_commands_list_rotate_and_rewrap() {
    let running = Running::start(mayfly_store::Backend::Sqlite, &[]);
    let admin = running.admin();
    let first_list = admin.json(&["keys", "list"]);
    let first = states(&first_list)
        .into_iter()
        .find(|(_, s)| s == "active")
        .unwrap()
        .0;

    // Rotate now: a successor is published; it cannot sign before the publish lead
    // (1h) has passed.
    let pending = admin.json(&["keys", "rotate"]);
    assert_eq!(pending["outcome"], "pending", "{pending}");
    let next = pending["next"].as_str().unwrap().to_owned();
    assert!(next.starts_with("k4.pid."));
    assert!(pending["activates_at"].as_str().is_some());
    let list = admin.json(&["keys", "list"]);
    let keys = states(&list);
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&(next.clone(), "next".into())));
    assert!(keys.contains(&(first.clone(), "active".into())));
    let dump = list.to_string();
    assert!(
        !dump.contains("private") && !dump.contains("paserk"),
        "no key material: {dump}"
    );

    // Emergency: the published successor signs at once; the old key is revoked.
    let emergency = admin.json(&["keys", "rotate", "--emergency"]);
    assert_eq!(
        (emergency["outcome"].as_str(), emergency["active"].as_str()),
        (Some("activated"), Some(next.as_str())),
        "{emergency}"
    );
    let list = admin.json(&["keys", "list"]);
    let keys = states(&list);
    assert!(keys.contains(&(next.clone(), "active".into())), "{list}");
    assert!(
        !keys.iter().any(|(id, _)| *id == first),
        "the revoked key is no longer published: {list}"
    );
    let revocations = admin.json(&["revocation", "list"]);
    assert!(
        revocations["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "key" && e["value"] == first.as_str()),
        "{revocations}"
    );
    admin.json(&["keys", "rotate"]);

    // Rewrap under a new master key, the server stopped: afterwards only the new key
    // file opens the keys.
    let env: Vec<(String, String)> = running
        .env
        .iter()
        .filter(|(k, _)| k != "MAYFLY_LISTEN")
        .cloned()
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    drop(running.server);
    let d = running.dir.path();
    write_key(&d.join("new.key"), &format!("{}\n", "5a".repeat(32)));
    let missing = mayfly(
        d,
        &["keys", "rewrap", "--new-master-key-file", "absent.key"],
        &env,
    );
    assert!(
        stderr(&missing).contains("absent.key"),
        "{}",
        stderr(&missing)
    );
    assert!(!d.join("absent.key").exists(), "never generated");
    let rewrapped = json(&mayfly(
        d,
        &["keys", "rewrap", "--new-master-key-file", "new.key"],
        &env,
    ));
    assert_eq!(
        rewrapped["rewrapped"], 2,
        "the active and the next key, not the gone one"
    );
    let old_key = serve_until_ready(d, &env).unwrap_err();
    assert!(old_key.contains("does not decrypt"), "{old_key}");
    write_key(&d.join("newer.key"), &format!("{}\n", "6b".repeat(32)));
    let rewrap_old = mayfly(
        d,
        &["keys", "rewrap", "--new-master-key-file", "newer.key"],
        &env,
    );
    assert!(
        stderr(&rewrap_old).contains("does not decrypt"),
        "{}",
        stderr(&rewrap_old)
    );
    let new_key = [&env[..], &[("MAYFLY_MASTER_KEY_FILE", "new.key")]].concat();
    serve_until_ready(d, &new_key).unwrap();
}

/// A running `mayfly serve`, stopped (killed) when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `mayfly serve` on `listen` with `env` and waits until it is ready.
fn serve_with(dir: &Path, listen: &str, env: &[(&str, &str)]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mayfly"));
    command
        .arg("serve")
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("MAYFLY_LISTEN", listen)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("MAYFLY_") && k != "MAYFLY_LISTEN" {
            command.env_remove(k);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let server = Server(child);
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("mayfly ready") => break,
            Ok(_) => {}
            Err(e) => panic!("mayfly serve did not get ready: {e}"),
        }
    }
    server
}

/// Runs `mayfly` with `input` on standard input (not a terminal: the password prompt
/// reads one line from it).
fn mayfly_with_input(dir: &Path, args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    use std::io::Write as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_mayfly"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("MAYFLY_") {
            command.env_remove(k);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout_line(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", stderr(output));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `mayfly login` stores a user's tokens in a 0600 file (password read without echo, here
/// from standard input); `mayfly token` prints a valid token from it, refreshing (and
/// rotating the refresh token) when asked for more validity than it has left.
#[test]
fn login_and_token_over_http() {
    let running = Running::start(mayfly_store::Backend::Sqlite, &[]);
    let admin = running.admin();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let no_env: &[(&str, &str)] = &[];
    let issuer = running.url.clone();
    let env_issuer = [("MAYFLY_ISSUER", issuer.as_str())];

    admin.json(&[
        "audience",
        "create",
        "--uri",
        "https://api.example/orders",
        "--scope",
        "orders:read",
    ]);
    let cli = admin.json(&[
        "client",
        "create",
        "--name",
        "mayfly-cli",
        "--grant-type",
        "password",
        "--grant-type",
        "refresh_token",
    ]);
    let user = admin.with_input(
        &["user", "create", "--username", "alice"],
        "correct horse battery staple\n",
    );
    let user_id = user["id"].as_str().unwrap().to_owned();
    admin.json(&[
        "grant",
        "create",
        "--user",
        &user_id,
        "--audience",
        "https://api.example/orders",
        "--scope",
        "orders:read",
    ]);

    let client_id = cli["id"].as_str().unwrap();
    let client_secret = cli["client_secret"].as_str().unwrap();
    let token_file = d.join("home/.config/mayfly/token.json");
    let token_file_arg = token_file.to_str().unwrap();
    let login_env = [
        ("MAYFLY_ISSUER", issuer.as_str()),
        ("MAYFLY_CLIENT_ID", client_id),
        ("MAYFLY_CLIENT_SECRET", client_secret),
    ];

    // A wrong password: refused, nothing stored.
    let refused = mayfly_with_input(
        d,
        &[
            "login",
            "--username",
            "alice",
            "--scope",
            "orders:read",
            "--token-file",
            token_file_arg,
        ],
        &login_env,
        "wrong password\n",
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("invalid_grant"),
        "{}",
        stderr(&refused)
    );
    assert!(!stderr(&refused).contains("wrong password\n"));
    assert!(!token_file.exists());

    // --print: the access token on stdout, nothing stored.
    let printed = stdout_line(&mayfly_with_input(
        d,
        &[
            "login",
            "--username",
            "alice",
            "--scope",
            "orders:read",
            "--print",
        ],
        &login_env,
        "correct horse battery staple\n",
    ));
    assert!(printed.starts_with("v4.public."), "{printed}");

    // Stored: username and password both from standard input.
    let out = mayfly_with_input(
        d,
        &[
            "login",
            "--scope",
            "orders:read",
            "--token-file",
            token_file_arg,
        ],
        &login_env,
        "alice\ncorrect horse battery staple\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing on stdout when storing");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let stored: Value = serde_json::from_slice(&std::fs::read(&token_file).unwrap()).unwrap();
    let first_refresh = stored["refresh_token"].as_str().unwrap().to_owned();
    assert!(first_refresh.starts_with("mfy_rt_"));
    let access = stored["access_token"].as_str().unwrap().to_owned();

    // `mayfly token`: the stored token while it is valid long enough.
    let token_args = ["token", "--token-file", token_file_arg];
    assert_eq!(stdout_line(&mayfly(d, &token_args, &env_issuer)), access);
    // Asked for more validity than it has: refreshed, the refresh token rotated.
    let refreshed = stdout_line(&mayfly(
        d,
        &["token", "--token-file", token_file_arg, "--min-valid", "1h"],
        no_env,
    ));
    assert!(refreshed.starts_with("v4.public.") && refreshed != access);
    let stored: Value = serde_json::from_slice(&std::fs::read(&token_file).unwrap()).unwrap();
    assert_eq!(stored["access_token"], refreshed.as_str());
    assert_ne!(stored["refresh_token"], first_refresh.as_str(), "rotated");
    assert_eq!(stdout_line(&mayfly(d, &token_args, no_env)), refreshed);
    // Concurrent refreshes take turns: none presents a refresh token another already
    // rotated (which the server would take for theft, ending the login).
    let racers: Vec<_> = (0..3)
        .map(|_| {
            let d = d.to_owned();
            let file = token_file_arg.to_owned();
            std::thread::spawn(move || {
                mayfly(
                    &d,
                    &["token", "--token-file", &file, "--min-valid", "1h"],
                    &[],
                )
            })
        })
        .collect();
    for racer in racers {
        let out = racer.join().unwrap();
        assert!(stdout_line(&out).starts_with("v4.public."));
    }
    let stored: Value = serde_json::from_slice(&std::fs::read(&token_file).unwrap()).unwrap();
    let refreshed = stored["access_token"].as_str().unwrap().to_owned();
    assert_eq!(stdout_line(&mayfly(d, &token_args, no_env)), refreshed);
    // The default place: $XDG_CONFIG_HOME/mayfly/token.json.
    let home = d.join("home/.config");
    let xdg = [("XDG_CONFIG_HOME", home.to_str().unwrap())];
    assert_eq!(stdout_line(&mayfly(d, &["token"], &xdg)), refreshed);

    // A file others may read is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = mayfly(d, &token_args, no_env);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // Logout ends the login at the server (RFC 7009) and deletes the file: a copy of the
    // file refreshes no more.
    let copy = d.join("copy.json");
    std::fs::copy(&token_file, &copy).unwrap();
    let out = mayfly(d, &["logout", "--token-file", token_file_arg], no_env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!token_file.exists());
    let out = mayfly(d, &token_args, no_env);
    assert!(stderr(&out).contains("mayfly login"), "{}", stderr(&out));
    let stale = mayfly(
        d,
        &[
            "token",
            "--token-file",
            copy.to_str().unwrap(),
            "--min-valid",
            "1h",
        ],
        no_env,
    );
    assert!(!stale.status.success());
    assert!(
        stderr(&stale).contains("invalid_grant"),
        "{}",
        stderr(&stale)
    );
}

/// The claims of a PASETO v4.public token (payload = claims JSON ‖ 64-byte signature),
/// read without verification: the server's own tests verify tokens elsewhere.
fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let body = token
        .strip_prefix("v4.public.")
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .unwrap();
    serde_json::from_slice(&raw[..raw.len() - 64]).unwrap()
}

/// Just-in-time access end to end with the CLI against a real server: a user logs in
/// and requests access, an approver (logged in too) approves from the CLI, the user's
/// next token carries the scope, and once the window (3 s) is over it does not.
#[test]
fn access_request_approved_from_the_cli_lasts_its_window() {
    let running = Running::start(mayfly_store::Backend::Sqlite, &[]);
    let admin = running.admin();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let issuer = running.url.clone();
    let db = "https://db.example/main";
    let password = "correct horse battery staple\n";

    admin.json(&["audience", "create", "--uri", db, "--scope", "db:read"]);
    let cli = admin.json(&[
        "client",
        "create",
        "--name",
        "mayfly-cli",
        "--grant-type",
        "password",
        "--grant-type",
        "refresh_token",
    ]);
    let mut users = Vec::new();
    for (name, scope) in [("alice", "mayfly:access"), ("bob", "mayfly:approve")] {
        let user = admin.with_input(&["user", "create", "--username", name], password);
        let id = user["id"].as_str().unwrap().to_owned();
        admin.json(&[
            "grant",
            "create",
            "--user",
            &id,
            "--audience",
            &issuer,
            "--scope",
            scope,
        ]);
        users.push(id);
    }
    let policy = admin.json(&[
        "access-policy",
        "create",
        "--name",
        "read the database",
        "--audience",
        db,
        "--scope",
        "db:read",
        "--subject",
        &format!("user:{}", users[0]),
        "--max-duration",
        "15m",
        "--decision",
        "approval",
        "--approvals",
        "1",
    ]);
    assert_eq!(policy["decision"], "approval");

    let client_id = cli["id"].as_str().unwrap();
    let client_secret = cli["client_secret"].as_str().unwrap();
    let login_env = [
        ("MAYFLY_ISSUER", issuer.as_str()),
        ("MAYFLY_CLIENT_ID", client_id),
        ("MAYFLY_CLIENT_SECRET", client_secret),
    ];
    let alice_file = d.join("alice.json");
    let bob_file = d.join("bob.json");
    for (name, scope, file) in [
        ("alice", "mayfly:access", &alice_file),
        ("bob", "mayfly:approve", &bob_file),
    ] {
        let out = mayfly_with_input(
            d,
            &[
                "login",
                "--username",
                name,
                "--scope",
                scope,
                "--resource",
                &issuer,
                "--token-file",
                file.to_str().unwrap(),
            ],
            &login_env,
            password,
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let as_alice = ["--token-file", alice_file.to_str().unwrap()];
    let as_bob = ["--token-file", bob_file.to_str().unwrap()];
    let db_token = || {
        mayfly_with_input(
            d,
            &[
                "login",
                "--username",
                "alice",
                "--scope",
                "db:read",
                "--resource",
                db,
                "--print",
            ],
            &login_env,
            password,
        )
    };
    let before = db_token();
    assert!(!before.status.success(), "no access before the request");

    let requested = json(&mayfly(
        d,
        &[
            &["access", "request", "--audience", db, "--scope", "db:read"][..],
            &["--for", "3s", "--reason", "incident 4711"],
            &as_alice,
        ]
        .concat(),
        &[],
    ));
    assert_eq!(requested["state"], "pending", "{requested}");
    let id = requested["id"].as_str().unwrap().to_owned();

    // The requester cannot approve; the approver sees it in the queue and approves.
    let own = mayfly(
        d,
        &[&["access", "approve", &id][..], &as_alice].concat(),
        &[],
    );
    assert!(!own.status.success());
    assert!(stderr(&own).contains("403"), "{}", stderr(&own));
    let queue = json(&mayfly(
        d,
        &[&["access", "queue"][..], &as_bob].concat(),
        &[],
    ));
    assert_eq!(queue["items"][0]["id"], id.as_str(), "{queue}");
    let approved = json(&mayfly(
        d,
        &[
            &["access", "approve", &id, "--comment", "go ahead"][..],
            &as_bob,
        ]
        .concat(),
        &[],
    ));
    assert_eq!(approved["state"], "approved", "{approved}");

    // An approver's own `mayfly login` serves `mayfly admin` too (a token-file profile,
    // renewed with its refresh token).
    let approver = Admin::new(&issuer);
    let out = mayfly(
        approver.dir.path(),
        &["admin", "login", "--token-file", bob_file.to_str().unwrap()],
        &approver.env(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let done = approver.json(&["access", "queue", "--state", "approved"]);
    assert_eq!(done["items"][0]["id"], id.as_str(), "{done}");
    let refused = approver.run(&["client", "list"]);
    assert!(
        stderr(&refused).contains("mayfly:admin:clients"),
        "{}",
        stderr(&refused)
    );

    // The next token carries the scope, and ends with the window.
    let token = stdout_line(&db_token());
    let claims = claims_of(&token);
    assert_eq!(claims["scope"], "db:read");
    assert_eq!(claims["aud"], db);
    let mine = json(&mayfly(
        d,
        &[&["access", "list"][..], &as_alice].concat(),
        &[],
    ));
    assert_eq!(mine["items"][0]["state"], "approved");
    assert_eq!(mine["items"][0]["expires_at"], approved["expires_at"]);

    // After the window, no more: poll (real clock) rather than sleep a fixed time.
    let started = std::time::Instant::now();
    loop {
        let out = db_token();
        if !out.status.success() {
            assert!(stderr(&out).contains("invalid_scope"), "{}", stderr(&out));
            let end = time::OffsetDateTime::parse(
                approved["expires_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            #[allow(clippy::disallowed_methods)] // the real server's real clock
            let now = time::OffsetDateTime::now_utc();
            // Tokens have whole-second times: in the window's last second a token would
            // have no lifetime left.
            assert!(
                now >= end - time::Duration::seconds(1),
                "refused only once the window is (all but) over"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the grant outlived its window"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The SDK's example program with the path of its built binary: next to this test's
/// (`target/<profile>/examples/`), built first when it is not there yet.
fn federated_example() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let example = profile_dir.join("examples").join("federated");
    if !example.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "-q", "-p", "mayfly-sdk", "--example", "federated"])
            .status()
            .unwrap();
        assert!(built.success(), "building the federated example");
    }
    example
}

/// Issue #20: the SDK's `federated` example, as a workload with no secret would run it,
/// against a real `mayfly serve` set up with the operator's CLI and a test issuer
/// standing in for a Kubernetes cluster.
fn sdk_example_runs_with_a_platform_token(backend: mayfly_store::Backend) {
    use mayfly_federation::testing::{TestIssuer, TestKey, kubernetes_claims};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = runtime.block_on(TestIssuer::start(vec![TestKey::rsa("rsa-1", 0)]));
    let running = Running::start(backend, &[]);
    let admin = running.admin();
    let orders = "https://api.example/orders";
    admin.json(&[
        "audience",
        "create",
        "--uri",
        orders,
        "--scope",
        "orders:read",
    ]);
    let trusted = admin.json(&[
        "trusted-issuer",
        "create",
        "--issuer",
        cluster.issuer(),
        "--algorithm",
        "RS256",
        "--max-age",
        "10m",
    ]);
    let audience = trusted["settings"]["audience"].as_str().unwrap().to_owned();
    let worker = id_of(&admin.json(&[
        "client",
        "create",
        "--name",
        "payments-worker",
        "--no-secret",
    ]));
    admin.json(&[
        "client",
        "federated-identity",
        "add",
        &worker,
        "--issuer",
        cluster.issuer(),
        "--claim",
        "kubernetes.io/namespace=pay",
        "--claim",
        "kubernetes.io/serviceaccount/name=worker",
    ]);
    admin.json(&[
        "grant",
        "create",
        "--client",
        &worker,
        "--audience",
        orders,
        "--scope",
        "orders:read",
        "--reason",
        "example",
    ]);

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let project = |namespace: &str| {
        #[allow(clippy::disallowed_methods)] // the real server's real clock
        let now = time::OffsetDateTime::now_utc();
        let claims = kubernetes_claims(
            cluster.issuer(),
            &audience,
            now,
            namespace,
            "worker",
            "pod-1",
        );
        std::fs::write(&token_file, cluster.mint("rsa-1", &claims) + "\n").unwrap();
    };
    let example = || {
        Command::new(federated_example())
            .env("MAYFLY_ISSUER", &running.url)
            .env("MAYFLY_IDENTITY_TOKEN_FILE", &token_file)
            .env("ORDERS_AUDIENCE", orders)
            .env("WORKLOAD_SCOPES", "orders:read")
            .env("WORKLOAD_ROUNDS", "2")
            .output()
            .unwrap()
    };

    project("pay");
    let out = example();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        stderr(&out),
        String::from_utf8_lossy(&admin.run(&["audit", "search"]).stdout)
    );
    assert!(
        stdout.contains("round 1: token") && stdout.contains("round 2: token"),
        "{stdout}"
    );
    // The projected token was spent: the next process needs the kubelet's next one.
    let again = example();
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("InvalidClient"),
        "{}",
        stderr(&again)
    );
    project("pay");
    assert!(example().status.success());
    // Another namespace's service account speaks for no client.
    project("billing");
    let other = example();
    assert!(!other.status.success());
    assert!(
        stderr(&other).contains("InvalidClient"),
        "{}",
        stderr(&other)
    );
}

#[test]
fn sdk_example_runs_with_a_platform_token_sqlite() {
    sdk_example_runs_with_a_platform_token(mayfly_store::Backend::Sqlite);
}

#[test]
fn sdk_example_runs_with_a_platform_token_postgres() {
    sdk_example_runs_with_a_platform_token(mayfly_store::Backend::Postgres);
}
