"""The cross-host hand-off (`authn/handoff.py`): the one-time token and the app session it gives.

Plain functions over a real store (memory on the fake clock, and Redis), no web framework.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from clock import FakeClock
from harness import settings_doc

from gateway.authn import handoff
from gateway.authz.policy import RequestFacts
from gateway.config import App, parse_settings
from gateway.errors import SignInError
from gateway.identity import Identity
from gateway.state.sessions import CookieSigner, Session, SessionManager
from gateway.state.store import Store
from gateway.state.store.memory import MemoryStore

WIKI = "wiki.example.com"
BINDING = hashlib.sha256(b"the browser's CF_AppSession binding").hexdigest()
OTHER_BINDING = hashlib.sha256(b"another browser's binding").hexdigest()
EXPIRED = "expired or was already used"
ANOTHER_BROWSER = "started in another browser"


def alice(groups: tuple[str, ...] = ("Engineering",)) -> Identity:
    return Identity(
        id="nonce-alice",
        user_uuid="uuid-alice",
        sub="00ualice",
        name="Alice",
        email="alice@example.com",
        groups=groups,
        idp_id="okta-test",
        idp_type="okta",
        iat=1_764_460_800,
    )


def manager(store: Store, clock: FakeClock) -> SessionManager:
    # The memory store runs on the fake clock; Redis expires on real time, so its manager does too.
    use_clock = clock if isinstance(store, MemoryStore) else time.time
    return SessionManager(store, CookieSigner(("k" * 32,), "gateway.session"), use_clock)


def wiki(**policy: Any) -> App:
    """The harness's wiki app (1h sessions, Engineering allowed), its policy amended."""
    doc = settings_doc("http://127.0.0.1:9")
    doc["apps"][1]["policies"][0].update(policy)
    return next(app for app in parse_settings(doc).apps if app.id == "wiki")


def to_wiki(session_id: str = "global-session-id", app_binding: str = BINDING) -> handoff.Handoff:
    return handoff.Handoff(session_id=session_id, app_id="wiki", host=WIKI, app_binding=app_binding)


# --- the one-time token ---------------------------------------------------------------------


async def test_a_token_is_redeemed_once_on_its_host_by_its_browser(store: Store) -> None:
    token = await handoff.issue(store, to_wiki())
    assert await handoff.redeem(store, token, WIKI, BINDING) == to_wiki()
    with pytest.raises(SignInError, match=EXPIRED):
        await handoff.redeem(store, token, WIKI, BINDING)


async def test_tokens_are_unguessable_and_distinct(store: Store) -> None:
    tokens = {await handoff.issue(store, to_wiki()) for _ in range(20)}
    assert len(tokens) == 20
    assert all(len(token) >= 43 for token in tokens)  # 32 random bytes


@pytest.mark.parametrize("token", ["", "no-such-token", "authorized:"])
async def test_an_unknown_token_is_refused(store: Store, token: str) -> None:
    await handoff.issue(store, to_wiki())
    with pytest.raises(SignInError, match=EXPIRED) as refused:
        await handoff.redeem(store, token, WIKI, BINDING)
    assert refused.value.status == 400 and refused.value.step == "authorized"


async def test_a_token_expires_after_60_seconds(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    in_time = await handoff.issue(store, to_wiki())
    too_late = await handoff.issue(store, to_wiki())
    clock.advance(59)
    assert await handoff.redeem(store, in_time, WIKI, BINDING) == to_wiki()
    clock.advance(2)
    with pytest.raises(SignInError, match=EXPIRED):
        await handoff.redeem(store, too_late, WIKI, BINDING)


@pytest.mark.parametrize(
    ("host", "binding"),
    [
        ("grafana.example.com", BINDING),  # carried to another app's host
        ("wiki.example.com.evil.example", BINDING),
        (WIKI, OTHER_BINDING),  # another browser
        (WIKI, ""),  # a browser without the binding cookie
        (WIKI, BINDING.upper()),
    ],
)
async def test_a_token_on_another_host_or_from_another_browser_is_refused_and_spent(
    store: Store, host: str, binding: str
) -> None:
    token = await handoff.issue(store, to_wiki())
    with pytest.raises(SignInError, match=ANOTHER_BROWSER) as refused:
        await handoff.redeem(store, token, host, binding)
    assert refused.value.hint  # says what to check
    # Refused, it is spent all the same: no second try with other values.
    with pytest.raises(SignInError, match=EXPIRED):
        await handoff.redeem(store, token, WIKI, BINDING)


async def test_a_sign_in_started_without_a_binding_is_never_redeemed(store: Store) -> None:
    token = await handoff.issue(store, to_wiki(app_binding=""))
    with pytest.raises(SignInError, match=ANOTHER_BROWSER):
        await handoff.redeem(store, token, WIKI, "")


# --- the app session ------------------------------------------------------------------------


async def global_session(sessions: SessionManager, identity: Identity) -> Session:
    session, _ = await sessions.create(identity, kind="global", duration=86400)
    return session


@pytest.mark.parametrize(
    ("policy", "identity", "duration"),
    [
        ({}, alice(), 3600),  # the app's 1h
        ({"session_duration": "30m"}, alice(), 1800),  # the deciding policy's
        ({"session_duration": "30m"}, alice(groups=("Sales",)), 3600),  # it did not decide
    ],
)
async def test_the_app_session_lasts_as_the_deciding_policy_says(
    store: Store, clock: FakeClock, policy: dict[str, str], identity: Identity, duration: float
) -> None:
    sessions = manager(store, clock)
    signed_in = await global_session(sessions, identity)
    app = wiki(**policy)
    opened = await handoff.open_app_session(sessions, to_wiki(signed_in.id), app, RequestFacts())
    assert opened.app is app and opened.duration == duration
    assert opened.session.kind == "app" and opened.session.app_id == "wiki"
    assert opened.session.identity == identity
    assert opened.session.expires - opened.session.created == pytest.approx(duration)
    assert await sessions.load(opened.cookie_value) == opened.session


async def test_no_app_session_once_the_global_session_or_the_app_is_gone(
    store: Store, clock: FakeClock
) -> None:
    sessions = manager(store, clock)
    with pytest.raises(SignInError, match="ended before it reached"):
        await handoff.open_app_session(sessions, to_wiki("gone"), wiki(), RequestFacts())
    signed_in = await global_session(sessions, alice())
    with pytest.raises(SignInError, match="ended before it reached"):
        await handoff.open_app_session(sessions, to_wiki(signed_in.id), None, RequestFacts())
    assert [s.kind for s in await sessions.active_sessions("uuid-alice")] == ["global"]


async def test_a_sign_out_while_the_app_session_is_made_leaves_none(
    store: Store, clock: FakeClock
) -> None:
    made: list[Session] = []

    class SignedOutMeanwhile(SessionManager):
        async def create(
            self, identity: Identity, *, kind: Any, duration: float, app_id: str = ""
        ) -> tuple[Session, str]:
            await self.revoke_user(identity.user_uuid)  # the revocation runs first ...
            session, cookie_value = await super().create(
                identity, kind=kind, duration=duration, app_id=app_id
            )
            made.append(session)  # ... and misses the session made after it
            return session, cookie_value

    plain = manager(store, clock)
    signed_in = await global_session(plain, alice())
    sessions = SignedOutMeanwhile(plain.store, plain.signer, plain.clock)
    with pytest.raises(SignInError, match="ended before it reached"):
        await handoff.open_app_session(sessions, to_wiki(signed_in.id), wiki(), RequestFacts())
    assert await sessions.by_id(made[0].id) is None
