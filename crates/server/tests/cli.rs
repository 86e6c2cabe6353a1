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

#[test]
fn admin_commands_print_json_and_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let no_env: &[(&str, &str)] = &[];

    let boot = json(&mayfly(d, &["admin", "bootstrap"], no_env));
    assert!(
        boot["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("mfy_cs_")
    );
    assert!(
        d.join("mayfly.db").exists(),
        "SQLite file created on first use"
    );
    let again = mayfly(d, &["admin", "bootstrap"], no_env);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already bootstrapped"),
        "{}",
        stderr(&again)
    );

    let audience = json(&mayfly(
        d,
        &[
            "admin",
            "audience",
            "create",
            "--uri",
            "https://api.example/orders",
            "--scope",
            "orders:read",
        ],
        no_env,
    ));
    assert_eq!(audience["scopes"], serde_json::json!(["orders:read"]));
    let added = json(&mayfly(
        d,
        &[
            "admin",
            "scope",
            "add",
            "--audience",
            "https://api.example/orders",
            "orders:write",
        ],
        no_env,
    ));
    assert_eq!(added["scopes"], serde_json::json!(["orders:write"]));
    let client = json(&mayfly(
        d,
        &[
            "admin", "client", "create", "--name", "worker", "--ttl", "2m",
        ],
        no_env,
    ));
    let id = client["client_id"].as_str().unwrap().to_owned();
    let grant = json(&mayfly(
        d,
        &[
            "admin",
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
        ],
        no_env,
    ));
    assert_eq!(grant["scopes"], serde_json::json!(["orders:read"]));
    let secret = json(&mayfly(
        d,
        &["admin", "client", "add-secret", &id, "--expires-in", "1d"],
        no_env,
    ));
    assert!(
        secret["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("mfy_cs_")
    );
    let third = mayfly(d, &["admin", "client", "add-secret", &id], no_env);
    assert!(!third.status.success(), "at most two valid secrets");
    assert_eq!(
        json(&mayfly(d, &["admin", "client", "disable", &id], no_env))["enabled"],
        false
    );

    for (args, needle) in [
        (
            vec!["admin", "audience", "create", "--uri", "not a uri"],
            "invalid uri",
        ),
        (
            vec![
                "admin",
                "audience",
                "create",
                "--uri",
                "https://api.example/orders",
            ],
            "already exists",
        ),
        (
            vec![
                "admin",
                "scope",
                "add",
                "--audience",
                "https://api.example/orders",
                "bad scope",
            ],
            "invalid scope",
        ),
        (
            vec![
                "admin",
                "grant",
                "create",
                "--client",
                &id,
                "--audience",
                "https://nowhere.example",
                "--scope",
                "a:b",
            ],
            "invalid audience: no such audience",
        ),
        (
            vec![
                "admin",
                "grant",
                "create",
                "--client",
                &id,
                "--audience",
                "https://api.example/orders",
                "--scope",
                "orders:delete",
            ],
            "invalid scopes: every scope must exist",
        ),
    ] {
        let out = mayfly(d, &args, no_env);
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
    let migrated = mayfly(d, &["migrate"], no_env);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
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
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn keys_commands_list_rotate_and_rewrap() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let no_env: &[(&str, &str)] = &[];
    assert_eq!(
        json(&mayfly(d, &["keys", "list"], no_env))["keys"],
        serde_json::json!([])
    );

    // Rotate now: the first start creates the active key, then a successor is
    // published; it cannot sign before the publish lead (1h) has passed.
    let pending = json(&mayfly(d, &["keys", "rotate"], no_env));
    assert_eq!(pending["status"], "pending", "{pending}");
    let next = pending["next"].as_str().unwrap().to_owned();
    assert!(next.starts_with("k4.pid."));
    assert!(pending["activates_at"].as_str().is_some());
    let list = json(&mayfly(d, &["keys", "list"], no_env));
    let keys = states(&list);
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&(next.clone(), "next".into())));
    let first = keys.iter().find(|(_, s)| s == "active").unwrap().0.clone();
    let dump = list.to_string();
    assert!(
        !dump.contains("private") && !dump.contains("paserk"),
        "no key material: {dump}"
    );

    // Emergency: the published successor signs at once; the old key is revoked.
    let emergency = json(&mayfly(d, &["keys", "rotate", "--emergency"], no_env));
    assert_eq!(
        (emergency["status"].as_str(), emergency["active"].as_str()),
        (Some("activated"), Some(next.as_str())),
        "{emergency}"
    );
    let list = json(&mayfly(d, &["keys", "list"], no_env));
    let old = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == first.as_str())
        .unwrap();
    assert_eq!(old["state"], "gone");
    assert!(old["revoked_at"].as_str().is_some());
    json(&mayfly(d, &["keys", "rotate"], no_env));

    // Rewrap under a new master key: afterwards only the new key file opens the keys.
    write_key(&d.join("new.key"), &format!("{}\n", "5a".repeat(32)));
    let missing = mayfly(
        d,
        &["keys", "rewrap", "--new-master-key-file", "absent.key"],
        no_env,
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
        no_env,
    ));
    assert_eq!(
        rewrapped["rewrapped"], 2,
        "the active and the next key, not the gone one"
    );
    let old_key = serve_until_ready(d, no_env).unwrap_err();
    assert!(old_key.contains("does not decrypt"), "{old_key}");
    let rotate_old = mayfly(d, &["keys", "rotate"], no_env);
    assert!(
        stderr(&rotate_old).contains("does not decrypt"),
        "{}",
        stderr(&rotate_old)
    );
    let new_key = [("MAYFLY_MASTER_KEY_FILE", "new.key")];
    serve_until_ready(d, &new_key).unwrap();
    let again = json(&mayfly(d, &["keys", "rotate"], &new_key));
    assert_eq!(again["status"], "pending");
}

/// A running `mayfly serve`, stopped (killed) when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `mayfly serve` on `listen` and waits until it is ready.
fn serve(dir: &Path, listen: &str) -> Server {
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
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let no_env: &[(&str, &str)] = &[];
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let issuer = format!("http://{listen}");
    let env_issuer = [("MAYFLY_ISSUER", issuer.as_str())];

    json(&mayfly(
        d,
        &[
            "admin",
            "audience",
            "create",
            "--uri",
            "https://api.example/orders",
            "--scope",
            "orders:read",
        ],
        no_env,
    ));
    let cli = json(&mayfly(
        d,
        &[
            "admin",
            "client",
            "create",
            "--name",
            "mayfly-cli",
            "--grant-type",
            "password",
            "--grant-type",
            "refresh_token",
        ],
        no_env,
    ));
    let user = json(&mayfly_with_input(
        d,
        &["admin", "user", "create", "--username", "alice"],
        no_env,
        "correct horse battery staple\n",
    ));
    let user_id = user["id"].as_str().unwrap().to_owned();
    json(&mayfly(
        d,
        &[
            "admin",
            "grant",
            "create",
            "--user",
            &user_id,
            "--audience",
            "https://api.example/orders",
            "--scope",
            "orders:read",
        ],
        no_env,
    ));
    let _server = serve(d, &listen);

    let client_id = cli["client_id"].as_str().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let issuer = format!("http://{listen}");
    let env_issuer = [("MAYFLY_ISSUER", issuer.as_str())];
    let db = "https://db.example/main";
    let password = "correct horse battery staple\n";

    json(&mayfly(d, &["admin", "bootstrap"], &env_issuer));
    json(&mayfly(
        d,
        &[
            "admin", "audience", "create", "--uri", db, "--scope", "db:read",
        ],
        &env_issuer,
    ));
    let cli = json(&mayfly(
        d,
        &[
            "admin",
            "client",
            "create",
            "--name",
            "mayfly-cli",
            "--grant-type",
            "password",
            "--grant-type",
            "refresh_token",
        ],
        &env_issuer,
    ));
    let mut users = Vec::new();
    for (name, scope) in [("alice", "mayfly:access"), ("bob", "mayfly:approve")] {
        let user = json(&mayfly_with_input(
            d,
            &["admin", "user", "create", "--username", name],
            &env_issuer,
            password,
        ));
        let id = user["id"].as_str().unwrap().to_owned();
        json(&mayfly(
            d,
            &[
                "admin",
                "grant",
                "create",
                "--user",
                &id,
                "--audience",
                &issuer,
                "--scope",
                scope,
            ],
            &env_issuer,
        ));
        users.push(id);
    }
    let policy = json(&mayfly(
        d,
        &[
            "admin",
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
        ],
        &env_issuer,
    ));
    assert_eq!(policy["decision"], "approval");
    let _server = serve(d, &listen);

    let client_id = cli["client_id"].as_str().unwrap();
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
