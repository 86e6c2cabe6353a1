"""authlib completes the password grant, then refresh_token grants: each refresh rotates
the refresh token, may narrow the scopes, and reusing a rotated one is refused and ends
the whole login (reuse detection). authlib's own automatic refresh of an expired token
works too.

Usage: test_password_refresh.py ISSUER ADMIN_CLIENT_ID ADMIN_CLIENT_SECRET
"""

import sys
import time

from authlib.integrations.requests_client import OAuth2Session
from mayfly_admin import Admin, check, remember

AUDIENCE = "https://orders.password.authlib.test"
USERNAME = "alice-authlib"
PASSWORD = "correct horse battery staple"


def refused(call, code: str, what: str) -> None:
    try:
        call()
    except Exception as err:  # authlib raises OAuthError carrying the error code
        check(code in str(err), f"{what}: {err}")
    else:
        check(False, f"{what}: accepted")


def main(issuer: str, admin_id: str, admin_secret: str) -> None:
    admin = Admin(issuer, admin_id, admin_secret)
    admin.audience(AUDIENCE, ["orders:read", "orders:write"])
    client = admin.client("authlib-first-party", grant_types=["password", "refresh_token"])
    user = admin.user(USERNAME, PASSWORD)
    admin.grant("user", user["id"], AUDIENCE, ["orders:read", "orders:write"])
    token_url = f"{admin.issuer}/oauth2/token"

    session = OAuth2Session(
        client["id"], client["client_secret"], scope="orders:read orders:write"
    )
    # username/password: authlib sends grant_type=password.
    token = dict(session.fetch_token(token_url, username=USERNAME, password=PASSWORD))
    check(token["token_type"] == "Bearer", f"token_type {token['token_type']}")
    check(token["access_token"].startswith("v4.public."), "not a PASETO")
    check(token["scope"] == "orders:read orders:write", f"scope {token['scope']}")
    first = token["refresh_token"]
    remember(token["access_token"])
    remember(first)
    check(first.startswith("mfy_rt_"), "refresh token prefix")

    # Rotation: a new access token and a new refresh token.
    second = dict(session.refresh_token(token_url, refresh_token=first))
    remember(second["access_token"])
    remember(second["refresh_token"])
    check(second["refresh_token"] != first, "the refresh token was not rotated")
    check(second["access_token"] != token["access_token"], "same access token")
    # Narrowing on refresh; widening is refused.
    third = dict(
        session.refresh_token(token_url, refresh_token=second["refresh_token"], scope="orders:read")
    )
    check(third["scope"] == "orders:read", f"narrowed scope {third['scope']}")
    remember(third["access_token"])
    remember(third["refresh_token"])
    check(third["refresh_token"] != second["refresh_token"], "not rotated on narrowing")

    # authlib's automatic refresh: an expired token is refreshed before a request.
    auto = OAuth2Session(
        client["id"],
        client["client_secret"],
        scope="orders:read",
        token={**third, "expires_at": int(time.time()) - 60},
        token_endpoint=token_url,
    )
    auto.get(f"{admin.issuer}/healthz", timeout=10).raise_for_status()
    fourth = dict(auto.token)
    remember(fourth["access_token"])
    remember(fourth["refresh_token"])
    check(fourth["refresh_token"] != third["refresh_token"], "auto refresh did not rotate")
    check(fourth["access_token"] != third["access_token"], "auto refresh kept the token")

    # Reusing a rotated refresh token: refused, and the whole login ends.
    refused(
        lambda: session.refresh_token(token_url, refresh_token=first),
        "invalid_grant",
        "reuse of a rotated refresh token",
    )
    refused(
        lambda: session.refresh_token(token_url, refresh_token=fourth["refresh_token"]),
        "invalid_grant",
        "the newest refresh token after reuse",
    )

    # A wrong password is refused like an unknown user.
    refused(
        lambda: OAuth2Session(client["id"], client["client_secret"], scope="orders:read")
        .fetch_token(token_url, username=USERNAME, password="not the password"),
        "invalid_grant",
        "wrong password",
    )
    print("password + refresh_token: OK")


if __name__ == "__main__":
    main(*sys.argv[1:4])
