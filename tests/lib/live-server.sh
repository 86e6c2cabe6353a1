#!/usr/bin/env bash
# Runs checks written in Python against a throwaway `mayfly serve` (SQLite, fresh
# master key, random loopback port) with a bootstrapped admin client. Used by
# tests/interop/run.sh (pyseto) and tests/authlib/run.sh (authlib clients).
#
# Usage: tests/lib/live-server.sh NAME REQUIREMENTS_TXT MAYFLY_BINARY SCRIPT...
#   Each SCRIPT runs as: <venv python> SCRIPT ISSUER ADMIN_CLIENT_ID ADMIN_CLIENT_SECRET
#   and fails the run by exiting non-zero. Afterwards the server log must not contain
#   the admin client secret.
# Environment:
#   CARGO_TARGET_DIR   where the venv lives: $CARGO_TARGET_DIR/NAME-venv (default <repo>/target)
#   PYTHON             interpreter used to create the venv (default python3)
#   MAYFLY_STARTUP_TIMEOUT   seconds to wait for /healthz (default 10)
set -euo pipefail

name="$1"; req="$2"; bin="$3"; shift 3
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac

startup_timeout="${MAYFLY_STARTUP_TIMEOUT:-10}"
python="${PYTHON:-python3}"

say() { echo "$name: $*" >&2; }
die() { echo "$name: FAIL: $*" >&2; exit 1; }

[ -x "$bin" ] || die "mayfly binary not found or not executable: $bin (build it first: cargo build -p mayfly-server --bin mayfly)"
command -v "$python" >/dev/null || die "$python not found on PATH"

# --- Python venv with the pinned, hash-checked requirements -----------------
venv="$target_dir/$name-venv"
mkdir -p "$target_dir"
if command -v flock >/dev/null; then
    exec 9>"$target_dir/$name-venv.lock"
    flock 9
fi
want_stamp="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null || true)" != "$want_stamp" ]; then
    say "creating $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv" \
        || die "could not create a venv with $python (on Debian: apt-get install python3-venv)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --require-hashes -r "$req" \
        || { rm -rf "$venv"; die "pip install -r $req failed"; }
    echo "$want_stamp" >"$venv/.requirements.sha256"
fi
if command -v flock >/dev/null; then
    exec 9>&-   # release the lock (and keep the fd out of the server process)
fi
py="$venv/bin/python"

# --- Throwaway server -------------------------------------------------------
tmp="$(mktemp -d "${TMPDIR:-/tmp}/mayfly-$name.XXXXXX")"
server_pid=""
serve_log="$tmp/serve.log"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ] && [ -e "$serve_log" ]; then
        if [ -s "$serve_log" ]; then
            echo "----- mayfly serve log (last 200 lines) -----" >&2
            tail -n 200 "$serve_log" >&2 || true
            echo "----- end of mayfly serve log -----" >&2
        else
            echo "$name: (mayfly serve wrote no log output)" >&2
        fi
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
issuer="http://127.0.0.1:$port"

export MAYFLY_LISTEN="127.0.0.1:$port"
export MAYFLY_ISSUER="$issuer"
export MAYFLY_DATABASE_URL="sqlite://$tmp/mayfly.db"
export MAYFLY_MASTER_KEY_FILE="$tmp/master.key"   # created (0600) by the server
export MAYFLY_LOG_FORMAT=text
# Log everything, so the secret check below also covers debug output.
export RUST_LOG=debug,hyper=info,h2=info,sqlx=info,reqwest=info,rustls=info
# Checks append every secret, password and token they use here, one per line.
export MAYFLY_CHECK_SECRETS_FILE="$tmp/secrets.txt"
: >"$MAYFLY_CHECK_SECRETS_FILE"

say "starting $bin serve on $MAYFLY_LISTEN"
"$bin" serve >"$serve_log" 2>&1 </dev/null &
server_pid=$!

# One Python process polls /healthz and watches the server process.
set +e
"$py" - "$issuer/healthz" "$server_pid" "$startup_timeout" <<'EOF'
import os, sys, time, urllib.request
url, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(3)
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
probe_rc=$?
set -e
case "$probe_rc" in
    0) ;;
    3)
        set +e; wait "$server_pid"; serve_status=$?; set -e
        server_pid=""
        die "mayfly serve exited with status $serve_status before answering $issuer/healthz" ;;
    *) die "mayfly serve did not answer 200 on $issuer/healthz within ${startup_timeout}s" ;;
esac

# With SQLite the server creates a missing master key file, owner-only.
[ -f "$MAYFLY_MASTER_KEY_FILE" ] || die "mayfly serve did not create the master key file $MAYFLY_MASTER_KEY_FILE"
key_mode="$(stat -c '%a' "$MAYFLY_MASTER_KEY_FILE")"
[ "$key_mode" = 600 ] || die "master key file was created with mode $key_mode, expected 600"
grep -Eqx '[0-9a-fA-F]{64}' "$MAYFLY_MASTER_KEY_FILE" \
    || die "master key file does not hold exactly 64 hex characters"

say "bootstrapping the admin client"
bootstrap_err="$tmp/bootstrap.err"
if ! creds_json="$("$bin" admin bootstrap 2>"$bootstrap_err" </dev/null)"; then
    cat "$bootstrap_err" >&2
    die "mayfly admin bootstrap failed"
fi
if ! creds="$(printf '%s' "$creds_json" | "$py" -c '
import json, sys
try:
    d = json.load(sys.stdin)
    cid, secret = d["client_id"], d["client_secret"]
    assert isinstance(cid, str) and cid and "\n" not in cid, "bad client_id"
    assert isinstance(secret, str) and secret.startswith("mfy_cs_") and "\n" not in secret, \
        "client_secret does not start with mfy_cs_"
except Exception as err:
    sys.exit(f"cannot use the bootstrap output: {err!r}")
print(cid)
print(secret)
')"; then
    echo "mayfly admin bootstrap stdout was: $creds_json" >&2
    die "mayfly admin bootstrap did not print {\"client_id\":...,\"client_secret\":\"mfy_cs_...\"}"
fi
{ read -r client_id; read -r client_secret; } <<<"$creds"

for check in "$@"; do
    say "running $(basename "$check")"
    "$py" "$check" "$issuer" "$client_id" "$client_secret" \
        || die "$(basename "$check") failed (see above)"
done

# No secret, password or token used above may appear in the logs or the audit log.
echo "$client_secret" >>"$MAYFLY_CHECK_SECRETS_FILE"
audit_dump="$tmp/audit.jsonl"
export MAYFLY_PROFILE="$tmp/profile.json"
printf '%s' "$client_secret" | "$bin" admin login --client-id "$client_id" 2>"$tmp/audit.err" \
    || { cat "$tmp/audit.err" >&2; die "mayfly admin login failed"; }
"$bin" admin audit search --all -o json >"$audit_dump" 2>"$tmp/audit.err" </dev/null \
    || { cat "$tmp/audit.err" >&2; die "mayfly admin audit search failed"; }
[ -s "$audit_dump" ] || die "the audit log is empty"
grep -v '^$' "$MAYFLY_CHECK_SECRETS_FILE" >"$tmp/needles.txt" || true
say "checking $(wc -l <"$tmp/needles.txt") secrets against $(wc -l <"$serve_log") log lines and the audit log ($(grep -c "\"occurred_at\"" "$audit_dump") events)"
if grep -qF -f "$tmp/needles.txt" "$serve_log" "$bootstrap_err"; then
    die "a secret or token appears in the mayfly logs"
fi
if grep -qF -f "$tmp/needles.txt" "$audit_dump"; then
    die "a secret or token appears in the audit log"
fi

say "OK"
