"""nginx `auth_request` -> `mayfly gateway` -> a tiny upstream (tests/gateway/run.sh).

Right scope: the upstream is reached with the identity headers; wrong scope: 403;
no, expired or tampered token: 401; a token revoked through the admin API: refused
within a second; a DPoP-bound token without its proof: 401; a spoofed
X-Mayfly-Subject never reaches the upstream.
"""

import base64
import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ISSUER, ADMIN_ID, ADMIN_SECRET = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
ORDERS = "https://api.example.com/orders"
MAYFLY = os.environ["MAYFLY_BIN"]
NGINX = os.environ["NGINX_BIN"]


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def remember(secret):
    path = os.environ.get("MAYFLY_CHECK_SECRETS_FILE")
    if path and secret:
        with open(path, "a", encoding="utf-8") as f:
            f.write(secret + "\n")


def request(method, url, headers=None, body=None):
    """(status, headers, body) without raising on 4xx/5xx."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def basic(client_id, secret):
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def token(client_id, secret, scope, resource, dpop=None):
    headers = {
        "Authorization": basic(client_id, secret),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    if dpop:
        headers["DPoP"] = dpop
    form = {"grant_type": "client_credentials", "scope": scope, "resource": resource}
    status, _, body = request("POST", f"{ISSUER}/oauth2/token", headers,
                              urllib.parse.urlencode(form).encode())
    check(status == 200, f"token request answered {status}: {body!r}")
    access = json.loads(body)["access_token"]
    remember(access)
    return access


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def dpop_proof(key, htm, htu, access_token=None):
    x = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    header = {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64u(x)}}
    claims = {"jti": str(uuid.uuid4()), "htm": htm, "htu": htu, "iat": int(time.time())}
    if access_token:
        claims["ath"] = b64u(hashlib.sha256(access_token.encode()).digest())
    signing = f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(claims).encode())}"
    return f"{signing}.{b64u(key.sign(signing.encode()))}"


class Admin:
    def __init__(self):
        self.token = token(ADMIN_ID, ADMIN_SECRET, "mayfly:admin", ISSUER)

    def post(self, path, body):
        status, _, answer = request(
            "POST", f"{ISSUER}{path}",
            {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            json.dumps(body).encode())
        check(status == 201, f"POST {path} answered {status}: {answer!r}")
        return json.loads(answer)

    def client(self, name, **fields):
        created = self.post("/admin/v1/clients", {"name": name, **fields})
        remember(created["client_secret"])
        return created

    def grant(self, client, audience, scopes):
        self.post("/admin/v1/grants", {"subject": {"kind": "client", "id": client["id"]},
                                       "audience": audience, "scopes": scopes})


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Upstream(http.server.BaseHTTPRequestHandler):
    """Answers with the request headers it received, as JSON."""

    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{site}
}}
"""


def main():
    admin = Admin()
    admin.post("/admin/v1/audiences", {"uri": ORDERS, "scopes": ["orders:read", "orders:write"]})
    worker = admin.client("gateway-worker")
    admin.grant(worker, ORDERS, ["orders:read"])
    short = admin.client("gateway-short-lived", default_ttl_secs=1)
    admin.grant(short, ORDERS, ["orders:read"])
    reader = admin.client("gateway-feed-reader")
    admin.grant(reader, ISSUER, ["mayfly:revocations:read"])

    tmp = tempfile.mkdtemp(prefix="mayfly-gateway-")
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "routes.toml"), encoding="utf-8") as f:
        routes_text = f.read()
    routes = os.path.join(tmp, "routes.toml")
    with open(routes, "w", encoding="utf-8") as f:
        f.write(routes_text)
    secret_file = os.path.join(tmp, "gateway.secret")
    with open(secret_file, "w", encoding="utf-8") as f:
        f.write(reader["client_secret"] + "\n")
    os.chmod(secret_file, 0o600)

    # `mayfly gateway check`: the effective table, or the first problem and exit 1.
    checked = subprocess.run([MAYFLY, "gateway", "check", "--routes", routes],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
    check(checked.returncode == 0, f"gateway check failed: {checked.stderr}")
    check("/orders/**" in checked.stdout and checked.stdout.rstrip().endswith("-> deny"),
          f"gateway check printed: {checked.stdout}")
    broken = os.path.join(tmp, "broken.toml")
    with open(broken, "w", encoding="utf-8") as f:
        f.write(routes_text + '\n[[route]]\nmethod = "GET"\npath = "/a/../b"\n')
    checked = subprocess.run([MAYFLY, "gateway", "check", "--routes", broken],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
    check(checked.returncode != 0 and "route 3" in checked.stderr,
          f"gateway check accepted a broken file: {checked.returncode} {checked.stderr}")

    gateway_port, nginx_port = free_port(), free_port()
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    upstream_port = upstream.server_address[1]

    # The README's nginx site, with the ports of this run.
    with open(os.path.join(here, "nginx-site.conf"), encoding="utf-8") as f:
        site = f.read()
    site = (site.replace("127.0.0.1:8181", f"127.0.0.1:{gateway_port}")
                .replace("listen 8080", f"listen 127.0.0.1:{nginx_port}")
                .replace("127.0.0.1:3000", f"127.0.0.1:{upstream_port}"))
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w", encoding="utf-8") as f:
        f.write(NGINX_CONF.format(tmp=tmp, site=site))

    gateway_log = open(os.path.join(tmp, "gateway.log"), "w", encoding="utf-8")
    gateway = subprocess.Popen(
        [MAYFLY, "gateway", "--routes", routes, "--bind", f"127.0.0.1:{gateway_port}",
         "--client-id", reader["id"], "--client-secret-file", secret_file, "--leeway", "0s"],
        stdout=gateway_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    nginx = subprocess.Popen([NGINX, "-c", conf, "-p", tmp], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run_checks(admin, worker, short, nginx_port, gateway_port)
        reload_on_sighup(gateway, routes, worker, nginx_port)
    except SystemExit:
        for name in ("gateway.log", "nginx-error.log"):
            try:
                with open(os.path.join(tmp, name), encoding="utf-8") as f:
                    print(f"----- {name} -----\n{f.read()[-4000:]}", file=sys.stderr)
            except OSError:
                pass
        raise
    finally:
        nginx.terminate()
        gateway.terminate()
        nginx.wait(timeout=10)
        gateway.wait(timeout=10)
        upstream.shutdown()
    with open(os.path.join(tmp, "gateway.log"), encoding="utf-8") as f:
        log = f.read()
    for secret in (reader["client_secret"], worker["client_secret"]):
        check(secret not in log, "a secret appears in the gateway log")


def run_checks(admin, worker, short, nginx_port, gateway_port):
    deadline = time.monotonic() + 15
    while True:
        try:
            status, _, _ = request("GET", f"http://127.0.0.1:{gateway_port}/readyz")
            nginx_up = socket.create_connection(("127.0.0.1", nginx_port), timeout=1)
            nginx_up.close()
            if status == 200:
                break
        except OSError:
            pass
        check(time.monotonic() < deadline, "gateway or nginx not ready within 15 s")
        time.sleep(0.1)

    api = f"http://127.0.0.1:{nginx_port}"
    read = token(worker["id"], worker["client_secret"], "orders:read", ORDERS)

    # Right scope: upstream reached with the identity headers; the client's spoofed
    # X-Mayfly-Subject replaced.
    status, _, body = request("GET", f"{api}/orders/7", {
        "Authorization": f"Bearer {read}", "X-Mayfly-Subject": "admin",
        "X-Mayfly-Scope": "orders:write"})
    check(status == 200, f"right scope answered {status}: {body!r}")
    seen = json.loads(body)
    check(seen.get("x-mayfly-subject") == worker["id"], f"upstream saw {seen}")
    check(seen.get("x-mayfly-client") == worker["id"], f"upstream saw {seen}")
    check(seen.get("x-mayfly-scope") == "orders:read", f"upstream saw {seen}")
    check(seen.get("x-mayfly-audience") == ORDERS, f"upstream saw {seen}")
    jti = seen.get("x-mayfly-token-id", "")
    check(jti != "", f"upstream saw no token id: {seen}")

    # No token: the spoofed identity headers never reach the upstream either.
    status, headers, _ = request("GET", f"{api}/orders/7", {"X-Mayfly-Subject": "admin"})
    check(status == 401, f"no token answered {status}")
    check((headers.get("WWW-Authenticate") or "").startswith("Bearer"),
          f"401 without the Bearer challenge: {dict(headers)}")

    # Wrong scope: 403.
    status, _, _ = request("POST", f"{api}/orders", {"Authorization": f"Bearer {read}"}, b"{}")
    check(status == 403, f"wrong scope answered {status}")
    # No route: 403 (default deny).
    status, _, _ = request("GET", f"{api}/admin", {"Authorization": f"Bearer {read}"})
    check(status == 403, f"unrouted path answered {status}")

    # Tampered: 401.
    tampered = read[:-4] + ("AAAA" if not read.endswith("AAAA") else "BBBB")
    status, _, _ = request("GET", f"{api}/orders/7", {"Authorization": f"Bearer {tampered}"})
    check(status == 401, f"tampered token answered {status}")

    # Expired (a 1 s token, the gateway run with --leeway 0s): 401.
    brief = token(short["id"], short["client_secret"], "orders:read", ORDERS)
    time.sleep(2.1)
    status, _, _ = request("GET", f"{api}/orders/7", {"Authorization": f"Bearer {brief}"})
    check(status == 401, f"expired token answered {status}")

    # DPoP-bound token without its proof: 401, as Bearer or as DPoP.
    key = Ed25519PrivateKey.generate()
    bound = token(worker["id"], worker["client_secret"], "orders:read", ORDERS,
                  dpop=dpop_proof(key, "POST", f"{ISSUER}/oauth2/token"))
    for scheme in ("Bearer", "DPoP"):
        status, _, _ = request("GET", f"{api}/orders/7", {"Authorization": f"{scheme} {bound}"})
        check(status == 401, f"DPoP-bound token as {scheme} without proof answered {status}")
    status, _, _ = request("GET", f"{api}/orders/7", {
        "Authorization": f"DPoP {bound}",
        "DPoP": dpop_proof(key, "GET", "https://api.example.com/orders/7", bound)})
    check(status == 200, f"DPoP-bound token with its proof answered {status}")

    # Revoked through the admin API: refused within a second.
    admin.post("/admin/v1/revocations", {"kind": "jti", "value": jti, "reason": "leaked"})
    revoked_at = time.monotonic()
    while True:
        status, _, _ = request("GET", f"{api}/orders/7", {"Authorization": f"Bearer {read}"})
        if status == 401:
            break
        check(status == 200, f"revoked token answered {status}")
        check(time.monotonic() - revoked_at < 1.0, "still accepted a second after revocation")
        time.sleep(0.02)
    print(f"gateway: revocation refused after {time.monotonic() - revoked_at:.3f} s", file=sys.stderr)


def reload_on_sighup(gateway, routes, worker, nginx_port):
    """A new route after SIGHUP; a broken file afterwards keeps the table."""
    api = f"http://127.0.0.1:{nginx_port}"
    read = token(worker["id"], worker["client_secret"], "orders:read", ORDERS)
    auth = {"Authorization": f"Bearer {read}"}
    status, _, _ = request("GET", f"{api}/reports", auth)
    check(status == 403, f"unrouted /reports answered {status}")
    with open(routes, "a", encoding="utf-8") as f:
        f.write('\n[[route]]\nmethod = "GET"\npath = "/reports"\nscopes = ["orders:read"]\n')
    gateway.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while request("GET", f"{api}/reports", auth)[0] != 200:
        check(time.monotonic() < deadline, "SIGHUP did not reload the route file")
        time.sleep(0.05)
    with open(routes, "a", encoding="utf-8") as f:
        f.write("this is not toml\n")
    gateway.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    check(gateway.poll() is None, "the gateway died on a bad route file")
    status, _, _ = request("GET", f"{api}/reports", auth)
    check(status == 200, f"a bad route file replaced the table: {status}")


main()
