#!/usr/bin/env bash
# Memory over a long issuance load: a release `mayfly serve` under wrk (client_credentials,
# durable audit) for MINUTES, its RSS sampled every STEP seconds. Prints the curve, one line
# per sample (seconds, RSS MB, tokens issued so far), then the server's RSS once the load
# has stopped. Not run by the tests: speed and memory are measured here, never in tests.
#
#   cargo build --release -p mayfly-server --bin mayfly
#   bash tests/bench/soak.sh                     # SQLite, 10 minutes
#   MAYFLY_DB=postgres MINUTES=10 bash tests/bench/soak.sh
#
# Env: MINUTES=10 STEP=30 C=32 THREADS=2 MAYFLY_DB=sqlite|postgres
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$repo/target}/release/mayfly}
[ -x "$bin" ] || { echo "soak: no $bin; run cargo build --release -p mayfly-server --bin mayfly"; exit 1; }
command -v wrk >/dev/null || { echo "soak: wrk is needed (apt-get install wrk)"; exit 1; }
MINUTES=${MINUTES:-10}; STEP=${STEP:-30}; C=${C:-32}; THREADS=${THREADS:-2}; MAYFLY_DB=${MAYFLY_DB:-sqlite}

work=$(mktemp -d)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
base=http://127.0.0.1:$port
export MAYFLY_LISTEN=127.0.0.1:$port MAYFLY_ISSUER=$base MAYFLY_MASTER_KEY_FILE=$work/mayfly.key MAYFLY_LOG_FORMAT=json
db=
if [ "$MAYFLY_DB" = postgres ]; then
    db=mayfly_soak_$$
    psql -h 127.0.0.1 -U postgres -qc "create database $db" >/dev/null
    export MAYFLY_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
else
    export MAYFLY_DATABASE_URL=sqlite://$work/mayfly.db
fi
pid= load=
cleanup() {
    [ -n "$load" ] && kill "$load" 2>/dev/null || true
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    [ -n "$db" ] && psql -h 127.0.0.1 -U postgres -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

(cd "$work" && exec "$bin" serve >"$work/serve.log" 2>&1) & pid=$!
for _ in $(seq 100); do curl -fsS -o /dev/null "$base/healthz" 2>/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/{print int($2/1024)}' "/proc/$pid/status"; }
issued() { curl -fsS "$base/metrics" | awk '/^mayfly_tokens_issued_total /{print $2}'; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
admin=$(cd "$work" && "$bin" admin bootstrap)
id=$(json '["client_id"]' <<<"$admin"); secret=$(json '["client_secret"]' <<<"$admin")
auth="Basic $(printf '%s:%s' "$id" "$secret" | base64 -w0)"

echo "soak: $MAYFLY_DB, $C connections, $MINUTES min, RSS every ${STEP}s"
echo "soak: t=0s rss=$(rss)MB issued=0 (idle)"
WRK_AUTH=$auth WRK_BODY="grant_type=client_credentials&scope=mayfly%3Aadmin" \
    wrk -t"$THREADS" -c"$C" -d"$((MINUTES * 60))s" -s "$here/wrk-post.lua" "$base/oauth2/token" >"$work/wrk.out" 2>&1 &
load=$!
start=$(date +%s)
while kill -0 "$load" 2>/dev/null; do
    sleep "$STEP"
    kill -0 "$load" 2>/dev/null || break
    echo "soak: t=$(( $(date +%s) - start ))s rss=$(rss)MB issued=$(issued)"
done
wait "$load" || true
load=
sed -n 's/^WRKJSON /soak: wrk /p' "$work/wrk.out"
sleep 5
echo "soak: after the load: rss=$(rss)MB issued=$(issued)"
