"""`/api/service_tokens` and `/api/keys`: machine credentials and the app-token signing keys.

A service token's secret is in the creation answer and nowhere else, ever. `duration` is a
Go-style duration or "forever"; like Cloudflare, a token without one lasts a year. The signing
keys are listed by their public halves only; a rotation is in the store, so the next token any
instance mints is signed with the new key, and every instance's `/cdn-cgi/access/certs`
publishes it at once (the previous key stays published for seven days).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.envelope import envelope, read_json
from gateway.admin.serialize import (
    MAX_DURATION,
    format_duration,
    service_token_json,
    signing_key_json,
)
from gateway.config import parse_duration
from gateway.errors import ConfigError, NotFoundError
from gateway.runtime import Runtime

DEFAULT_DURATION = "8760h"  # Cloudflare's default: one year
MAX_NAME = 200


def _token_request(body: dict[str, Any]) -> tuple[str, float | None]:
    """`{"name", "duration"}` -> (name, seconds or None for "forever"); ConfigError lists every
    problem with its key, as the config validator does."""
    problems = [f"{key}: unknown key" for key in body if key not in ("name", "duration")]
    name = body.get("name")
    clean_name = name.strip() if isinstance(name, str) else ""
    if name is None:
        problems.append("name: is required")
    elif not clean_name:
        problems.append("name: must be a non-empty string")
    elif len(clean_name) > MAX_NAME:
        problems.append(f"name: must be at most {MAX_NAME} characters")
    duration = body.get("duration", DEFAULT_DURATION)
    seconds: float | None = None
    if not isinstance(duration, str):
        problems.append("duration: must be a duration such as '8760h', or 'forever'")
    elif duration != "forever":
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            problems.append(f"duration: {exc}")
        else:
            if seconds <= 0:
                problems.append("duration: must be positive")
            elif not seconds <= MAX_DURATION:
                problems.append(f"duration: must be at most {format_duration(MAX_DURATION)}")
    if problems:
        raise ConfigError(problems)
    return clean_name, seconds


async def list_service_tokens(request: Request, rt: Runtime) -> Response:
    return envelope([service_token_json(t) for t in await rt.service_tokens.all()])


async def create_service_token(request: Request, rt: Runtime) -> Response:
    name, duration = _token_request(await read_json(request))
    token, secret = await rt.service_tokens.create(name, duration)
    return envelope({**service_token_json(token), "client_secret": secret}, status=201)


async def delete_service_token(request: Request, rt: Runtime) -> Response:
    token_id = request.path_params["token_id"]
    if not await rt.service_tokens.delete(token_id):
        raise NotFoundError(f"No service token with id {token_id!r}.")
    return envelope({"id": token_id})


async def _keys(rt: Runtime) -> list[dict[str, Any]]:
    keys = await rt.signing_keys.published()
    return [signing_key_json(k, current=k.retired is None) for k in keys]


async def list_keys(request: Request, rt: Runtime) -> Response:
    return envelope(await _keys(rt))


async def rotate_keys(request: Request, rt: Runtime) -> Response:
    await rt.signing_keys.rotate()
    return envelope(await _keys(rt))
