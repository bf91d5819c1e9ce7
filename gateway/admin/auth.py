"""Who may call the admin API: the holder of `gateway.admin_token`, as a bearer token.

The token is compared in constant time. With no admin token configured the API does not exist
(404 on every `/api` path, the OpenAPI document included): a 401 would invite guessing at a
token that cannot be right, and 404 says plainly that this gateway exposes no admin API.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from gateway.errors import GatewayError


def check_bearer(request: Request, admin_token: str) -> None:
    """Raise a 401 GatewayError unless the request carries `Authorization: Bearer <token>`."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise GatewayError(
            "Authentication required: send 'Authorization: Bearer <admin token>'.",
            error="unauthorized",
            status=401,
        )
    # Digests of equal length: the comparison leaks neither content nor the token's length.
    given_digest = hashlib.sha256(given.strip().encode()).digest()
    if not hmac.compare_digest(given_digest, hashlib.sha256(admin_token.encode()).digest()):
        raise GatewayError("Invalid admin token.", error="unauthorized", status=401)
