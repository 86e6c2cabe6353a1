//! The `mayfly` binary as an operator uses it: admin commands print JSON, the service
//! they set up issues tokens, and bad configuration stops with one line naming the
//! setting.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

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
    ] {
        let out = mayfly(d, &["serve"], &env);
        assert!(!out.status.success(), "{env:?} started");
        assert!(stderr(&out).contains(needle), "{env:?}: {}", stderr(&out));
    }
    std::fs::write(d.join("bad.key"), "not hex").unwrap();
    let out = mayfly(d, &["serve"], &[("MAYFLY_MASTER_KEY_FILE", "bad.key")]);
    assert!(
        stderr(&out).contains("64 hex characters"),
        "{}",
        stderr(&out)
    );
}
