"""A cookie value that is not a valid, current session means "no session" on every route that
reads a cookie: a redirect to sign in, a 401 or a page, never a 5xx (a truncated cookie, a
signature part that is no base64, or anything a client makes up)."""

from __future__ import annotations

import asyncio

import httpx
import hypothesis
import pytest
from fake_okta import FakeOkta
from harness import IDP_ID, TEAM, WIKI, EchoUpstream, session_cookie, sign_in
from hypothesis import strategies as st
from starlette.types import Message

from gateway.app import Gateway
from gateway.config import app_aud

# (cookie, base URL, path, status): each route that reads that cookie, and what it answers a
# browser that holds no session there (the cookie is unreadable, so it holds none).
_LOGIN = f"/cdn-cgi/access/login/wiki.example.com?kid={app_aud('wiki')}&redirect_url=%2F"
READERS = [
    ("CF_Authorization", WIKI, "/page", 302),  # to sign in; the upstream never sees it
    ("CF_Authorization", TEAM, "/docs/page", 302),
    ("CF_Authorization", TEAM, "/cdn-cgi/access/get-identity", 401),
    ("CF_Authorization", WIKI, "/cdn-cgi/access/get-identity", 401),
    ("CF_Authorization", TEAM, "/cdn-cgi/access/logout", 200),  # the signed-out page
    ("CF_Authorization", TEAM, _LOGIN, 302),  # no session to reuse: on to the IdP
    ("CF_Session", TEAM, "/cdn-cgi/access/callback?code=abc&state=xyz", 400),  # link expired
    ("CF_Session", TEAM, f"/test-idp?idp={IDP_ID}", 302),  # a test sign-in starts
    ("CF_AppSession", WIKI, "/cdn-cgi/access/authorized?token=abc", 400),
]

# Cookie values a client can send: visible ASCII without the cookie header's separators.
_COOKIE_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=';,"\\'),
    max_size=200,
)


async def _answer(gateway: Gateway, name: str, base: str, path: str, value: str) -> int:
    """The status of one GET carrying `name=value`, sent straight to the ASGI app: not through
    httpx, whose sent cookies the log check (`log_check.py`) takes for secrets, and a made-up
    value such as `logger` would then be "found" in every log line."""
    target, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": target,
        "raw_path": target.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", base.removeprefix("https://").encode()),
            (b"accept", b"text/html"),
            (b"cookie", f"{name}={value}".encode()),
        ],
        "client": ("203.0.113.7", 50000),
        "server": ("127.0.0.1", 443),
    }
    sent: list[Message] = []
    requested = False
    done = asyncio.Event()

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # the client stays until the whole answer is sent
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await gateway(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"Traceback" not in body
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))


@pytest.mark.parametrize(("name", "base", "path", "status"), READERS)
@pytest.mark.parametrize("value", ["a.b", "a.", ".", "a.b.c", "%ff.%00", "x" * 4000 + ".y"])
async def test_a_malformed_cookie_is_no_session(
    gateway: Gateway,
    upstream: EchoUpstream,
    name: str,
    base: str,
    path: str,
    status: int,
    value: str,
) -> None:
    assert await _answer(gateway, name, base, path, value) == status
    assert upstream.requests == []


async def test_every_truncation_of_a_real_session_cookie_is_no_session(
    gateway: Gateway, client: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    cookie = session_cookie(await sign_in(client, okta, "00ualice"))
    assert cookie is not None
    for name, base, path, status in READERS:
        for length in range(len(cookie)):
            answer = await _answer(gateway, name, base, path, cookie[:length])
            assert answer == status, (name, path, cookie[:length], answer)
    assert upstream.requests == []
    # the whole cookie is still a session: the upstream is reached with it
    assert await _answer(gateway, "CF_Authorization", TEAM, "/docs/page", cookie) == 200
    assert len(upstream.requests) == 1


@hypothesis.settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),  # the gateway is shared: no state
)
@hypothesis.given(value=_COOKIE_TEXT, reader=st.sampled_from(READERS))
async def test_any_cookie_a_client_makes_up_is_no_session(
    gateway: Gateway, upstream: EchoUpstream, value: str, reader: tuple[str, str, str, int]
) -> None:
    name, base, path, status = reader
    assert await _answer(gateway, name, base, path, value) == status
    assert upstream.requests == []
