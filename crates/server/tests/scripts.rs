//! Checks that live outside Rust, run as part of `cargo test` so the one test command
//! covers them: an independent PASETO implementation (pyseto) verifies our tokens, a
//! third-party OAuth client (authlib) completes the flows, nginx asks `mayfly gateway`, and
//! the compose file validates, and the README tour runs as written.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a script with its output going straight to the terminal, so the long phases
/// (venv creation, schemathesis' minute of fuzzing) show their progress as they go.
fn run(script: &str, args: &[&str]) {
    eprintln!("scripts: running {script}");
    let status = Command::new("bash")
        .arg(repo_root().join(script))
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status();
    match status {
        Ok(status) => assert!(
            status.success(),
            "{script} failed ({status}); its output is above"
        ),
        Err(e) => panic!("could not run {script}: {e}"),
    }
}

#[test]
fn pyseto_verifies_mayfly_tokens() {
    run("tests/interop/run.sh", &[env!("CARGO_BIN_EXE_mayfly")]);
}

#[test]
fn compose_file_validates() {
    run("tests/compose/check.sh", &[]);
}

/// The committed OpenAPI document is valid OpenAPI 3.1, and schemathesis, fuzzing the
/// live server with an admin token, finds no 5xx and no response that breaks the schema.
#[test]
fn openapi_validates_and_fuzzing_finds_nothing() {
    run("tests/openapi/run.sh", &[env!("CARGO_BIN_EXE_mayfly")]);
}

/// Real third-party OAuth clients (Python's authlib) complete every flow Mayfly offers.
#[test]
fn authlib_clients_complete_the_flows() {
    run("tests/authlib/run.sh", &[env!("CARGO_BIN_EXE_mayfly")]);
}

/// nginx `auth_request` in front of a tiny upstream asks `mayfly gateway`: identity
/// headers on success, 403/401 refusals, revocation within a second, DPoP proofs, no
/// spoofed identity header reaches the upstream (nginx installed with apt if missing).
#[test]
fn nginx_asks_the_gateway_before_each_request() {
    run("tests/gateway/run.sh", &[env!("CARGO_BIN_EXE_mayfly")]);
}

/// The README's tour, run as written: every `sh` block in order, in bash with curl and
/// jq, against the server the tour itself starts (issue #19).
#[test]
fn readme_tour_runs_as_written() {
    run("tests/tour/run.sh", &[env!("CARGO_BIN_EXE_mayfly")]);
}
