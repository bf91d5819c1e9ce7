"""The admin API's wire format: JSON bodies in, Cloudflare's v4 envelope out.

Every answer, success or failure, is `{"success", "errors", "messages", "result"}` with an HTTP
status that matches; a success may carry warnings in `messages`, as `{"code", "message"}` items.
A failure carries one `{"code", "message"}` item per problem (a rejected object: one per
validation problem, each with its key path) and `result: null`. Request bodies are JSON objects
of at most `MAX_BODY` bytes sent as `application/json`; anything else is refused here before a
handler looks at it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import ConfigError, GatewayError
from gateway.web import bodies

MAX_BODY = 1024 * 1024  # 1 MiB: the largest app (many policies) is a few KiB
MAX_PAGE = 1_000_000

# Error codes (`errors[].code`), stable and documented in the OpenAPI description. Cloudflare's
# own numbers where it has one (7000 no route, 7001 method, 10000 authentication).
CODES: dict[str, int] = {
    "invalid_json": 1000,
    "invalid_config": 1001,  # one item per validation problem, "key.path: message"
    "unprocessable": 1002,
    "not_found": 1003,
    "conflict": 1004,
    "read_only": 1005,
    "body_too_large": 1006,
    "unsupported_media_type": 1007,
    "store_unavailable": 1008,
    "internal_error": 1009,
    "scim_secret_pinned": 1010,
    "invalid_query": 1011,
    "invalid_path": 1012,
    "config_warning": 1013,  # in `messages` of a success: "key.path: what may bite" (checks.py)
    "no_route": 7000,
    "method_not_allowed": 7001,
    "unauthorized": 10000,
}
_OTHER = 1099  # a GatewayError with an `error` not listed above


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a long list, Cloudflare-style: `?page=` (from 1) and `?per_page=`."""

    page: int
    per_page: int

    @property
    def start(self) -> int:
        """The 0-based index of the page's first item."""
        return (self.page - 1) * self.per_page

    def info(self, count: int, total_count: int) -> dict[str, int]:
        """Cloudflare's `result_info` for a page of `count` items out of `total_count`."""
        return {
            "page": self.page,
            "per_page": self.per_page,
            "count": count,
            "total_count": total_count,
        }


def envelope(
    result: Any,
    *,
    status: int = 200,
    result_info: dict[str, int] | None = None,
    warnings: list[str] | None = None,
) -> Response:
    """A successful answer; `result_info` for a page of a longer list; `warnings` (the
    configuration checks') as `messages` items."""
    messages = [{"code": CODES["config_warning"], "message": w} for w in warnings or ()]
    body: dict[str, Any] = {"success": True, "errors": [], "messages": messages, "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return JSONResponse(body, status_code=status, headers=_no_store(None))


def query_int(request: Request, name: str, default: int, maximum: int) -> int:
    """A query parameter that must be an integer from 1 to `maximum` (400 otherwise)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # isdigit() alone admits "²" and a 5000-digit number int() refuses to read
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9 and 1 <= int(raw) <= maximum):
        raise GatewayError(
            f"{name}: must be an integer from 1 to {maximum}", error="invalid_query", status=400
        )
    return int(raw)


def page_of(request: Request, default_size: int, max_size: int) -> Page:
    """The page a list request asks for (`page` up to MAX_PAGE)."""
    return Page(
        page=query_int(request, "page", 1, MAX_PAGE),
        per_page=query_int(request, "per_page", default_size, max_size),
    )


def failure(
    status: int, error: str, messages: list[str], headers: Mapping[str, str] | None = None
) -> Response:
    """A failed answer: one error item per message, all with the code of `error`."""
    code = CODES.get(error, _OTHER)
    body = {
        "success": False,
        "errors": [{"code": code, "message": m} for m in messages],
        "messages": [],
        "result": None,
    }
    return JSONResponse(body, status_code=status, headers=_no_store(headers))


def error_envelope(exc: GatewayError) -> Response:
    """The envelope for a gateway error; a ConfigError gives one item per problem."""
    messages = exc.problems if isinstance(exc, ConfigError) else [exc.description]
    headers = {"WWW-Authenticate": 'Bearer realm="gateway admin API"'} if exc.status == 401 else {}
    return failure(exc.status, exc.error, messages, headers)


def envelope_invalid_path() -> Response:
    """The answer to an `/api` path the gateway refuses before routing it: a "." or ".."
    segment or a backslash (`routing.is_ambiguous_path`)."""
    return failure(400, "invalid_path", ["Bad request: invalid host or path."])


def _no_store(headers: Mapping[str, str] | None) -> dict[str, str]:
    # Answers can name users and sessions: never cached by a proxy or browser.
    return {"Cache-Control": "no-store", **(headers or {})}


def is_json(media_type: str) -> bool:
    """`application/json` or a `+json` type such as `application/merge-patch+json`."""
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object: 415 for another content type, 413 over MAX_BODY,
    400 for malformed JSON or a body that is not an object."""
    if not is_json(bodies.media_type(request)):
        raise GatewayError(
            "Send the request body as JSON with 'Content-Type: application/json'.",
            error="unsupported_media_type",
            status=415,
        )
    body = await bodies.read_bounded(request, MAX_BODY)
    if body is None:
        raise _too_large()
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        detail = f": {exc.msg}" if isinstance(exc, json.JSONDecodeError) else ""
        raise GatewayError(
            f"The request body is not valid JSON{detail}.", error="invalid_json", status=400
        ) from exc
    if not isinstance(data, dict):
        raise GatewayError(
            "The request body must be a JSON object.", error="invalid_json", status=400
        )
    return data


def _too_large() -> GatewayError:
    return GatewayError(
        f"The request body is larger than {MAX_BODY} bytes.", error="body_too_large", status=413
    )


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259 6); Python's parser accepts them by default.
    raise ValueError(f"{name} is not valid JSON")
