"""authlib completes private_key_jwt (RFC 7523 §2.2) with an Ed25519 key: no secret.

The client is created through the admin API with only its public key (it gets no
secret), then authlib's PrivateKeyJWT signs the assertion with joserfc (alg EdDSA,
authlib's default one-hour lifetime). A replayed assertion and an HS256 assertion
signed with the public key's bytes are refused with invalid_client.

Usage: test_private_key_jwt.py ISSUER ADMIN_CLIENT_ID ADMIN_CLIENT_SECRET
"""

import base64
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import client_secret_jwt_sign, private_key_jwt_sign
from joserfc.jwk import OctKey, OKPKey
from mayfly_admin import Admin, check, remember

AUDIENCE = "https://orders.pkjwt.authlib.test"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def main(issuer: str, admin_id: str, admin_secret: str) -> None:
    admin = Admin(issuer, admin_id, admin_secret)
    admin.audience(AUDIENCE, ["orders:read"])
    key = OKPKey.generate_key("Ed25519")
    remember(key.as_dict(private=True)["d"])
    public = key.as_dict(private=False)
    check("d" not in public, "the public JWK carries no private part")
    client = admin.client(
        "authlib-private-key-jwt",
        public_keys=[{"kty": "OKP", "crv": "Ed25519", "x": public["x"]}],
    )
    check("client_secret" not in client, f"a keyed client got a secret: {client}")
    admin.grant("client", client["id"], AUDIENCE, ["orders:read"])
    meta = requests.get(f"{admin.issuer}/.well-known/oauth-authorization-server", timeout=10).json()
    token_url = meta["token_endpoint"]
    check(
        "private_key_jwt" in meta["token_endpoint_auth_methods_supported"],
        f"metadata: {meta['token_endpoint_auth_methods_supported']}",
    )
    check(
        meta["token_endpoint_auth_signing_alg_values_supported"] == ["EdDSA", "RS256", "ES256"],
        f"metadata algs: {meta['token_endpoint_auth_signing_alg_values_supported']}",
    )

    for _ in range(2):  # a fresh assertion (jti) each time
        session = OAuth2Session(
            client["id"],
            key,
            scope="orders:read",
            token_endpoint_auth_method=PrivateKeyJWT(token_url, alg="EdDSA"),
        )
        token = session.fetch_token(
            token_url, grant_type="client_credentials", resource=AUDIENCE
        )
        remember(token["access_token"])
        check(token["token_type"] == "Bearer", f"token_type {token['token_type']}")
        check(token["access_token"].startswith("v4.public."), "not a PASETO")
        check(token["scope"] == "orders:read", f"scope {token['scope']}")

    def token_with(assertion: str) -> requests.Response:
        return requests.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "scope": "orders:read",
                "resource": AUDIENCE,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
            timeout=10,
        )

    # The same assertion twice: the second is a replay.
    assertion = private_key_jwt_sign(key, client["id"], token_url, alg="EdDSA")
    remember(assertion.decode() if isinstance(assertion, bytes) else assertion)
    first = token_with(assertion)
    check(first.status_code == 200, f"assertion: {first.status_code} {first.text}")
    replay = token_with(assertion)
    check(
        replay.status_code == 401 and replay.json()["error"] == "invalid_client",
        f"replay: {replay.status_code} {replay.text}",
    )
    # HS256 keyed with the public key's bytes (the classic algorithm confusion).
    raw = base64.urlsafe_b64decode(public["x"] + "=" * (-len(public["x"]) % 4))
    forged = client_secret_jwt_sign(OctKey.import_key(raw), client["id"], token_url, alg="HS256")
    refused = token_with(forged)
    check(
        refused.status_code == 401 and refused.json()["error"] == "invalid_client",
        f"HS256: {refused.status_code} {refused.text}",
    )
    print("private_key_jwt: OK")


if __name__ == "__main__":
    main(*sys.argv[1:4])
