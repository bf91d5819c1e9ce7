"""Who may call the admin API: the holder of `gateway.admin_token`, as a bearer token.

The token is compared in constant time (`web/bearer.py`). With no admin token configured the
API does not exist (404 on every `/api` path, the OpenAPI document included): a 401 would invite
guessing at a token that cannot be right, and 404 says plainly that this gateway exposes no
admin API.
"""

from __future__ import annotations

from starlette.requests import Request

from gateway.errors import GatewayError
from gateway.web.bearer import bearer_token, same_token


def check_bearer(request: Request, admin_token: str) -> None:
    """Raise a 401 GatewayError unless the request carries `Authorization: Bearer <token>`."""
    given = bearer_token(request.headers.get("authorization", ""))
    if given is None:
        raise GatewayError(
            "Authentication required: send 'Authorization: Bearer <admin token>'.",
            error="unauthorized",
            status=401,
        )
    if not same_token(given, admin_token):
        raise GatewayError("Invalid admin token.", error="unauthorized", status=401)
