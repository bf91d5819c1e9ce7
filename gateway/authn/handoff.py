"""The cross-host hand-off: the team host passes a sign-in on to an app host (SPEC 4).

The team host cannot set a cookie for another host. When a browser with a global session is
allowed into an app on its own host, the team host issues a one-time token and sends the browser
to that host's `/cdn-cgi/access/authorized`, which redeems it into an app session. The token
lives at most 60 s (the store's TTL), is taken on its first use, and is redeemed only on the
host it was issued for and only by the browser that started the sign-in there: the login link
carried the hash of that browser's `CF_AppSession` binding, and the redeeming request presents
the hash of the binding it carries. The app session never outlives the global session it came
from.

Pure of the web framework: the views pass in the store, the session manager and what they read
from the request, and set the cookies and redirects from what comes back.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass

from gateway.authz.policy import RequestFacts, app_session_duration
from gateway.config import App
from gateway.errors import SignInError
from gateway.state.sessions import Session, SessionManager
from gateway.state.store import Store

AUTHORIZED_TOKEN_TTL = 60.0  # SPEC 4: the one-time token lives at most 60 s
_KEY = "authorized:"


@dataclass(frozen=True, slots=True)
class Handoff:
    """What a one-time token carries from the team host to one app host."""

    session_id: str  # the global session
    app_id: str
    host: str  # the app host it may be redeemed on
    app_binding: str  # the hash of the browser's CF_AppSession binding, from the login link


@dataclass(frozen=True, slots=True)
class AppSignIn:
    """The app session a redeemed hand-off gave, and what its cookie needs."""

    app: App
    session: Session
    cookie_value: str
    duration: float


async def issue(store: Store, handoff: Handoff) -> str:
    """A new one-time token for `handoff`."""
    token = secrets.token_urlsafe(32)
    record = {
        "session_id": handoff.session_id,
        "app_id": handoff.app_id,
        "app_binding": handoff.app_binding,
        "host": handoff.host,
    }
    await store.set(_KEY + token, json.dumps(record).encode(), ttl=AUTHORIZED_TOKEN_TTL)
    return token


async def redeem(store: Store, token: str, host: str, binding_hash: str) -> Handoff:
    """The hand-off `token` carries, presented on `host` by a browser whose CF_AppSession
    binding hashes to `binding_hash` ("" when it sent none).

    The token is taken from the store first, so it is used once even when refused. Raises
    `SignInError` when it is unknown, expired or used, or was issued for another host or
    another browser.
    """
    raw = await store.take(_KEY + token) if token else None
    if raw is None:
        raise SignInError("This sign-in link has expired or was already used.", step="authorized")
    record = json.loads(raw)
    handoff = Handoff(
        session_id=record["session_id"],
        app_id=record["app_id"],
        host=record["host"],
        app_binding=record["app_binding"],
    )
    if (
        handoff.host != host
        or not (handoff.app_binding and binding_hash)
        or not hmac.compare_digest(handoff.app_binding, binding_hash)
    ):
        raise SignInError(
            "This sign-in was started in another browser (or its cookie was lost).",
            step="authorized",
            hint="cookies must be enabled for this application's domain",
        )
    return handoff


async def open_app_session(
    sessions: SessionManager, handoff: Handoff, app: App | None, facts: RequestFacts
) -> AppSignIn:
    """The app session for a redeemed `handoff` (`app`: the app it names, None if that no longer
    exists), as long as the app's policy says. Raises `SignInError` when the app or the global
    session is gone, or the global session ends while the app session is being made."""
    ended = SignInError("Your sign-in ended before it reached the application.", step="authorized")
    global_session = await sessions.by_id(handoff.session_id)
    if app is None or global_session is None:
        raise ended
    identity = global_session.identity
    duration = app_session_duration(app, identity, facts)
    app_session, cookie_value = await sessions.create(
        identity, kind="app", duration=duration, app_id=app.id
    )
    if await sessions.by_id(global_session.id) is None:
        # Signed out or deprovisioned while the app session was being made, possibly before it
        # reached the user's session index: it must not outlive the sign-in it came from.
        await sessions.end(app_session)
        raise ended
    return AppSignIn(app, app_session, cookie_value, duration)
