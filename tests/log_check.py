"""The suite-wide log check: no secret, token, code or cookie value in any log line.

`LogCheck` is a handler on the root logger for the whole run. It renders every record as the
gateway's JSON line *without* the redaction net (`JSONFormatter(redact=False)`), so a secret
that code logs is caught even where the net would have hidden it: the net is the last line of
defence, not a licence. `Secrets` learns the secret values of the run as they cross HTTP:
every `httpx` request and response of every test (the browser's and the gateway's own calls to
the fake Okta) is looked at for client secrets and API tokens (Authorization headers), cookie
values (Cookie, Set-Cookie), authorization codes, state, one-time tokens (query strings, form
bodies, redirects) and ID and access tokens (JSON answers), next to the fixed secrets of the
test configuration. After each test its lines are searched for the secrets seen during it and
the fixed ones (values are random per test, so earlier tests' values cannot turn up, and the
search stays cheap), and for anything shaped like a JWT.

httpx's and httpcore's own INFO and DEBUG lines are left out, as `logs.logging_config` leaves
them out of the gateway's log: here they are mostly the test browser's requests, whose URLs
carry the codes and tokens the browser is handed.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from gateway.ops.logs import JSONFormatter

_MIN_SECRET = 6  # shorter values would turn up by chance ("s3cret" is the shortest one used)
_SECRET_PARAMS = frozenset(
    {
        "access_token",
        "client_secret",
        "code",
        "code_verifier",
        "id_token",
        "nonce",
        "password",
        "refresh_token",
        "secret",
        "state",
        "token",
    }
)
_SECRET_JSON_KEYS = _SECRET_PARAMS | {"api_token", "cookie_secret", "admin_token"}
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.")
_MAX_JSON = 256 * 1024
_QUIET = ("httpx", "httpcore")  # below WARNING in `logs.logging_config`


class Secrets:
    """The fixed secrets of the test configuration and those seen since the last `take`."""

    def __init__(self, fixed: Iterable[str]):
        self.values: set[str] = set()
        for value in fixed:
            self.add(value)
        self._fixed = frozenset(self.values)

    def take(self) -> set[str]:
        """The secrets to look for now; forgets the ones seen since the last call."""
        values, self.values = self.values, set(self._fixed)
        return values

    def add(self, value: str) -> None:
        value = value.strip().strip('"')
        if len(value) >= _MIN_SECRET:
            self.values.add(value)
            # A signed cookie "<id>.<signature>": the session id alone is a credential too.
            for part in value.split("."):
                if len(part) >= 16:
                    self.values.add(part)

    def from_request(self, request: httpx.Request) -> None:
        self._authorization(request.headers.get("authorization", ""))
        for header in request.headers.get_list("cookie"):
            self._cookies(header)
        self._query(str(request.url))
        content_type = request.headers.get("content-type", "")
        if "application/x-www-form-urlencoded" in content_type:
            body = _body(request)
            if body is not None:
                self._pairs(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
        elif "json" in content_type:
            self._json(_body(request))

    def from_response(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            self._cookies(header)
        if "location" in response.headers:
            self._query(response.headers["location"])
        if "json" in response.headers.get("content-type", ""):
            try:
                content = response.content
            except httpx.ResponseNotRead:  # streamed: not read here
                return
            self._json(content)

    def _authorization(self, value: str) -> None:
        scheme, _, credentials = value.partition(" ")
        if not credentials:
            if scheme.lower() not in ("bearer", "basic", "ssws"):
                self.add(scheme)  # a bare SCIM secret, sent without "Bearer "
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials).decode("latin-1")
            except ValueError:
                return
            self.add(decoded.partition(":")[2])
        else:
            self.add(credentials)

    def _cookies(self, header: str) -> None:
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(header)
        except CookieError:
            return
        for morsel in cookie.values():
            self.add(morsel.value)

    def _query(self, url: str) -> None:
        self._pairs(parse_qsl(urlsplit(url).query, keep_blank_values=True))

    def _pairs(self, pairs: Iterable[tuple[str, str]]) -> None:
        for name, value in pairs:
            if name.lower() in _SECRET_PARAMS:
                self.add(value)

    def _json(self, content: bytes | None) -> None:
        if not content or len(content) > _MAX_JSON:
            return
        try:
            self._walk(json.loads(content))
        except ValueError:
            return

    def _walk(self, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, str) and key.lower() in _SECRET_JSON_KEYS:
                    self.add(item)
                else:
                    self._walk(item)
        elif isinstance(value, list):
            for item in value:
                self._walk(item)


def _body(request: httpx.Request) -> bytes | None:
    try:
        return request.content
    except httpx.RequestNotRead:
        return None


class LogCheck(logging.Handler):
    """Keeps every log line of the run, unredacted, until the next check."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JSONFormatter(redact=False))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING and record.name.startswith(_QUIET):
            return
        self.lines.append(self.format(record))

    def leaks(self, secrets: Secrets) -> list[str]:
        """The lines logged since the last call that hold a secret (shown masked)."""
        lines, self.lines = self.lines, []
        values = secrets.take()
        found = []
        for line in lines:
            hits = [s for s in values if s in line] + _JWT.findall(line)
            if hits:
                for hit in sorted(hits, key=len, reverse=True):
                    line = line.replace(hit, f"<{len(hit)}-character secret>")
                found.append(line)
        return found


def watch_httpx(secrets: Secrets) -> list[tuple[type, str, Any]]:
    """Wrap `httpx.Client.send` and `httpx.AsyncClient.send` to feed `secrets`; returns the
    (class, name, wrapper) triples for a MonkeyPatch to install."""
    sync_send = httpx.Client.send
    async_send = httpx.AsyncClient.send

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        secrets.from_request(request)
        response = sync_send(self, request, **kwargs)
        secrets.from_response(response)
        return response

    async def send_async(
        self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any
    ) -> httpx.Response:
        secrets.from_request(request)
        response = await async_send(self, request, **kwargs)
        secrets.from_response(response)
        return response

    return [(httpx.Client, "send", send), (httpx.AsyncClient, "send", send_async)]
