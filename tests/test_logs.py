"""Logs: the JSON line format, the redaction net, the per-request and sign-in step lines, and
the request id (ours, or a trusted proxy's; sent upstream; on error lines).

Lines are captured as production writes them: formatted by `JSONFormatter` when they are
emitted, inside the request. The suite-wide check that no secret reaches any log line at all is
in `conftest.py` / `log_check.py`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from fake_okta import FakeOkta
from harness import (
    EchoUpstream,
    browser,
    free_port,
    running,
    settings_doc,
    sign_in,
    start_sign_in,
)

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.ops.logs import REDACTED, REQUEST_ID, JSONFormatter, redact
from gateway.state.store import Store

Entry = dict[str, Any]
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JSONFormatter())
        self.entries: list[Entry] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("httpx"):
            return  # the test browser's own request lines (`gateway serve` keeps httpx quiet)
        line = self.format(record)
        assert "\n" not in line  # one record, one line
        self.entries.append(json.loads(line))


@pytest.fixture
def lines() -> Iterator[list[Entry]]:
    """Every log line written during the test, parsed."""
    handler = _Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler.entries
    finally:
        root.removeHandler(handler)


def requests_logged(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries if e["logger"] == "gateway.access"]


class HeaderEcho(EchoUpstream):
    """The echo upstream, also keeping every `X-Request-Id` line it got (its dict keeps one)."""

    def __init__(self) -> None:
        super().__init__()
        self.request_ids: list[list[str]] = []

    async def _echo(self, request: web.Request) -> web.Response:
        self.request_ids.append(request.headers.getall("X-Request-Id", []))
        return await super()._echo(request)


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[HeaderEcho]:
    echo = HeaderEcho()
    await echo.start()
    yield echo
    await echo.stop()


def gateway_with(upstream: EchoUpstream, store: Store, **gateway: Any) -> Gateway:
    doc = settings_doc(upstream.url)
    doc["gateway"].update(gateway)
    return create_app(parse_settings(doc), store=store)


# --- the line format ------------------------------------------------------------------------


def record(message: str, *args: object, **extra: Any) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "gateway.test", "levelno": 20, "levelname": "INFO", "msg": message, "args": args}
        | extra
    )


def test_uvicorn_s_colour_copy_of_the_message_is_left_out() -> None:
    # uvicorn passes `color_message` (the message with ANSI colour codes) as an extra field.
    line = json.loads(
        JSONFormatter().format(record("Started", color_message="\x1b[32mStarted\x1b[0m"))
    )
    assert "color_message" not in line
    assert line["message"] == "Started"


def test_a_record_is_one_json_object_with_its_extra_fields() -> None:
    line = JSONFormatter().format(record("sign-in for %s", "alice", step="token", groups=3))
    entry = json.loads(line)
    assert _TIME.fullmatch(entry.pop("time"))
    assert entry == {
        "level": "INFO",
        "logger": "gateway.test",
        "message": "sign-in for alice",
        "step": "token",
        "groups": 3,
    }


def test_the_request_being_served_names_its_lines() -> None:
    token = REQUEST_ID.set("req-42")
    try:
        entry = json.loads(JSONFormatter().format(record("hello")))
    finally:
        REQUEST_ID.reset(token)
    assert entry["request_id"] == "req-42"
    assert "request_id" not in json.loads(JSONFormatter().format(record("hello")))


def test_fields_named_like_secrets_are_never_written() -> None:
    fields = {"client_secret": "s3cret", "Cookie": "a=b", "token": "t0ken-value", "state": "x"}
    entry = json.loads(JSONFormatter().format(record("hello", **fields)))
    assert {name: entry[name] for name in fields} == dict.fromkeys(fields, REDACTED)


def test_a_traceback_is_kept_in_the_line_and_redacted_too() -> None:
    try:
        raise ValueError("bad cookie: CF_Authorization=abcdef.ghijkl")
    except ValueError:
        failed = record("boom", exc_info=sys.exc_info())
    entry = json.loads(JSONFormatter().format(failed))
    assert "ValueError" in entry["exception"]
    assert "abcdef" not in entry["exception"]


def test_values_json_cannot_hold_are_written_as_text() -> None:
    entry = json.loads(JSONFormatter().format(record("x", where={1})))
    assert entry["where"] == "{1}"


# --- the redaction net ----------------------------------------------------------------------

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiIwMHUxIn0.c2lnbmF0dXJlLXZhbHVl"
SIGNED = "Jq3Yy7m6xP0e0sZtq8r4l2i3o9u8y7t6r5e4w3q2a1s.kT3m9XbQ1v8nR2c5Z7y0w4u6s8q0o2m4k6i8g0e2c4a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"id token {JWT} rejected", f"id token {REDACTED} rejected"),
        ("GET /cb?code=SplxlOBeZQ&state=af0ifjsldkj", f"GET /cb?code={REDACTED}&state={REDACTED}"),
        (
            "POST grant_type=x&code_verifier=abc&nonce=n-0S6",
            f"POST grant_type=x&code_verifier={REDACTED}&nonce={REDACTED}",
        ),
        (
            "/authorized?token=one-time&redirect_url=/",
            f"/authorized?token={REDACTED}&redirect_url=/",
        ),
        ('"access_token=aa; id_token=bb"', f'"access_token={REDACTED}; id_token={REDACTED}"'),
        (f"CF_Authorization={SIGNED}; theme=dark", f"CF_Authorization={REDACTED}; theme=dark"),
        ("CF_AppSession=short.value", f"CF_AppSession={REDACTED}"),
        ("Cookie: sid=1; CF_Session=x", f"Cookie: {REDACTED}"),
        ("set-cookie=a=b; Path=/", f"set-cookie={REDACTED}"),
        ("Authorization: Bearer scim-secret", f"Authorization: Bearer {REDACTED}"),
        ("basic czNjcmV0 and SSWS 00okta", f"basic {REDACTED} and SSWS {REDACTED}"),
        (f"session {SIGNED} gone", f"session {REDACTED} gone"),
        ("CODE=ABC", f"CODE={REDACTED}"),
    ],
)
def test_credentials_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(json.dumps({"message": text})) == json.dumps({"message": redact(text)})


@pytest.mark.parametrize(
    "text",
    [
        "request failed ref=3f2a9c01b2d4 error=store_unavailable status=503 step=state",
        "errorCode=E0000011 session_state=kept x_token=kept",
        "host wiki.example.com took 1.250 s in gateway.store.redis",
        "user 8f14e45f-ceea-467f-a0d3-1f2e3d4c5b6a signed in with 12 groups",
        "cookies must be enabled for the gateway's domain",
        "sign-in failed at token: Okta refused the code exchange: invalid_grant",
        '{"path": "/docs/page", "status": 200, "duration_ms": 1.25}',
    ],
)
def test_ordinary_lines_pass_untouched(text: str) -> None:
    assert redact(text) == text


def test_non_ascii_text_is_escaped_before_it_is_searched() -> None:
    assert redact("naïve code=abc") == f"na\\xefve code={REDACTED}"


# --- the per-request line and the request id ------------------------------------------------


async def test_each_request_leaves_one_line_with_who_went_where(
    gateway: Gateway,
    client: httpx.AsyncClient,
    okta: FakeOkta,
    upstream: HeaderEcho,
    lines: list[Entry],
) -> None:
    await sign_in(client, okta, "00ualice")
    user = (await client.get("/cdn-cgi/access/get-identity")).json()["user_uuid"]
    lines.clear()
    response = await client.get("/docs/page?code=in-the-query&x=1")
    assert response.status_code == 200

    [line] = requests_logged(lines)
    assert _TIME.fullmatch(line.pop("time"))
    assert line.pop("duration_ms") > 0
    request_id = line.pop("request_id")
    assert line == {
        "level": "INFO",
        "logger": "gateway.access",
        "message": "request",
        "method": "GET",
        "host": "access.example.com",
        "path": "/docs/page",  # never the query string
        "app": "team-app",
        "decision": "allow",
        "status": 200,
        "user_uuid": user,
        "email": "alice@example.com",
        "policy": "Engineering",  # the policy that let her in
        "rule": "",  # only a deny names a rule
    }
    # the same id went upstream, once
    assert upstream.request_ids[-1] == [request_id]


async def test_refused_requests_and_the_gateway_s_own_are_logged_too(
    client: httpx.AsyncClient, lines: list[Entry]
) -> None:
    await client.get("/docs/page")
    await client.get("https://nowhere.example.com/")
    await client.get("/healthz")
    logged = [(e["host"], e["app"], e["decision"], e["status"]) for e in requests_logged(lines)]
    assert logged == [
        ("access.example.com", "team-app", "unauthenticated", 302),
        ("nowhere.example.com", "", "no_app", 404),
        ("access.example.com", "", "gateway", 200),
    ]
    ids = [e["request_id"] for e in requests_logged(lines)]
    assert len(set(ids)) == 3


async def test_a_client_s_request_id_is_replaced(
    client: httpx.AsyncClient, okta: FakeOkta, upstream: HeaderEcho, lines: list[Entry]
) -> None:
    await sign_in(client, okta, "00ualice")
    await client.get("/docs/page", headers={"X-Request-Id": "forged-by-the-client"})
    [sent] = upstream.request_ids[-1:]
    assert sent != ["forged-by-the-client"] and len(sent) == 1
    assert requests_logged(lines)[-1]["request_id"] == sent[0]


@pytest.mark.parametrize(
    ("given", "kept"),
    [("nginx-4f7c2a", True), ("Root=1-67891233-abcdef012345678912345678", True), ("a b", False)],
)
async def test_a_trusted_proxy_s_request_id_is_kept(
    store: Store,
    okta: FakeOkta,
    upstream: HeaderEcho,
    lines: list[Entry],
    given: str,
    kept: bool,
) -> None:
    app = gateway_with(upstream, store, trusted_proxies=["203.0.113.0/24"])
    async with running(app), browser(app) as client:
        await sign_in(client, okta, "00ualice")
        await client.get("/docs/page", headers={"X-Request-Id": given})
    [sent] = upstream.request_ids[-1]
    assert (sent == given) is kept
    assert requests_logged(lines)[-1]["request_id"] == sent


async def test_an_error_page_s_line_carries_the_request_id(
    store: Store, okta: FakeOkta, lines: list[Entry]
) -> None:
    closed = EchoUpstream()  # never started: nothing listens on its port
    closed.url = f"http://127.0.0.1:{free_port()}"
    app = gateway_with(closed, store)
    async with running(app), browser(app) as client:
        await sign_in(client, okta, "00ualice")
        response = await client.get("/docs/page")
    assert response.status_code == 502
    reference = re.search(r'class="ref">([0-9a-f]+)<', response.text)
    assert reference is not None
    [failure] = [e for e in lines if e.get("ref") == reference.group(1)]
    request = requests_logged(lines)[-1]
    assert failure["request_id"] == request["request_id"]
    assert (failure["error"], failure["status"]) == ("upstream_error", 502)
    assert (request["decision"], request["status"]) == ("allow", 502)


async def test_each_sign_in_step_leaves_a_line(
    client: httpx.AsyncClient, okta: FakeOkta, lines: list[Entry]
) -> None:
    await sign_in(client, okta, "00ualice")
    steps = [e["step"] for e in lines if "step" in e]
    assert steps == ["discovery", "authorize", "identity", "session", "decision"]
    by_request = {e["request_id"] for e in lines if e.get("step") in ("identity", "session")}
    callback = [e for e in requests_logged(lines) if e["path"] == "/cdn-cgi/access/callback"]
    assert by_request == {callback[0]["request_id"]}
    # the secrets of the sign-in are nowhere in it
    text = json.dumps(lines)
    assert "s3cret" not in text and "code=" not in text and "eyJ" not in text


# --- the access log of the admin API --------------------------------------------------------

ADMIN = "logs-admin-token-0123456789"


async def test_the_api_access_log_has_sign_ins_and_refusals_but_no_allowed_requests(
    store: Store, upstream: HeaderEcho, okta: FakeOkta
) -> None:
    async with running(gateway_with(upstream, store, admin_token=ADMIN)) as app:
        async with (
            browser(app) as alice,
            browser(app) as bob,
            browser(app) as someone,
            browser(app) as admin,
        ):
            await sign_in(alice, okta, "00ualice")
            assert (await alice.get("/docs")).status_code == 200  # allowed: not recorded
            denied = await sign_in(bob, okta, "00ubob")
            assert denied.status_code == 403
            assert (await bob.get("/docs")).status_code == 403
            authorize = await start_sign_in(someone, "/docs")
            await someone.get(okta.authorize_error(authorize, "access_denied", "Not assigned."))
            answer = await admin.get(
                "/api/logs/access", headers={"Authorization": f"Bearer {ADMIN}"}
            )
    assert answer.status_code == 200
    entries = answer.json()["result"]
    summary = [(e["kind"], e["decision"], e["email"], e["policy"]) for e in entries]
    assert summary == [  # newest first
        ("sign_in", "failure", "", ""),
        ("access", "deny", "bob@example.com", "(no policy matched)"),
        ("sign_in", "deny", "bob@example.com", "(no policy matched)"),
        ("sign_in", "allow", "alice@example.com", "Engineering"),
    ]
    failure, request, bob_sign_in, _ = entries
    assert "Not assigned." in failure["error"]
    assert request["rule"] == bob_sign_in["rule"]
    assert request["rule"] == "Engineering: include: none matched (in Okta group 'Engineering')"
    assert all(e["app"] == "team-app" and e["reference"] for e in entries)


async def test_a_refusal_repeated_by_one_browser_is_recorded_once_a_minute(
    store: Store, upstream: HeaderEcho, okta: FakeOkta
) -> None:
    async with running(gateway_with(upstream, store, admin_token=ADMIN)) as app:
        async with browser(app) as bob, browser(app) as admin:
            await sign_in(bob, okta, "00ubob")
            for _ in range(20):  # a page retrying: it must not flush the sign-ins out
                assert (await bob.get("/docs")).status_code == 403
            answer = await admin.get(
                "/api/logs/access", headers={"Authorization": f"Bearer {ADMIN}"}
            )
    kinds = [(e["kind"], e["decision"]) for e in answer.json()["result"]]
    assert kinds == [("access", "deny"), ("sign_in", "deny")]
