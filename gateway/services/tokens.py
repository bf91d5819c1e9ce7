"""Service tokens and the app-token signing keys (SPEC 3, 4, 7).

A service token's secret is returned by `create_service_token` and kept nowhere, ever.
`duration` is a Go-style duration or "forever"; like Cloudflare, a token without one lasts a
year. A key rotation is in the store, so the next token any instance mints is signed with the
new key, and every instance's `/cdn-cgi/access/certs` publishes it at once (the previous key
stays published for seven days).
"""

from __future__ import annotations

from typing import Any

from gateway.admin.serialize import MAX_DURATION, format_duration
from gateway.authz.service_tokens import ServiceToken
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


async def create_service_token(
    rt: Runtime, body: dict[str, Any], actor: str
) -> tuple[ServiceToken, str]:
    """A new service token and its client secret (shown once, kept nowhere)."""
    name, duration = _token_request(body)
    token, secret = await rt.service_tokens.create(name, duration)
    await rt.audit_log.record(actor, "create", "service_token", token.id, token.name)
    return token, secret


async def delete_service_token(rt: Runtime, token_id: str, actor: str) -> None:
    if not await rt.service_tokens.delete(token_id):
        raise NotFoundError(f"No service token with id {token_id!r}.")
    await rt.audit_log.record(actor, "delete", "service_token", token_id)


async def rotate_keys(rt: Runtime, actor: str) -> None:
    """Sign app tokens with a new key from now on."""
    keys = await rt.signing_keys.rotate()  # newest first
    await rt.audit_log.record(actor, "rotate", "signing_key", keys[0].kid)
