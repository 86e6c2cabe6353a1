"""Admin-API set-up shared by the authlib checks (plain requests, not the code under test)."""

import os
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session


class Admin:
    """Talks to the admin API with a token for the bootstrapped admin client."""

    def __init__(self, issuer: str, client_id: str, client_secret: str):
        self.issuer = issuer.rstrip("/")
        session = OAuth2Session(client_id, client_secret, scope="mayfly:admin")
        token = session.fetch_token(
            f"{self.issuer}/oauth2/token", grant_type="client_credentials"
        )
        remember(token["access_token"])
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token['access_token']}"

    def post(self, path: str, body: dict) -> dict:
        r = self.http.post(f"{self.issuer}{path}", json=body, timeout=10)
        if r.status_code != 201:
            fail(f"POST {path} answered {r.status_code}: {r.text}")
        return r.json()

    def audience(self, uri: str, scopes: list[str]) -> dict:
        return self.post("/admin/v1/audiences", {"uri": uri, "scopes": scopes})

    def client(self, name: str, **fields) -> dict:
        created = self.post("/admin/v1/clients", {"name": name, **fields})
        if "client_secret" in created:
            remember(created["client_secret"])
        return created

    def user(self, username: str, password: str) -> dict:
        remember(password)
        return self.post("/admin/v1/users", {"username": username, "password": password})

    def grant(self, kind: str, subject_id: str, audience: str, scopes: list[str]) -> dict:
        return self.post(
            "/admin/v1/grants",
            {"subject": {"kind": kind, "id": subject_id}, "audience": audience, "scopes": scopes},
        )


def remember(secret: str) -> None:
    """Records a secret, password or token this check used: the runner then asserts
    that none appears in the server's logs or audit log."""
    path = os.environ.get("MAYFLY_CHECK_SECRETS_FILE")
    if path and secret:
        with open(path, "a", encoding="utf-8") as f:
            f.write(secret + "\n")


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition: bool, message: str) -> None:
    if not condition:
        fail(message)
