"""Logs: JSON lines on stdout, one per request and one per sign-in step, and the request id.

`JSONFormatter` writes every record as one JSON object: `time`, `level`, `logger`, `message`,
the `request_id` of the request being served (a context variable set by the app for each
request), the fields passed with `extra=` and, for errors, the traceback. `logging_config` is
the `dictConfig` that `gateway serve` (through uvicorn, in every worker) and `gateway demo` use.

Nothing secret may reach the log: the code logs no tokens, codes or cookies, and `redact` is
the safety net under that rule. It rewrites every finished line, so whatever slipped into a
message, a field or a traceback, a value shaped like a JWT, a signed cookie, the value of a
`code=` / `state=` / `token=` (and similar) parameter, a gateway cookie or an `Authorization`
credential comes out as `[redacted]`; an `extra` field named like a secret is never written.

The request id is the trusted front proxy's `X-Request-Id` when there is one (only a direct
peer in `trusted_proxies` is believed, as for `X-Forwarded-For`), else one of ours. It goes
upstream as `X-Request-Id` and is on every line logged while the request is served, so an
error page's reference and the request's own line can be tied together.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import re
import secrets
import time
from typing import Any

from starlette.types import Message, Scope, Send

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# The request being served, for a gateway route that decides access for another (forward-auth)
# and so fills in the same fields the guard does.
REQUEST_RECORD: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "request_record", default=None
)

_access = logging.getLogger("gateway.access")

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
# ... and those that formatters add to a record after it was made (after its extra fields), and
# uvicorn's `color_message` extra: the message again, with terminal colour codes.
_FORMATTER_ATTRIBUTES = frozenset({"message", "asctime", "color_message"})
REDACTED = "[redacted]"

# The net runs on every line, so it is built to be cheap on ordinary ones: its patterns start
# with a literal ("eyJ", ".", "=", a trigger word) that C code finds, and the name checks run on
# the lower-cased line, whose positions are the line's own because the formatter's JSON is ASCII.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)+")  # JWS, JWE
_AFTER_DOT = re.compile(r"\.[A-Za-z0-9_-]{20,}")  # the tail of an itsdangerous-signed value
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SIGNED_PART = 20  # a session id or binding and its signature are 32-43 characters each
_SECRET_NAMES = frozenset(  # lower case; `name=value` in a query, a form or a message
    {
        "access_token",
        "api_token",
        "cf_appsession",
        "cf_authorization",
        "cf_session",
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
# `extra=` fields with these names are never written, whatever their value looks like.
_SECRET_FIELDS = _SECRET_NAMES | {"authorization", "cookie", "set-cookie"}
_WORD = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_VALUE = re.compile(r"[^&\s\"'\\;,]+")  # up to the next separator or JSON escape
_HEADER_VALUE = re.compile(r"[^\"\\\n]+")  # a cookie header: every pair, to the end
# (trigger word, what precedes the value, how far the value runs)
_PREFIXED = (
    ("bearer", re.compile(r"bearer\s+"), _VALUE),
    ("basic", re.compile(r"basic\s+"), _VALUE),
    ("ssws", re.compile(r"ssws\s+"), _VALUE),
    ("cookie", re.compile(r"cookie\s*[:=]\s*"), _HEADER_VALUE),
)


def redact(text: str) -> str:
    """`text` with every value that looks like a credential replaced by `[redacted]`: JWTs,
    itsdangerous-signed values, and what follows `code=`, `state=`, `token=` (and the other
    secret parameter names), our cookies' `name=`, `Bearer` / `Basic` / `SSWS` and a cookie
    header's `cookie:`. Non-ASCII text is backslash-escaped first."""
    if not text.isascii():
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    text = _redact_signed(text)
    low = text.lower()
    spans = _named_values(text, low)
    return _replace(text, spans) if spans else text


def _redact_signed(text: str) -> str:
    pieces: list[str] = []
    done = 0
    for match in _AFTER_DOT.finditer(text):
        begin = match.start()
        while begin > done and text[begin - 1] in _URLSAFE:
            begin -= 1
        if pieces and begin == done == match.start():
            done = match.end()  # one more dotted part of the value just redacted
        elif match.start() - begin >= _SIGNED_PART:
            pieces += (text[done:begin], REDACTED)
            done = match.end()
    return "".join((*pieces, text[done:])) if pieces else text


def _named_values(text: str, low: str) -> list[tuple[int, int]]:
    """Where the values after a secret's name (`code=`, `Bearer `, `cookie: `...) lie."""
    spans: list[tuple[int, int]] = []
    equals = low.find("=")
    while equals != -1:
        begin = equals
        while begin and low[begin - 1] in _WORD:
            begin -= 1
        if low[begin:equals] in _SECRET_NAMES:
            _add_value(spans, _VALUE, text, equals + 1)
        equals = low.find("=", equals + 1)
    for word, prefix, value in _PREFIXED:
        if word in low:
            for match in prefix.finditer(low):
                start = match.start()
                if not start or low[start - 1] not in _WORD:  # a word of its own
                    _add_value(spans, value, text, match.end())
    return spans


def _add_value(spans: list[tuple[int, int]], value: re.Pattern[str], text: str, at: int) -> None:
    found = value.match(text, at)
    if found is not None:
        spans.append((at, found.end()))


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    pieces: list[str] = []
    done = 0
    for start, end in sorted(spans):
        if start >= done:
            pieces += (text[done:start], REDACTED)
            done = end
        elif end > done:  # overlaps the previous span (a cookie inside a cookie header)
            done = end
    return "".join((*pieces, text[done:]))


class _Clock:
    """ISO 8601 UTC timestamps with milliseconds; the seconds part is formatted once a second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"


# One encoder for every line: `json.dumps(..., default=str)` would build a new one each time.
_ENCODER = json.JSONEncoder(default=str)


class JSONFormatter(logging.Formatter):
    """Each record as one line of JSON; `redact=False` only for tests that look for leaks."""

    def __init__(self, *, redact: bool = True) -> None:
        super().__init__()
        self._redact = redact
        self._clock = _Clock()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._clock.timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        for key in _extra_fields(record):
            entry[key] = REDACTED if key.lower() in _SECRET_FIELDS else record.__dict__[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        line = _ENCODER.encode(entry)
        return redact(line) if self._redact else line


def _extra_fields(record: logging.LogRecord) -> list[str]:
    """The names of the record's `extra=` fields, in the order given.

    `Logger.makeRecord` adds them after the attributes every record has, so they are found by
    reading the record's attributes backwards up to the first of those: a few steps, where
    checking all thirty-odd attributes of every record would cost more than the rest of it.
    """
    names: list[str] = []
    for key in reversed(record.__dict__):
        if key in _RECORD_ATTRIBUTES:
            break
        if key not in _FORMATTER_ATTRIBUTES:
            names.append(key)
    names.reverse()
    return names


def logging_config(level: str = "info") -> dict[str, Any]:
    """The `logging.config.dictConfig` document: JSON lines on stdout for every logger."""
    level = level.upper()
    quiet = {"level": "WARNING"}  # httpx logs each Okta call at INFO; the metrics count them
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JSONFormatter}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            # uvicorn's own loggers: through the root handler, not uvicorn's text handlers.
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.access": {"handlers": [], "propagate": True, "level": level},
            "httpx": quiet,
            "httpcore": quiet,
        },
    }


# --- the request id and the per-request line -----------------------------------------------

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:=+/-]{1,128}")
# Unique across processes (a random prefix) and cheap (a counter): ids are for correlation,
# not secrets, so they need not be unpredictable.
_ID_PREFIX = secrets.token_hex(5)
_next_number = itertools.count(1).__next__


def new_request_id() -> str:
    return f"{_ID_PREFIX}{_next_number():x}"


class RequestRecord:
    """One request as its log line and the request metrics report it.

    Made by the app for each request, told whether the direct peer is a trusted proxy (whose
    `X-Request-Id` is kept); the guard fills in the app, the decision, the user and their
    email, the policy that decided and, for a deny, the rule that settled it; `watch` notes the
    status of the response as it is sent.
    """

    __slots__ = (
        "app",
        "decision",
        "email",
        "forwarded",
        "id_sent",
        "policy",
        "request_id",
        "rule",
        "status",
        "user",
    )

    def __init__(self, scope: Scope, *, trusted_peer: bool) -> None:
        given: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                given = value
                break
        request_id = ""
        if given is not None and trusted_peer:
            text = given.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                request_id = text
        self.request_id = request_id or new_request_id()
        self.id_sent = given is not None  # the client's own X-Request-Id must not go upstream
        self.app = ""
        self.decision = "gateway"
        self.user = ""
        self.email = ""
        self.policy = ""
        self.rule = ""
        self.status = 0
        self.forwarded = False

    def watch(self, send: Send) -> Send:
        """`send`, noting the response status on the way."""

        async def send_noting_status(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start" or kind == "websocket.http.response.start":
                self.status = message["status"]
            elif kind == "websocket.accept":
                self.status = 101
            elif kind == "websocket.close" and not self.status:
                self.status = 403  # refused before the handshake completed
            await send(message)

        return send_noting_status


def log_request(record: RequestRecord, scope: Scope, host: str, seconds: float) -> None:
    """The request's one line. The path only: a query string can carry codes and tokens.

    Made with `makeRecord` and `handle` rather than `info`, which would first walk the stack to
    find where it was called from: here that is known, and the walk is a good part of the cost.
    """
    if _access.isEnabledFor(logging.INFO):
        line = _access.makeRecord(
            _access.name,
            logging.INFO,
            __file__,
            0,
            "request",
            (),
            None,
            extra={
                "request_id": record.request_id,
                "method": scope.get("method", "GET"),
                "host": host,
                "path": scope["path"],
                "app": record.app,
                "decision": record.decision,
                "status": record.status,
                "duration_ms": round(seconds * 1000, 3),
                "user_uuid": record.user,
                "email": record.email,
                "policy": record.policy,
                "rule": record.rule,
            },
        )
        _access.handle(line)
