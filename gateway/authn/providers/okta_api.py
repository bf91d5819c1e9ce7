"""Okta's own URLs and API: org vs custom authorization server URLs, and the Groups API.

Okta has two kinds of authorization server (OKTA.md "Authorization servers"): the org server,
whose issuer is the bare org URL, and custom servers (`default` or `aus...`), whose issuer is
`{org}/oauth2/{id}`. `expected_issuer` and `discovery_url` encode that difference so the Okta
provider (`okta.py`) never guesses. `fetch_user_groups` reads a user's complete group list from
`GET /api/v1/users/{id}/groups` with an API token: the only source that works past Okta's
100-group limit on the groups claim (SPEC 4 "Sign-in rules").
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from gateway.errors import IdPError

logger = logging.getLogger("gateway.okta")

# One RFC 8288 link-value: `<uri>` followed by `; param=value` pairs, values quoted or not.
_LINK = re.compile(r'<([^>]*)>((?:\s*;\s*[^;,="]+\s*=\s*(?:"[^"]*"|[^;,"]*))*)')
_LINK_PARAM = re.compile(r';\s*([^;,="\s]+)\s*=\s*(?:"([^"]*)"|([^;,"\s]*))')

# Okta's error catalog: switch on errorCode only, the summaries are not stable (OKTA.md).
_API_ERRORS = {
    "E0000011": (
        "the Okta API token is invalid",
        "create a new API token in Okta (Security > API > Tokens) and update api_token",
    ),
    "E0000006": (
        "the Okta API token lacks permission to read groups",
        "create the API token as an admin with at least the Read-only Administrator role",
    ),
    "E0000007": (
        "user not found in Okta",
        "the ID token's sub must be an Okta user id of this org: check the Okta domain",
    ),
}

# Used when a 429 carries no usable X-Rate-Limit-Reset, and as the floor of every wait so that a
# reset already in the past cannot turn into a busy loop of retries.
_MIN_RATE_LIMIT_WAIT = 1.0


def expected_issuer(okta_account: str, authorization_server_id: str) -> str:
    """The `iss` Okta puts in ID tokens: the org URL, or `{org}/oauth2/{id}` (OKTA.md)."""
    org = okta_account.rstrip("/")
    if not authorization_server_id:
        return org
    return f"{org}/oauth2/{quote(authorization_server_id, safe='')}"


def discovery_url(okta_account: str, authorization_server_id: str) -> str:
    """The OpenID Provider Configuration URL of the org or the custom authorization server."""
    return (
        f"{expected_issuer(okta_account, authorization_server_id)}/.well-known/openid-configuration"
    )


def org_keys_url(okta_account: str) -> str:
    """The org authorization server's key set, which also signs Okta's Universal Logout
    requests (OKTA.md "Universal Logout")."""
    return f"{okta_account.rstrip('/')}/oauth2/v1/keys"


def _next_link(link_headers: list[str]) -> str:
    """The `rel="next"` target among every `Link` header value, or "" (RFC 8288 section 3).

    Okta sends `self` and `next` as separate headers, other servers join them with commas; the
    `rel` parameter may hold several space-separated relation types.
    """
    for header in link_headers:
        for target, params in _LINK.findall(header):
            for name, quoted, bare in _LINK_PARAM.findall(params):
                if name.lower() == "rel" and "next" in (quoted or bare).lower().split():
                    return str(target)
    return ""


async def fetch_user_groups(
    http: httpx.AsyncClient,
    okta_account: str,
    api_token: str,
    user_id: str,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    budget: float = 10.0,
) -> tuple[list[str], int]:
    """Every group name of an Okta user, and how many pages that took.

    Follows `Link: rel="next"` exactly as given (OKTA.md: cursor paging, never build the URL),
    but only within the Okta org: the `SSWS` token must never be sent to another origin. A 429
    waits until `X-Rate-Limit-Reset`; once the total waiting would exceed `budget` seconds it
    gives up with IdPError(step="groups").
    """
    org = okta_account.rstrip("/")
    url = f"{org}/api/v1/users/{quote(user_id, safe='')}/groups"
    headers = {"Authorization": f"SSWS {api_token}", "Accept": "application/json"}
    names: list[str] = []
    pages = 0
    waited = 0.0
    seen: set[str] = set()
    while url:
        response = await _get(http, url, headers)
        if response.status_code == 429:
            wait = _rate_limit_wait(response, clock)
            if waited + wait > budget:
                raise IdPError(
                    "Reading groups from Okta failed: the Okta API rate limit was still exceeded "
                    f"after waiting {waited:.0f} s",
                    step="groups",
                    status=503,
                    hint="the API token's rate limit is shared with other integrations; "
                    "raise its share in Okta (Security > API > Tokens) or retry later",
                )
            logger.info("okta groups api rate limited, waiting %.1f s", wait)
            await sleep(wait)
            waited += wait
            continue
        if response.status_code != 200:
            raise _api_error(response)
        names.extend(_group_names(response))
        pages += 1
        seen.add(url)
        url = _next_link(response.headers.get_list("link"))
        if url and (url in seen or not _same_origin(url, org)):
            raise IdPError(
                "Reading groups from Okta failed: the next-page link points back to a page "
                "already read or outside the Okta org",
                step="groups",
                hint="check that okta_account is the Okta org URL",
            )
    logger.info("okta groups api: %d groups in %d pages", len(names), pages)
    return names, pages


async def _get(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> httpx.Response:
    try:
        return await http.get(url, headers=headers)
    except httpx.TimeoutException as exc:
        raise IdPError(
            "Reading groups from Okta failed: the Okta API did not answer in time",
            step="groups",
            status=504,
        ) from exc
    except httpx.TransportError as exc:
        raise IdPError(
            "Reading groups from Okta failed: could not connect to the Okta API",
            step="groups",
            status=503,
            hint="check the Okta domain and this host's outbound network access",
        ) from exc


def _rate_limit_wait(response: httpx.Response, clock: Callable[[], float]) -> float:
    # OKTA.md "Rate limits": X-Rate-Limit-Reset is the UTC epoch second the window resets.
    try:
        reset = float(response.headers.get("x-rate-limit-reset", ""))
    except ValueError:
        return _MIN_RATE_LIMIT_WAIT
    return max(reset - clock(), _MIN_RATE_LIMIT_WAIT)


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def _group_names(response: httpx.Response) -> list[str]:
    try:
        items: Any = response.json()
    except ValueError:
        items = None
    if not isinstance(items, list):
        raise IdPError(
            "Reading groups from Okta failed: the Okta API answered with something other than "
            "a list of groups",
            step="groups",
        )
    names: list[str] = []
    for item in items:
        profile = item.get("profile") if isinstance(item, dict) else None
        name = profile.get("name") if isinstance(profile, dict) else None
        if not isinstance(name, str):
            raise IdPError(
                "Reading groups from Okta failed: a group without profile.name",
                step="groups",
            )
        names.append(name)
    return names


def _api_error(response: httpx.Response) -> IdPError:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    code = body.get("errorCode")
    summary = body.get("errorSummary")
    logger.warning(
        "okta groups api failed: status=%s errorCode=%s errorId=%s",
        response.status_code,
        code,
        body.get("errorId"),
    )
    reason, hint = _API_ERRORS.get(code if isinstance(code, str) else "", ("", ""))
    if not reason:
        reason = summary if isinstance(summary, str) and summary else f"HTTP {response.status_code}"
    return IdPError(f"Reading groups from Okta failed: {reason}", step="groups", hint=hint)
