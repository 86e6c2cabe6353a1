#!/usr/bin/env bash
# Abuse benchmark (issue 15) of a release `mayfly serve` started under `ulimit -n 1024`:
#   1. client_credentials issuance, quiet: p50/p99 (wrk);
#   2. the same while 200 concurrent callers send wrong passwords for 15 s: p50/p99,
#      the login answers by status, and the server's peak RSS;
#   3. 1,100 idle connections held open, then 10 token requests (fresh connections):
#      how many got a token.
# Not run by the tests: figures are measured here, never in timed tests. All traffic
# goes to 127.0.0.1 and every loop is bounded in time.
#
#   cargo build --release -p mayfly-server --bin mayfly
#   bash tests/bench/abuse.sh                  # SQLite
#   MAYFLY_DB=postgres bash tests/bench/abuse.sh
#   HONOR_RETRY=1 bash tests/bench/abuse.sh    # flooding callers wait Retry-After on 429/503
#   CONTROL=1 bash tests/bench/abuse.sh        # the flood hits a second server instead
#   FLOOD_NICE=19 bash tests/bench/abuse.sh    # the flooding callers at the lowest priority
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$repo/target}/release/mayfly}
[ -x "$bin" ] || { echo "abuse: no $bin; run cargo build --release -p mayfly-server --bin mayfly"; exit 1; }
command -v wrk >/dev/null || { echo "abuse: wrk is needed (apt-get install wrk)"; exit 1; }
MAYFLY_DB=${MAYFLY_DB:-sqlite}

work=$(mktemp -d)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
base=http://127.0.0.1:$port
export MAYFLY_LISTEN=127.0.0.1:$port MAYFLY_ISSUER=$base MAYFLY_MASTER_KEY_FILE=$work/mayfly.key MAYFLY_LOG_FORMAT=json
db=
if [ "$MAYFLY_DB" = postgres ]; then
    db=mayfly_abuse_$$
    psql -h 127.0.0.1 -U postgres -qc "create database $db" >/dev/null
    export MAYFLY_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
else
    export MAYFLY_DATABASE_URL=sqlite://$work/mayfly.db
fi
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    [ -n "${pid_b:-}" ] && kill "$pid_b" 2>/dev/null && wait "$pid_b" 2>/dev/null || true
    [ -n "$db" ] && psql -h 127.0.0.1 -U postgres -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# The hard limit too, so the server cannot raise it past 1,024.
(cd "$work" && ulimit -n 1024 && exec "$bin" serve >"$work/serve.log" 2>&1) & pid=$!
for _ in $(seq 100); do curl -fsS -o /dev/null "$base/healthz" 2>/dev/null && break; sleep 0.1; done
grep -o '"open_files_limit":[0-9]*,"max_connections":[0-9]*' "$work/serve.log" | head -1 || true

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
admin=$(cd "$work" && "$bin" admin bootstrap)
admin_id=$(json '["client_id"]' <<<"$admin"); admin_secret=$(json '["client_secret"]' <<<"$admin")
token() { curl -fsS -u "$1:$2" "$base/oauth2/token" -d grant_type=client_credentials -d "scope=$3" ${4:+-d "resource=$4"} | json '["access_token"]'; }
admin_token=$(token "$admin_id" "$admin_secret" mayfly:admin)
api() { curl -fsS -H "Authorization: Bearer $admin_token" -H 'content-type: application/json' "$base/admin/v1/$1" -d "$2"; }

api audiences '{"uri":"https://api.bench/orders","scopes":["orders:read"]}' >/dev/null
worker=$(api clients '{"name":"bench-worker"}')
worker_id=$(json '["id"]' <<<"$worker"); worker_secret=$(json '["client_secret"]' <<<"$worker")
api grants "{\"subject\":{\"kind\":\"client\",\"id\":\"$worker_id\"},\"audience\":\"https://api.bench/orders\",\"scopes\":[\"orders:read\"]}" >/dev/null
cli=$(api clients '{"name":"bench-cli","grant_types":["password"]}')
cli_id=$(json '["id"]' <<<"$cli"); cli_secret=$(json '["client_secret"]' <<<"$cli")
api users '{"username":"alice","password":"correct horse battery staple"}' >/dev/null
flood_port=$port

# CONTROL=1: the same flood aimed at a second, separate `mayfly serve` (its own SQLite
# file) while the first one is measured. If issuance on the first degrades as much as
# when it is the target, the cause is the machine (the callers and the loopback TCP work
# share its 2 cores), not the server under test.
pid_b=
if [ "${CONTROL:-0}" = 1 ]; then
    mkdir -p "$work/b"
    flood_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    b_env=(MAYFLY_LISTEN=127.0.0.1:$flood_port MAYFLY_ISSUER=http://127.0.0.1:$flood_port
           MAYFLY_MASTER_KEY_FILE=$work/b/mayfly.key MAYFLY_DATABASE_URL=sqlite://$work/b/mayfly.db)
    (cd "$work/b" && ulimit -n 1024 && exec env "${b_env[@]}" "$bin" serve >"$work/b/serve.log" 2>&1) & pid_b=$!
    for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$flood_port/healthz" 2>/dev/null && break; sleep 0.1; done
    admin_b=$(cd "$work/b" && env "${b_env[@]}" "$bin" admin bootstrap)
    token_b=$(curl -fsS -u "$(json '["client_id"]' <<<"$admin_b"):$(json '["client_secret"]' <<<"$admin_b")" \
        "http://127.0.0.1:$flood_port/oauth2/token" -d grant_type=client_credentials -d scope=mayfly:admin | json '["access_token"]')
    api_b() { curl -fsS -H "Authorization: Bearer $token_b" -H 'content-type: application/json' "http://127.0.0.1:$flood_port/admin/v1/$1" -d "$2"; }
    cli=$(api_b clients '{"name":"bench-cli","grant_types":["password"]}')
    cli_id=$(json '["id"]' <<<"$cli"); cli_secret=$(json '["client_secret"]' <<<"$cli")
    api_b users '{"username":"alice","password":"correct horse battery staple"}' >/dev/null
    echo "abuse: CONTROL: the flood goes to a second server; the first is measured"
fi

basic() { printf 'Basic %s' "$(printf '%s:%s' "$1" "$2" | base64 -w0)"; }
issue() { # name duration
    WRK_AUTH=$(basic "$worker_id" "$worker_secret") \
    WRK_BODY="grant_type=client_credentials&scope=orders%3Aread&resource=https%3A%2F%2Fapi.bench%2Forders" \
        wrk -t1 -c4 -d"$2" --latency -s "$here/wrk-post.lua" "$base/oauth2/token" 2>/dev/null | sed -n 's/^WRKJSON //p' |
        python3 -c 'import json,sys;d=json.loads(sys.stdin.read());print("%-22s %7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d" % (sys.argv[1], d["rps"], d["p50_ms"], d["p99_ms"], d["non2xx3xx"] + d["timeout"]))' "$1"
}
rss() { awk '/VmRSS/{print int($2/1024)}' "/proc/$pid/status"; }

issue warm-up 2s >/dev/null
echo "abuse: $MAYFLY_DB, RSS before: $(rss) MB"
issue quiet 10s

# 200 concurrent wrong-password callers for 15 s, each on its own connection.
# FLOOD_NICE=19 runs the callers at the lowest priority: on this 2-core machine they share
# the server's cores, which a real attacker on another machine would not.
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
cpu_before=$(cpu)
nice -n "${FLOOD_NICE:-0}" python3 - "$flood_port" "$cli_id" "$cli_secret" "${HONOR_RETRY:-0}" >"$work/flood.txt" <<'PY' &
import base64, collections, http.client, sys, threading, time
port, cid, secret, honor = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
auth = "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
body = "grant_type=password&username=alice&password=wrong+password+guess&scope=orders%3Aread"
deadline = time.monotonic() + 15
counts = collections.Counter()
lock = threading.Lock()
def caller(i):
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("POST", "/oauth2/token", body=body.replace("alice", f"user{i % 50}") if i % 2 else body,
                      headers={"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"})
            response = c.getresponse()
            status, retry = response.status, response.getheader("retry-after")
            c.close()
        except Exception as e:
            status, retry = type(e).__name__, None
        with lock:
            counts[status] += 1
        if honor and retry:
            time.sleep(min(float(retry), 1.0))
threads = [threading.Thread(target=caller, args=(i,)) for i in range(200)]
for t in threads: t.start()
for t in threads: t.join()
print("login answers during the flood:", dict(counts))
PY
flood=$!
peak=0
sampler() { local end=$((SECONDS + 16)); while [ $SECONDS -lt $end ] && kill -0 $flood 2>/dev/null; do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r; echo "$peak" >"$work/peak"; sleep 0.2; done; }
sampler & sampled=$!
sleep 2
issue "during password flood" 10s
wait $flood; wait $sampled || true
cpu_after=$(cpu)
cat "$work/flood.txt"
python3 - "$work/flood.txt" "$((cpu_after - cpu_before))" "$(getconf CLK_TCK)" <<'PY'
import ast, sys
answers = ast.literal_eval(open(sys.argv[1]).read().split(":", 1)[1].strip())
total = sum(n for k, n in answers.items() if isinstance(k, int))
seconds = int(sys.argv[2]) / int(sys.argv[3])
print(f"abuse: flood {total / 15:.0f} logins/s; server CPU over the 15 s flood (with the legitimate load): {seconds:.1f} s ({100 * seconds / 15:.0f} % of one core)")
PY
echo "abuse: peak RSS during the flood: $(cat "$work/peak") MB, after: $(rss) MB"

# 1,100 idle connections (the caller's own limit raised), then 10 token requests.
python3 - "$port" "$worker_id" "$worker_secret" <<'PY'
import base64, http.client, resource, socket, sys, time
port, cid, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
idle = []
for _ in range(1100):
    s = socket.create_connection(("127.0.0.1", port))
    idle.append(s)
auth = "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
body = "grant_type=client_credentials&scope=orders%3Aread&resource=https%3A%2F%2Fapi.bench%2Forders"
ok = first = 0
start = time.monotonic()
for i in range(10):
    for attempt in range(20):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("POST", "/oauth2/token", body=body,
                      headers={"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"})
            status = c.getresponse().status
            c.close()
        except Exception:
            status = None
        if status == 200:
            ok += 1
            first += attempt == 0
            break
        time.sleep(0.5)
print(f"abuse: with 1,100 idle connections open: {ok} of 10 token requests got a token "
      f"({first} at the first try, the others after 503 + retry) in {time.monotonic() - start:.1f} s")
for s in idle: s.close()
PY
