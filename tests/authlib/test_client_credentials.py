"""authlib completes client_credentials with client_secret_basic and client_secret_post.

Usage: test_client_credentials.py ISSUER ADMIN_CLIENT_ID ADMIN_CLIENT_SECRET
"""

import sys

from authlib.integrations.requests_client import OAuth2Session
from mayfly_admin import Admin, check, remember

AUDIENCE = "https://orders.authlib.test"


def main(issuer: str, admin_id: str, admin_secret: str) -> None:
    admin = Admin(issuer, admin_id, admin_secret)
    admin.audience(AUDIENCE, ["orders:read", "orders:write"])
    client = admin.client("authlib-cc")
    admin.grant("client", client["id"], AUDIENCE, ["orders:read"])
    token_url = f"{admin.issuer}/oauth2/token"

    for method in ("client_secret_basic", "client_secret_post"):
        session = OAuth2Session(
            client["id"],
            client["client_secret"],
            scope="orders:read",
            token_endpoint_auth_method=method,
        )
        token = session.fetch_token(
            token_url, grant_type="client_credentials", resource=AUDIENCE
        )
        remember(token["access_token"])
        check(token["token_type"] == "Bearer", f"{method}: token_type {token['token_type']}")
        check(token["access_token"].startswith("v4.public."), f"{method}: not a PASETO")
        check(token["scope"] == "orders:read", f"{method}: scope {token['scope']}")
        check(0 < token["expires_in"] <= 3600, f"{method}: expires_in {token['expires_in']}")

    # A scope that is not granted is refused with the RFC 6749 error.
    session = OAuth2Session(client["id"], client["client_secret"], scope="orders:write")
    try:
        session.fetch_token(token_url, grant_type="client_credentials", resource=AUDIENCE)
    except Exception as err:  # authlib raises OAuthError with the error code
        check("invalid_scope" in str(err), f"ungranted scope: {err}")
    else:
        check(False, "an ungranted scope was issued")
    print("client_credentials: OK")


if __name__ == "__main__":
    main(*sys.argv[1:4])
