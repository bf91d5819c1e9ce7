"""The `/api` ASGI app: admin-token check, routing, and every error as an envelope.

The gateway's route table (`web/routes.py`) mounts it at `/api`: every path there, whatever its
characters, comes here, so nothing under `/api` answers with the HTML error pages or Starlette's
plain-text 404/405: unknown paths, wrong methods, a missing token, a store that is down and even
a bug all come back as Cloudflare's envelope with a matching status. Handlers get the request
and the runtime and return a response; they raise `GatewayError` for every refusal.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import Receive, Scope, Send

from gateway.admin.auth import check_bearer
from gateway.admin.envelope import error_envelope, failure
from gateway.errors import (
    GatewayError,
    StoreUnavailableError,
)
from gateway.runtime import Runtime, reference_id

log = logging.getLogger("gateway.admin")

Handler = Callable[[Request, Runtime], Awaitable[Response]]
PREFIX = "/api"


@dataclass(frozen=True, slots=True)
class Operation:
    """One method on one path below `/api` (Starlette path syntax: "/apps/{app_id}")."""

    method: str
    path: str
    handler: Handler
    public: bool = False  # served without the admin token (the OpenAPI document)
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", compile_path(self.path)[0])


class AdminAPI:
    """Routes `/api/...` requests to their operation and renders every outcome as an envelope."""

    def __init__(self, operations: list[Operation]):
        self.operations = operations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self._respond(request)
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        try:
            rt: Runtime | None = getattr(request.app.state, "runtime", None)
            if rt is None:
                raise StoreUnavailableError("The gateway is starting or stopping.")
            admin_token = rt.settings.gateway.admin_token
            if not admin_token:
                raise GatewayError(
                    "The admin API is off: no gateway.admin_token is configured.",
                    error="no_route",
                    status=404,
                )
            path = request.scope["path"].removeprefix(PREFIX)
            operation, allowed = self._match(request, path)
            if operation is None or not operation.public:
                check_bearer(request, admin_token)
            if operation is None:
                if allowed:
                    return failure(
                        405,
                        "method_not_allowed",
                        [f"{request.method} is not allowed here; use {', '.join(allowed)}."],
                        {"Allow": ", ".join(allowed)},
                    )
                return failure(404, "no_route", [f"No admin API route {request.url.path}."])
            return await operation.handler(request, rt)
        except GatewayError as exc:
            if exc.status >= 500:
                log.warning("admin API %s %s: %s", request.method, request.url.path, exc)
            return error_envelope(exc)
        except Exception:  # a bug: still an envelope, never a traceback
            ref = reference_id()
            log.exception("admin API error ref=%s %s %s", ref, request.method, request.url.path)
            return failure(500, "internal_error", [f"Internal error (reference {ref})."])

    def _match(self, request: Request, path: str) -> tuple[Operation | None, list[str]]:
        """The operation for this method and path, else the methods the path allows."""
        allowed: list[str] = []
        for operation in self.operations:
            match = operation.pattern.fullmatch(path)
            if match is None:
                continue
            if operation.method == request.method:
                request.scope["path_params"] = match.groupdict()
                return operation, allowed
            allowed.append(operation.method)
        return None, allowed
