#!/usr/bin/env python3
"""Independent-implementation check of Mayfly's tokens with pyseto.

Usage: verify_pyseto.py ISSUER_URL CLIENT_ID CLIENT_SECRET

Talks to a running Mayfly (normally started by tests/interop/run.sh) and uses
only pyseto and the standard library to check that:

  * the token endpoint issues v4.public tokens with both client_secret_basic
    and client_secret_post client authentication;
  * every key in /.well-known/jwks.json imports from its `paserk` member, its
    PASERK id (computed by pyseto) equals its `kid`, and its `x` member is the
    same Ed25519 public key;
  * the token footer is {"kid": ...} naming a key of the key set, pyseto
    verifies each token with that key, and the claims are as specified;
  * a token with a flipped character in its signature, its payload or its
    footer fails to verify, and so does verification with an unrelated key.

Prints one `PASS: ...` line and exits 0, or prints `FAIL: ...` and exits 1.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from typing import Any

import pyseto
from pyseto import Key, Paseto, VerifyError

HTTP_TIMEOUT_S = 10
SCOPE = "mayfly:admin"
CLOCK_SKEW = timedelta(seconds=60)
ED25519_SIG_LEN = 64
B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# RFC 3339 section 5.6 date-time (a full date, a full time and an offset).
RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
    r"([Zz]|[+-]\d{2}:\d{2})$"
)


class CheckFailed(Exception):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def b64url_decode(s: str) -> bytes:
    check(re.fullmatch(r"[A-Za-z0-9_-]*", s) is not None, f"not unpadded base64url: {s!r}")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def parse_rfc3339(name: str, value: Any) -> datetime:
    check(isinstance(value, str), f"claim {name} is not a string: {value!r}")
    m = RFC3339_RE.match(value)
    check(m is not None, f"claim {name} is not an RFC 3339 date-time: {value!r}")
    assert m is not None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, offset = m.group(7), m.group(8)
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    if offset in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = 1 if offset[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as err:
        raise CheckFailed(f"claim {name} is not a valid date-time: {value!r} ({err})") from err


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()
    except (urllib.error.URLError, OSError) as err:
        raise CheckFailed(f"{method} {url}: request failed: {err}") from err


def get_json(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    status, ctype, raw = http(method, url, body, {"Accept": "application/json", **(headers or {})})
    text = raw.decode("utf-8", "replace")
    check(status == 200, f"{method} {url}: expected HTTP 200, got {status}: {text[:500]}")
    check(ctype.split(";")[0].strip().lower() == "application/json",
          f"{method} {url}: expected Content-Type application/json, got {ctype!r}")
    try:
        return json.loads(raw)
    except ValueError as err:
        raise CheckFailed(f"{method} {url}: body is not JSON: {text[:500]}") from err


def request_token(issuer: str, client_id: str, client_secret: str, method: str) -> dict[str, Any]:
    form = {"grant_type": "client_credentials", "scope": SCOPE}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if method == "client_secret_basic":
        # RFC 6749 section 2.3.1: each part form-urlencoded before Basic encoding.
        pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(client_secret)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
    elif method == "client_secret_post":
        form["client_id"] = client_id
        form["client_secret"] = client_secret
    else:
        raise ValueError(method)
    body = urllib.parse.urlencode(form).encode("ascii")
    resp = get_json("POST", issuer + "/oauth2/token", body, headers)
    where = f"token response ({method})"
    check(isinstance(resp, dict), f"{where}: not a JSON object: {resp!r}")
    tok = resp.get("access_token")
    check(isinstance(tok, str) and tok.startswith("v4.public."),
          f"{where}: access_token is not a v4.public token: {str(tok)[:60]!r}")
    check(isinstance(resp.get("token_type"), str) and resp["token_type"].lower() == "bearer",
          f"{where}: token_type is not Bearer: {resp.get('token_type')!r}")
    exp_in = resp.get("expires_in")
    check(isinstance(exp_in, int) and not isinstance(exp_in, bool) and exp_in > 0,
          f"{where}: expires_in is not a positive integer: {exp_in!r}")
    check(resp.get("scope") == SCOPE, f"{where}: scope is {resp.get('scope')!r}, expected {SCOPE!r}")
    return resp


def load_key_set(issuer: str) -> dict[str, Any]:
    url = issuer + "/.well-known/jwks.json"
    jwks = get_json("GET", url)
    check(isinstance(jwks, dict) and isinstance(jwks.get("keys"), list) and jwks["keys"],
          f"{url}: expected a non-empty `keys` array, got {jwks!r}")
    keys: dict[str, Any] = {}
    for i, jwk in enumerate(jwks["keys"]):
        where = f"{url} keys[{i}]"
        check(isinstance(jwk, dict), f"{where}: not an object")
        for member, want in (("kty", "OKP"), ("crv", "Ed25519"), ("use", "sig"), ("alg", "EdDSA")):
            check(jwk.get(member) == want, f"{where}: {member} is {jwk.get(member)!r}, expected {want!r}")
        kid, paserk, x = jwk.get("kid"), jwk.get("paserk"), jwk.get("x")
        check(isinstance(kid, str) and kid.startswith("k4.pid."), f"{where}: kid is not a k4.pid: {kid!r}")
        check(isinstance(paserk, str) and paserk.startswith("k4.public."),
              f"{where}: paserk is not a k4.public PASERK: {paserk!r}")
        check(kid not in keys, f"{where}: duplicate kid {kid}")
        try:
            key = Key.from_paserk(paserk)
        except Exception as err:
            raise CheckFailed(f"{where}: pyseto cannot import paserk {paserk!r}: {err!r}") from err
        check(key.version == 4 and key.purpose == "public" and not key.is_secret,
              f"{where}: pyseto imported a non v4.public key from {paserk!r}")
        check(key.to_paserk() == paserk,
              f"{where}: pyseto re-serialises the paserk as {key.to_paserk()!r}, not {paserk!r}")
        pid = key.to_paserk_id()
        check(pid == kid, f"{where}: pyseto's PASERK id of the key is {pid}, but kid is {kid}")
        check(isinstance(x, str), f"{where}: x is missing")
        raw_x = b64url_decode(x)
        check(len(raw_x) == 32, f"{where}: x is {len(raw_x)} bytes, expected 32")
        x_paserk = Key.from_asymmetric_key_params(4, x=raw_x).to_paserk()
        check(x_paserk == paserk, f"{where}: x ({x_paserk}) and paserk ({paserk}) are different keys")
        keys[kid] = key
    return keys


def flip_char(s: str, index: int) -> str:
    c = s[index]
    flipped = B64URL_ALPHABET[B64URL_ALPHABET.index(c) ^ 0x20]  # top bit of the 6-bit group
    return s[:index] + flipped + s[index + 1:]


def expect_verify_error(what: str, keys: Any, token: str, issuer: str) -> None:
    try:
        Paseto.new(leeway=int(CLOCK_SKEW.total_seconds())).decode(keys, token, deserializer=json, aud=issuer)
    except VerifyError:
        return
    except Exception as err:
        raise CheckFailed(f"{what}: expected pyseto.VerifyError, got {err!r}") from err
    raise CheckFailed(f"{what}: pyseto VERIFIED it, but it must fail")


def check_token(label: str, resp: dict[str, Any], keys: dict[str, Any], issuer: str, client_id: str) -> dict[str, Any]:
    token: str = resp["access_token"]
    parts = token.split(".")
    check(len(parts) == 4, f"{label}: expected v4.public.<body>.<footer>, got {len(parts)} parts")
    check(parts[0] == "v4" and parts[1] == "public", f"{label}: header is {parts[0]}.{parts[1]}")

    raw_footer = b64url_decode(parts[3])
    try:
        footer = json.loads(raw_footer)
    except ValueError as err:
        raise CheckFailed(f"{label}: footer is not JSON: {raw_footer!r}") from err
    check(isinstance(footer, dict) and isinstance(footer.get("kid"), str),
          f"{label}: footer has no string kid: {raw_footer!r}")
    kid = footer["kid"]
    check(kid in keys, f"{label}: footer kid {kid} is not in the key set ({', '.join(keys)})")
    key = keys[kid]
    check(key.to_paserk_id() == kid, f"{label}: footer kid {kid} != pyseto PASERK id {key.to_paserk_id()}")

    # Signature verification, exp/nbf (with skew) and aud, all by pyseto.
    try:
        t = Paseto.new(leeway=int(CLOCK_SKEW.total_seconds())).decode(key, token, deserializer=json, aud=issuer)
    except Exception as err:
        raise CheckFailed(f"{label}: pyseto failed to verify the token with key {kid}: {err!r}") from err
    check(t.footer == footer, f"{label}: pyseto footer {t.footer!r} != {footer!r}")
    claims = t.payload
    check(isinstance(claims, dict), f"{label}: payload is not a JSON object")
    assert isinstance(claims, dict)

    def claim_eq(name: str, want: Any) -> None:
        check(claims.get(name) == want, f"{label}: claim {name} is {claims.get(name)!r}, expected {want!r}")

    claim_eq("iss", issuer)
    claim_eq("aud", issuer)
    claim_eq("sub", client_id)
    claim_eq("client_id", client_id)
    claim_eq("scope", SCOPE)
    check(isinstance(claims.get("jti"), str) and claims["jti"] != "", f"{label}: jti is empty or missing")

    now = datetime.now(timezone.utc)
    iat = parse_rfc3339("iat", claims.get("iat"))
    nbf = parse_rfc3339("nbf", claims.get("nbf"))
    exp = parse_rfc3339("exp", claims.get("exp"))
    check(exp > now, f"{label}: exp {claims['exp']} is not after now ({now.isoformat()})")
    check(nbf <= now + CLOCK_SKEW, f"{label}: nbf {claims['nbf']} is more than 60 s in the future")
    check(iat <= now + CLOCK_SKEW, f"{label}: iat {claims['iat']} is more than 60 s in the future")
    lifetime = (exp - iat).total_seconds()
    check(abs(lifetime - resp["expires_in"]) <= 1,
          f"{label}: exp - iat = {lifetime:g} s but expires_in = {resp['expires_in']}")

    # Tampering: one base64url character flipped in each part must break verification.
    body = parts[2]
    raw_body = b64url_decode(body)
    check(len(raw_body) > ED25519_SIG_LEN, f"{label}: body too short ({len(raw_body)} bytes)")
    msg_len = len(raw_body) - ED25519_SIG_LEN
    sig_index = len(body) - 10   # well inside the last 64 bytes, not the (partial) last char
    msg_index = 5                # inside the first bytes of the JSON payload
    for what, index, region in (("signature", sig_index, slice(msg_len, None)),
                                ("payload", msg_index, slice(0, msg_len))):
        bad_body = flip_char(body, index)
        bad_raw = b64url_decode(bad_body)
        # Self-check: the flip must really change a byte of the intended part only.
        check(bad_raw[region] != raw_body[region] and len(bad_raw) == len(raw_body),
              f"{label}: internal error: flipping char {index} did not change the {what}")
        other = slice(0, msg_len) if what == "signature" else slice(msg_len, None)
        check(bad_raw[other] == raw_body[other],
              f"{label}: internal error: flipping char {index} changed more than the {what}")
        expect_verify_error(f"{label} with a flipped {what} character",
                            key, ".".join(parts[:2] + [bad_body, parts[3]]), issuer)
    bad_footer = flip_char(parts[3], 2)
    expect_verify_error(f"{label} with a flipped footer character",
                        key, ".".join(parts[:3] + [bad_footer]), issuer)

    # A freshly generated, unrelated Ed25519 key must not verify it.
    unrelated = Key.from_asymmetric_key_params(4, d=os.urandom(32))
    check(unrelated.to_peer_paserk_id() != kid, f"{label}: unrelated key has the server's kid?!")
    expect_verify_error(f"{label} checked with an unrelated Ed25519 key", unrelated, token, issuer)
    return claims


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(f"usage: {argv[0]} ISSUER_URL CLIENT_ID CLIENT_SECRET", file=sys.stderr)
        return 2
    issuer, client_id, client_secret = argv[1], argv[2], argv[3]
    issuer_base = issuer.rstrip("/")
    try:
        responses = {m: request_token(issuer_base, client_id, client_secret, m)
                     for m in ("client_secret_basic", "client_secret_post")}
        keys = load_key_set(issuer_base)
        claims = {m: check_token(f"token ({m})", r, keys, issuer, client_id) for m, r in responses.items()}
        jtis = {c["jti"] for c in claims.values()}
        check(len(jtis) == len(claims), f"two tokens share the jti {next(iter(jtis))!r}")
    except CheckFailed as err:
        print(f"FAIL: {err}", file=sys.stderr)
        return 1
    kids = sorted({json.loads(b64url_decode(r['access_token'].split('.')[3]))['kid'] for r in responses.values()})
    print(f"PASS: pyseto {pyseto.__version__} verified {len(responses)} Mayfly v4.public tokens "
          f"(client_secret_basic, client_secret_post) from {issuer} signed by {', '.join(kids)}; "
          f"claims OK; flipped signature/payload/footer and an unrelated key all rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
