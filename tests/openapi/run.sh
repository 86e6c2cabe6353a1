#!/usr/bin/env bash
# OpenAPI conformance check:
#   1. validates the committed openapi/openapi.json with openapi-spec-validator
#      (OpenAPI 3.1);
#   2. starts a throwaway `mayfly serve` (SQLite, fresh master key, random
#      loopback port), bootstraps an admin client, obtains a `mayfly:admin`
#      access token, and runs schemathesis against the live server's
#      /openapi.json with the checks not_a_server_error (no 5xx),
#      status_code_conformance, content_type_conformance,
#      response_schema_conformance and response_headers_conformance. It also
#      fails on the warnings that mean checks were silently skipped
#      (unresolvable $ref, undeserializable media type) or that the
#      credentials did not work (missing_auth). When the served document
#      differs from the committed one, it is validated too.
#
# Authentication follows the document's security requirements: operations that
# require the `bearer` scheme get `Authorization: Bearer <admin token>`, the
# token endpoint (`client_secret_basic`) gets the admin client's Basic
# credentials, the rest get none. Schemathesis also sends negative cases
# (random forms, missing or garbled credentials...): the server must answer
# them with a documented 4xx and body, never a 5xx. A fixed dictionary feeds
# `grant_type=client_credentials`, known scopes and the issuer as `resource` to
# the token endpoint part of the time, so that fuzzing gets past the grant type
# check, and the key set's current ETag as If-None-Match to
# /.well-known/jwks.json, so that its 304 answers are checked too. The stateful
# phase (OpenAPI links) is not run.
#
# The run is deterministic (Hypothesis derandomized) unless MAYFLY_OPENAPI_SEED
# is set; at most MAYFLY_OPENAPI_MAX_EXAMPLES cases per operation and phase.
#
# Usage: tests/openapi/run.sh [PATH_TO_MAYFLY_BINARY]
#   default binary: ${CARGO_TARGET_DIR:-<repo>/target}/debug/mayfly
# Environment:
#   CARGO_TARGET_DIR                   where the venv lives: $CARGO_TARGET_DIR/openapi-venv
#   PYTHON                             interpreter used to create the venv (default python3)
#   MAYFLY_OPENAPI_STARTUP_TIMEOUT     seconds to wait for /healthz (default 10)
#   MAYFLY_OPENAPI_MAX_EXAMPLES        schemathesis --max-examples (default 30)
#   MAYFLY_OPENAPI_SEED                if set, a seeded random run (--seed N) instead of
#                                      the deterministic one
#   MAYFLY_OPENAPI_TIMEOUT             hard limit in seconds on the schemathesis run
#                                      (default 180; keep it under the token's 300 s life)
#   MAYFLY_OPENAPI_SCHEMATHESIS_ARGS   extra arguments appended to `schemathesis run`,
#                                      split on whitespace, e.g.
#                                      "--exclude-path /readyz" or
#                                      "--report junit,vcr --report-dir target/openapi-report"
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac

bin="${1:-$target_dir/debug/mayfly}"
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac

startup_timeout="${MAYFLY_OPENAPI_STARTUP_TIMEOUT:-10}"
max_examples="${MAYFLY_OPENAPI_MAX_EXAMPLES:-30}"
seed="${MAYFLY_OPENAPI_SEED:-}"
run_timeout="${MAYFLY_OPENAPI_TIMEOUT:-180}"
python="${PYTHON:-python3}"
spec="$repo_root/openapi/openapi.json"

say() { echo "openapi: $*" >&2; }
die() { echo "openapi: FAIL: $*" >&2; exit 1; }

[ -x "$bin" ] || die "mayfly binary not found or not executable: $bin (build it first: cargo build -p mayfly-server --bin mayfly)"
[ -f "$spec" ] || die "committed OpenAPI document not found: $spec"
command -v "$python" >/dev/null || die "$python not found on PATH"
command -v timeout >/dev/null || die "timeout (coreutils) not found on PATH"
[[ "$max_examples" =~ ^[1-9][0-9]*$ ]] || die "MAYFLY_OPENAPI_MAX_EXAMPLES must be a positive integer, got: $max_examples"
[[ "$run_timeout" =~ ^[1-9][0-9]*$ ]] || die "MAYFLY_OPENAPI_TIMEOUT must be a positive integer, got: $run_timeout"
[ -z "$seed" ] || [[ "$seed" =~ ^[0-9]+$ ]] || die "MAYFLY_OPENAPI_SEED must be a non-negative integer, got: $seed"
extra_args=()
read -r -a extra_args <<<"${MAYFLY_OPENAPI_SCHEMATHESIS_ARGS:-}"

# --- Python venv with the pinned, hash-checked requirements -----------------
venv="$target_dir/openapi-venv"
req="$script_dir/requirements.txt"
mkdir -p "$target_dir"
if command -v flock >/dev/null; then
    exec 9>"$target_dir/openapi-venv.lock"
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
st="$venv/bin/schemathesis"
validator="$venv/bin/openapi-spec-validator"

passed=0
failed=0
failures=()

# --- 1. The committed document is valid OpenAPI 3.1 -------------------------
say "validating ${spec#"$repo_root"/} with openapi-spec-validator"
if "$validator" --schema 3.1 --validation-errors all "$spec"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    failures+=("openapi-spec-validator rejected ${spec#"$repo_root"/}")
fi

# --- Throwaway server -------------------------------------------------------
tmp="$(mktemp -d "${TMPDIR:-/tmp}/mayfly-openapi.XXXXXX")"
server_pid=""
st_pid=""
serve_log="$tmp/serve.log"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$st_pid" ] && kill -0 "$st_pid" 2>/dev/null; then
        kill -TERM "$st_pid" 2>/dev/null || true   # timeout passes it on to schemathesis
        wait "$st_pid" 2>/dev/null || true
    fi
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
            echo "openapi: (mayfly serve wrote no log output)" >&2
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
    assert isinstance(cid, str) and cid and "\n" not in cid and ":" not in cid, "bad client_id"
    assert isinstance(secret, str) and secret and "\n" not in secret, "bad client_secret"
except Exception as err:
    sys.exit(f"openapi: cannot use the bootstrap output: {err!r}")
print(cid)
print(secret)
')"; then
    echo "mayfly admin bootstrap stdout was: $creds_json" >&2
    die "mayfly admin bootstrap did not print {\"client_id\":...,\"client_secret\":...}"
fi
{ read -r client_id; read -r client_secret; } <<<"$creds"

# The credentials reach Python and schemathesis through the environment only,
# never on a command line.
say "obtaining a mayfly:admin access token"
if ! access_token="$(MAYFLY_OPENAPI_CLIENT_ID="$client_id" MAYFLY_OPENAPI_CLIENT_SECRET="$client_secret" \
    "$py" - "$issuer/oauth2/token" <<'EOF'
import base64, json, os, sys, urllib.error, urllib.parse, urllib.request
url = sys.argv[1]
basic = base64.b64encode(
    (urllib.parse.quote(os.environ["MAYFLY_OPENAPI_CLIENT_ID"], safe="") + ":"
     + urllib.parse.quote(os.environ["MAYFLY_OPENAPI_CLIENT_SECRET"], safe="")).encode()
).decode()
req = urllib.request.Request(
    url,
    data=urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "mayfly:admin"}).encode(),
    headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
    method="POST",
)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.load(r)
except urllib.error.HTTPError as err:
    sys.exit(f"openapi: token request answered {err.code}: {err.read()[:500]!r}")
except Exception as err:
    sys.exit(f"openapi: token request failed: {err!r}")
token = body.get("access_token") if isinstance(body, dict) else None
if not isinstance(token, str) or not token.startswith("v4.public.") or "\n" in token:
    sys.exit("openapi: the token response has no v4.public access_token")
if str(body.get("token_type", "")).lower() != "bearer":
    sys.exit(f"openapi: token_type is {body.get('token_type')!r}, expected Bearer")
print(token)
EOF
)"; then
    die "could not obtain an admin access token"
fi

# Schemathesis tests what the binary serves, the validator above what is committed:
# when they differ (binary built from another tree), validate the served one too.
if ! "$py" - "$issuer/openapi.json" "$spec" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    served = json.load(r)
with open(sys.argv[2], encoding="utf-8") as f:
    committed = json.load(f)
sys.exit(0 if served == committed else 1)
EOF
then
    say "note: the served /openapi.json differs from openapi/openapi.json (binary and tree out of step?); validating it as well"
    served_spec="$tmp/served-openapi.json"
    "$py" -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=10).read())' \
        "$issuer/openapi.json" >"$served_spec"
    if "$validator" --schema 3.1 --validation-errors all "$served_spec"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures+=("openapi-spec-validator rejected the served /openapi.json")
    fi
fi

# The key set's current ETag, so that fuzzing also sends matching If-None-Match
# headers and checks the 304 answers: a TOML array of strings.
if ! etag_values="$("$py" - "$issuer/.well-known/jwks.json" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    etag = r.headers.get("ETag")
if not etag:
    sys.exit("openapi: GET /.well-known/jwks.json sent no ETag")
print("[" + ", ".join(json.dumps(v, ensure_ascii=True) for v in (etag, f'"mayfly-x", {etag}', "*")) + "]")
EOF
)"; then
    die "could not read the key set's ETag"
fi

# --- 2. Schemathesis against the live server --------------------------------
# Secrets are referenced as ${VAR} and resolved by schemathesis from its
# environment; its output masks the Authorization header.
config="$tmp/schemathesis.toml"
cat >"$config" <<EOF
[cache]
enabled = false

# Warnings that mean some checks silently did not run, or the token did not work.
[warnings]
fail-on = ["unresolvable_reference", "missing_deserializer", "missing_auth"]

[auth.openapi.bearer]
bearer = "\${MAYFLY_OPENAPI_ACCESS_TOKEN}"

[auth.openapi.client_secret_basic]
username = "\${MAYFLY_OPENAPI_CLIENT_ID}"
password = "\${MAYFLY_OPENAPI_CLIENT_SECRET}"

[dictionaries.grant_type]
values = ["client_credentials"]

[dictionaries.scope]
values = ["mayfly:admin", "mayfly:admin mayfly:admin", "mayfly:unknown"]

[dictionaries.resource]
values = ["$issuer", "$issuer/", "urn:mayfly:unknown"]

[dictionaries.etag]
values = $etag_values

[[operations]]
include-path = "/oauth2/token"
include-method = "POST"
parameters = { "body.grant_type" = { dictionary = "grant_type", probability = 0.8 }, "body.scope" = { dictionary = "scope", probability = 0.5 }, "body.resource" = { dictionary = "resource", probability = 0.3 } }

[[operations]]
include-path = "/.well-known/jwks.json"
include-method = "GET"
parameters = { "header.If-None-Match" = { dictionary = "etag", probability = 0.5 } }
EOF

if [ -n "$seed" ]; then
    generation=(--seed "$seed" --generation-database none)
else
    generation=(--generation-deterministic)
fi
st_args=(
    run "$issuer/openapi.json"
    --phases "examples,coverage,fuzzing"
    --checks "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance"
    --max-examples "$max_examples"
    "${generation[@]}"
    --workers 1
    --request-timeout 10
    --continue-on-failure
    # The revocation stream is endless by design (SSE); its e2e tests cover it.
    --exclude-path /v1/revocations/stream
    # An emergency rotation revokes every token signed so far, the fuzzer's own
    # included; its e2e tests cover it.
    --exclude-path /admin/v1/keys/rotate
    "${extra_args[@]}"
)
say "running: schemathesis --config-file <tmp>/schemathesis.toml ${st_args[*]}"
started=$SECONDS
# In the background so that INT/TERM reach the traps at once (bash runs a trap
# only after the foreground command ends); cleanup stops it.
MAYFLY_OPENAPI_ACCESS_TOKEN="$access_token" \
MAYFLY_OPENAPI_CLIENT_ID="$client_id" \
MAYFLY_OPENAPI_CLIENT_SECRET="$client_secret" \
HYPOTHESIS_STORAGE_DIRECTORY="$tmp/hypothesis" \
    timeout --kill-after=10 "$run_timeout" "$st" --config-file "$config" "${st_args[@]}" </dev/null &
st_pid=$!
# A heartbeat, so a minute of fuzzing does not look like a hang.
began=$(date +%s)
( while sleep 10; do say "schemathesis still running ($(( $(date +%s) - began ))s)"; done ) &
beat=$!
set +e
wait "$st_pid"
st_rc=$?
set -e
kill "$beat" 2>/dev/null || true
st_pid=""
elapsed=$((SECONDS - started))
case "$st_rc" in
    0)
        passed=$((passed + 1)) ;;
    1)
        failed=$((failed + 1))
        failures+=("schemathesis reported failures or failing warnings (see its report above)") ;;
    124|137)
        failed=$((failed + 1))
        failures+=("schemathesis did not finish within ${run_timeout}s (MAYFLY_OPENAPI_TIMEOUT)") ;;
    *)
        failed=$((failed + 1))
        failures+=("schemathesis exited with status $st_rc (usage or schema loading error? see above)") ;;
esac
say "schemathesis took ${elapsed}s"

# The service must never log a client secret or a token.
if grep -qF -e "$client_secret" -e "$access_token" "$serve_log" "$bootstrap_err"; then
    failed=$((failed + 1))
    failures+=("a client secret or access token appears in the mayfly logs")
else
    passed=$((passed + 1))
fi

if [ "$failed" -eq 0 ]; then
    echo "openapi: PASS: ${spec#"$repo_root"/} is valid OpenAPI 3.1; schemathesis found no failures against $bin"
else
    # Show the server's side before the verdict, and not again from the trap.
    if [ -s "$serve_log" ]; then
        echo "----- mayfly serve log (last 200 lines) -----" >&2
        tail -n 200 "$serve_log" >&2 || true
        echo "----- end of mayfly serve log -----" >&2
    fi
    rm -f "$serve_log"
    verdict="${failures[0]}"
    for f in "${failures[@]:1}"; do
        verdict="$verdict; $f"
    done
    echo "openapi: FAIL: $verdict"
fi
echo "openapi: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
