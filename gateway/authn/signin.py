"""The sign-in flow between the login URL and the callback, independent of the web layer.

`start` asks the IdP's provider where to send the browser and keeps what the provider needs back
(`SignInRequest.pending`) in the store under the state for 10 minutes, together with the browser
binding (the random value inside the `CF_Session` cookie), the app and where to return.
`take_state` takes that record out of the store exactly once and checks the browser binding;
`finish` hands the IdP's answer to the provider and turns what it learned into an `Identity`, or
keeps a restart the provider asked for (Okta's too-many-groups restart) the same way as `start`.
A state that is missing, replayed, expired or from another browser fails closed.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from gateway.authn.providers import Provider, SignInRequest, SignInResult
from gateway.errors import SignInError
from gateway.identity import Identity, user_uuid_for
from gateway.state.store import Clock, Store

log = logging.getLogger("gateway.signin")

LOGIN_STATE_TTL = 600.0  # SPEC 4: state and nonce expire in 10 minutes
_STATE_KEY = "login_state:"

# "console": a sign-in to the operator console (gateway/console/signin.py), no app
Purpose = Literal["login", "test", "console"]


@dataclass(frozen=True, slots=True)
class LoginState:
    binding: str  # the browser binding from CF_Session
    idp_id: str
    purpose: Purpose
    app_id: str = ""
    app_host: str = ""
    redirect_url: str = "/"
    app_binding: str = ""  # hash of the app host's CF_AppSession binding (multi-host flow)
    pending: Mapping[str, str] = field(default_factory=dict)  # the provider's, set by `start`


@dataclass(frozen=True, slots=True)
class SignedIn:
    identity: Identity
    result: SignInResult


async def start(store: Store, provider: Provider, state: LoginState) -> str:
    """Begin a sign-in; returns the URL to send the browser to (the IdP)."""
    return await _keep(store, state, await provider.begin())


async def _keep(store: Store, state: LoginState, request: SignInRequest) -> str:
    record = {**asdict(state), "pending": dict(request.pending)}
    await store.set(_STATE_KEY + request.state, json.dumps(record).encode(), ttl=LOGIN_STATE_TTL)
    log.info(
        "sign-in: to the identity provider",
        extra={
            "step": "authorize",
            "idp": state.idp_id,
            "app": state.app_id,
            "purpose": state.purpose,
        },
    )
    return request.url


async def take_state(store: Store, state: str | None, binding: str | None) -> LoginState:
    """The login state for a callback, consumed (single-use) and checked against the browser."""
    if not state:
        raise SignInError("The sign-in answer has no state parameter.", step="state")
    raw = await store.take(_STATE_KEY + state)
    try:
        record = None if raw is None else LoginState(**json.loads(raw))
    except (TypeError, ValueError):  # kept by a gateway of another version (rolling upgrade)
        record = None
    if record is None:
        raise SignInError(
            "This sign-in link has expired or was already used. Start again from the application.",
            step="state",
        )
    if not binding or not hmac.compare_digest(record.binding, binding):
        raise SignInError(
            "This sign-in was started in another browser (or its cookie was lost).",
            step="state",
            hint="cookies must be enabled for the gateway's domain",
        )
    return record


async def finish(
    store: Store,
    provider: Provider,
    state: LoginState,
    answer: Mapping[str, str],
    client_ip: str,
    clock: Clock = time.time,
) -> SignedIn | str:
    """The sign-in from the IdP's answer (the callback's parameters); or, when the provider asks
    to send the browser to the IdP once more, that URL, its state kept as `start` keeps it."""
    outcome = await provider.finish(answer, state.pending)
    if isinstance(outcome, SignInRequest):
        return await _keep(store, state, outcome)
    idp = provider.idp
    identity = Identity(
        id=secrets.token_urlsafe(16),
        user_uuid=user_uuid_for(idp.id, outcome.sub),
        sub=outcome.sub,
        name=outcome.name,
        email=outcome.email,
        groups=outcome.groups,
        idp_id=idp.id,
        idp_type=idp.type,
        iat=int(clock()),
        ip=client_ip,
        amr=outcome.amr,
        oidc_fields=outcome.oidc_fields,
    )
    return SignedIn(identity, outcome)
