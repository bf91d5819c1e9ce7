"""The one OIDC provider every contender of the benchmark signs in through, and the scripted
browser that signs in.

The provider is the demo's development IdP (`gateway/demo/devidp.py`), served from a thread of the
bench process on loopback, with one client whose redirect URIs are those of every contender (the
gateway's callback, mod_auth_openidc's redirect URI). `sign_in` opens a protected URL in a fresh
cookie jar, follows the redirects to the IdP, posts its login form as a user, follows the
redirects back and returns the session cookie that the contender set: the cookie wrk then sends.
Nothing is measured while the IdP is used, and nothing is signed in while wrk runs.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import uvicorn

from gateway.demo.devidp import DevUser, create_dev_idp

# The dev IdP's login form is parsed by the same helper as the demo's tests use.
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))
from demo_process import LoginForm

CLIENT_ID = "0oabench"
UPSTREAM_BODY = "hello from upstream\n"  # what every upstream kind answers


@dataclass(frozen=True, slots=True)
class DevIdP:
    """A running development IdP: where it is and what its client and users are."""

    issuer: str
    client_id: str
    client_secret: str
    api_token: str
    member: DevUser  # in the Engineering group, which every contender's policy allows
    outsider: DevUser  # signed in but outside it: every contender must refuse them


@contextlib.contextmanager
def running_dev_idp(port: int, redirect_uris: Sequence[str]) -> Iterator[DevIdP]:
    """The development IdP on 127.0.0.1:`port` (issuer http://localhost:`port`, as in `gateway
    demo`), knowing `redirect_uris` for its one client, until the block ends."""
    idp = DevIdP(
        issuer=f"http://localhost:{port}",
        client_id=CLIENT_ID,
        client_secret=secrets.token_urlsafe(24),
        api_token=secrets.token_urlsafe(24),
        member=DevUser.generate("alice@example.com", "Alice Example", ("Engineering", "Everyone")),
        outsider=DevUser.generate("bob@example.com", "Bob Example", ("Sales", "Everyone")),
    )
    app = create_dev_idp(
        issuer=idp.issuer,
        client_id=idp.client_id,
        client_secret=idp.client_secret,
        redirect_uris=redirect_uris,
        users=[idp.member, idp.outsider],
        api_token=idp.api_token,
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dev-idp", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SystemExit(f"the development IdP did not start on port {port}")
            time.sleep(0.05)
        yield idp
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def sign_in(url: str, user: DevUser) -> httpx.Response:
    """Open `url` in a fresh browser, sign in at the development IdP as `user` and follow the
    redirects to the end; the last answer, which carries every earlier one in `history`."""
    with httpx.Client(headers={"Accept": "text/html"}, follow_redirects=True, timeout=10) as web:
        page = web.get(url)
        form = LoginForm(page.text)
        if page.status_code != 200 or not form.action:
            raise SystemExit(f"{url}: no login form at the end of the redirects ({page.url})")
        fields = {**form.fields, "username": user.login, "password": user.password}
        return web.post(urljoin(str(page.url), form.action), data=fields)


def session_cookie(url: str, user: DevUser, cookie: str) -> str:
    """Sign in at `url` as `user`, who is allowed there, and return the value of the session
    cookie `cookie` that `url`'s host set; fails the run unless the sign-in ended at the upstream.
    """
    done = sign_in(url, user)
    if done.status_code != 200 or done.text != UPSTREAM_BODY:
        raise SystemExit(f"{url}: signing in as {user.email} ended with {done.status_code}")
    host = httpx.URL(url).host
    for step in done.history:
        if step.url.host == host and cookie in step.cookies:
            return step.cookies[cookie]
    raise SystemExit(f"{url}: signing in as {user.email} set no {cookie} cookie on {host}")


def check_refused(url: str, user: DevUser) -> None:
    """Sign in at `url` as `user`, whom its policy refuses; fails the run if the upstream
    answers."""
    done = sign_in(url, user)
    if done.status_code < 400 or UPSTREAM_BODY in done.text:
        raise SystemExit(f"{url}: {user.email} is outside the policy but got {done.status_code}")


def check_gate(url: str, headers: dict[str, str], cookie: str, value: str) -> None:
    """Before measuring: the session cookie gets the upstream's answer at `url`, and the same
    request without it does not."""
    with httpx.Client(headers=headers, timeout=10) as client:
        allowed = client.get(url, headers={"Cookie": f"{cookie}={value}"})
        refused = client.get(url)
    if allowed.status_code != 200 or allowed.text != UPSTREAM_BODY:
        raise SystemExit(f"{url}: the signed-in request got {allowed.status_code}")
    if refused.is_success or UPSTREAM_BODY in refused.text:
        raise SystemExit(f"{url}: a request without {cookie} got {refused.status_code}")
