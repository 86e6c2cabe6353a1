#!/usr/bin/env bash
# Load benchmark of a release `mayfly serve`: client_credentials issuance (with durable,
# group-committed audit), RFC 7662 introspection, refresh-token rotation and RFC 8693
# token exchange, measured with wrk from a second process. Not run by the tests: speed
# is measured here, never in timed tests.
#
#   cargo build --release -p mayfly-server --bin mayfly
#   bash tests/bench/bench.sh                  # SQLite
#   MAYFLY_DB=postgres bash tests/bench/bench.sh
#
# Env: DUR=10s C=32 THREADS=2 MAYFLY_DB=sqlite|postgres
#      ONLY="refresh exchange" runs only those paths (e.g. to profile one with perf)
# Prints one line per endpoint: requests/s, p50, p99, errors and the server's CPU time per
# request (user+sys of the server process over the run / requests: the steadier figure
# on a shared machine), and the server's RSS idle and after the load.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$repo/target}/release/mayfly}
[ -x "$bin" ] || { echo "bench: no $bin; run cargo build --release -p mayfly-server --bin mayfly"; exit 1; }
command -v wrk >/dev/null || { echo "bench: wrk is needed (apt-get install wrk)"; exit 1; }
DUR=${DUR:-10s}; C=${C:-32}; THREADS=${THREADS:-2}; MAYFLY_DB=${MAYFLY_DB:-sqlite}

work=$(mktemp -d)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
base=http://127.0.0.1:$port
export MAYFLY_LISTEN=127.0.0.1:$port MAYFLY_ISSUER=$base MAYFLY_MASTER_KEY_FILE=$work/mayfly.key MAYFLY_LOG_FORMAT=json
db=
if [ "$MAYFLY_DB" = postgres ]; then
    db=mayfly_bench_$$
    psql -h 127.0.0.1 -U postgres -qc "create database $db" >/dev/null
    export MAYFLY_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
else
    export MAYFLY_DATABASE_URL=sqlite://$work/mayfly.db
fi
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    [ -n "$db" ] && psql -h 127.0.0.1 -U postgres -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

(cd "$work" && exec "$bin" serve >"$work/serve.log" 2>&1) & pid=$!
for _ in $(seq 100); do curl -fsS -o /dev/null "$base/healthz" 2>/dev/null && break; sleep 0.1; done

tck=$(getconf CLK_TCK)
cpu_ticks() { cut -d' ' -f14,15 "/proc/$pid/stat" | awk '{print $1 + $2}'; }
rss() { awk '/VmRSS/{print int($2/1024)}' "/proc/$pid/status" 2>/dev/null || echo "?"; }
rss_idle=$(rss)  # before the logins below: argon2id's memory stays with the process until 10 s idle
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
admin=$(cd "$work" && "$bin" admin bootstrap)
admin_id=$(json '["client_id"]' <<<"$admin"); admin_secret=$(json '["client_secret"]' <<<"$admin")
token() { curl -fsS -u "$1:$2" "$base/oauth2/token" -d grant_type=client_credentials -d "scope=$3" ${4:+-d "resource=$4"} | json '["access_token"]'; }
admin_token=$(token "$admin_id" "$admin_secret" mayfly:admin)
api() { curl -fsS -H "Authorization: Bearer $admin_token" -H 'content-type: application/json' "$base/admin/v1/$1" -d "$2"; }

api audiences '{"uri":"https://api.bench/orders","scopes":["orders:read"]}' >/dev/null
worker=$(api clients '{"name":"bench-worker","grant_types":["client_credentials","urn:ietf:params:oauth:grant-type:token-exchange"]}')
worker_id=$(json '["id"]' <<<"$worker"); worker_secret=$(json '["client_secret"]' <<<"$worker")
api grants "{\"subject\":{\"kind\":\"client\",\"id\":\"$worker_id\"},\"audience\":\"https://api.bench/orders\",\"scopes\":[\"orders:read\"]}" >/dev/null
rs=$(api clients '{"name":"bench-resource-server"}')
rs_id=$(json '["id"]' <<<"$rs"); rs_secret=$(json '["client_secret"]' <<<"$rs")
api grants "{\"subject\":{\"kind\":\"client\",\"id\":\"$rs_id\"},\"audience\":\"$base\",\"scopes\":[\"mayfly:introspect\"]}" >/dev/null
worker_token=$(token "$worker_id" "$worker_secret" orders:read)
# Refresh: one login (one refresh token) per connection, each rotated by wrk-refresh.lua.
cli=$(api clients '{"name":"bench-cli","grant_types":["password","refresh_token"]}')
cli_id=$(json '["id"]' <<<"$cli"); cli_secret=$(json '["client_secret"]' <<<"$cli")
user=$(api users '{"username":"bench-user","password":"bench-password-0123456789"}')
user_id=$(json '["id"]' <<<"$user")
api grants "{\"subject\":{\"kind\":\"user\",\"id\":\"$user_id\"},\"audience\":\"https://api.bench/orders\",\"scopes\":[\"orders:read\"]}" >/dev/null
login() { curl -fsS -u "$cli_id:$cli_secret" "$base/oauth2/token" -d grant_type=password -d username=bench-user \
    -d password=bench-password-0123456789 -d scope=orders:read | json '["refresh_token"]'; }
for _ in $(seq $((C + THREADS))); do login; done >"$work/refresh-tokens"
for _ in $(seq $((C + THREADS))); do login; done >"$work/refresh-warmup"


run() { # name url auth body [lua]
    case " ${ONLY:-$1} " in *" $1 "*) ;; *) return 0 ;; esac
    local lua=${5:-$here/wrk-post.lua} c0 c1 out
    WRK_AUTH=$3 WRK_BODY=$4 WRK_TOKENS=$work/refresh-warmup wrk -t1 -c4 -d2s -s "$lua" "$2" >/dev/null 2>&1 || true
    c0=$(cpu_ticks)
    out=$(WRK_AUTH=$3 WRK_BODY=$4 wrk -t"$THREADS" -c"$C" -d"$DUR" --latency -s "$lua" "$2" 2>/dev/null | sed -n 's/^WRKJSON //p')
    c1=$(cpu_ticks)
    python3 -c 'import json,sys;d=json.loads(sys.argv[2]);cpu=(int(sys.argv[4])-int(sys.argv[3]))/int(sys.argv[5])/max(d["requests"],1)*1e6;print("%-14s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d  cpu %4.0f us/req" % (sys.argv[1], d["rps"], d["p50_ms"], d["p99_ms"], d["non2xx3xx"] + d["timeout"], cpu))' "$1" "$out" "$c0" "$c1" "$tck"
}
basic() { printf 'Basic %s' "$(printf '%s:%s' "$1" "$2" | base64 -w0)"; }
# Group commit under a write path's load: how many events each audit transaction carried
# and how long its commit took (means over the run, from the /metrics histograms).
audit_sums() {
    curl -fsS "$base/metrics" | awk '/^mayfly_audit_(batch_size|commit_seconds)_(sum|count)/{sub(/\{.*\}/, "", $1); printf "%s=%s ", $1, $2}'
}
audit_line() { # name snapshot-before
    case " ${ONLY:-$1} " in *" $1 "*) ;; *) return 0 ;; esac
    python3 -c 'import sys
def read(text):
    return {k: float(v) for k, v in (kv.split("=") for kv in text.split())}
b, a = read(sys.argv[2]), read(sys.argv[3])
d = {k: a[k] - b.get(k, 0.0) for k in a}
size_sum, size_n = d.get("mayfly_audit_batch_size_sum", 0), d.get("mayfly_audit_batch_size_count", 0)
secs_sum, secs_n = d.get("mayfly_audit_commit_seconds_sum", 0), d.get("mayfly_audit_commit_seconds_count", 0)
print("  audit        %8.0f batches  mean %5.1f events  commit mean %5.2f ms"
      % (size_n, size_sum / max(size_n, 1), secs_sum / max(secs_n, 1) * 1e3))' "$1" "$2" "$(audit_sums)"
}
echo "bench: mayfly RSS idle: $rss_idle MB"
echo "bench: $MAYFLY_DB, $C connections, $THREADS wrk threads, $DUR per endpoint, $(nproc) cores shared with wrk"
a0=$(audit_sums)
run issuance "$base/oauth2/token" "$(basic "$worker_id" "$worker_secret")" "grant_type=client_credentials&scope=orders%3Aread&resource=https%3A%2F%2Fapi.bench%2Forders"
audit_line issuance "$a0"
run introspection "$base/oauth2/introspect" "$(basic "$rs_id" "$rs_secret")" "token=$worker_token"
a0=$(audit_sums)
WRK_TOKENS=$work/refresh-tokens WRK_THREADS=$THREADS WRK_LIB=$here/wrk-post.lua \
    run refresh "$base/oauth2/token" "$(basic "$cli_id" "$cli_secret")" "" "$here/wrk-refresh.lua"
audit_line refresh "$a0"
a0=$(audit_sums)
run exchange "$base/oauth2/token" "$(basic "$worker_id" "$worker_secret")" \
    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=$worker_token&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&scope=orders%3Aread"
audit_line exchange "$a0"
echo "bench: mayfly RSS after load: $(rss) MB"
