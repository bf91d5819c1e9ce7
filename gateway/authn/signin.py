"""The sign-in flow between the login URL and the callback, independent of the web layer.

`start` picks a fresh `state`, `nonce` and PKCE verifier from the IdP's OIDC client and keeps
them in the store under the state for 10 minutes, together with the browser binding (the random
value inside the `CF_Session` cookie), the app and where to return. `finish` takes that record
out of the store exactly once, checks the browser binding, and turns the IdP's answer into an
`Identity`. A state that is missing, replayed, expired or from another browser fails closed.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Literal

from gateway.authn.oidc import TOO_MANY_GROUPS, OIDCClient, SignInResult, too_many_groups_error
from gateway.errors import IdPError, SignInError
from gateway.identity import Identity, user_uuid_for
from gateway.state.store import Clock, Store

log = logging.getLogger("gateway.signin")

LOGIN_STATE_TTL = 600.0  # SPEC 4: state and nonce expire in 10 minutes
_STATE_KEY = "login_state:"

Purpose = Literal["login", "test"]


@dataclass(frozen=True, slots=True)
class LoginState:
    binding: str  # the browser binding from CF_Session
    idp_id: str
    nonce: str
    code_verifier: str
    purpose: Purpose
    app_id: str = ""
    app_host: str = ""
    redirect_url: str = "/"
    app_binding: str = ""  # hash of the app host's CF_AppSession binding (multi-host flow)
    groups_scope: bool = True


@dataclass(frozen=True, slots=True)
class SignedIn:
    identity: Identity
    result: SignInResult
    state: LoginState


async def start(
    store: Store, client: OIDCClient, state: LoginState, *, prompt: str | None = None
) -> str:
    """Begin a sign-in; returns the IdP authorize URL. `state`'s nonce/verifier are filled in."""
    request = await client.authorization_request(
        with_groups_scope=state.groups_scope, prompt=prompt
    )
    record = {**asdict(state), "nonce": request.nonce, "code_verifier": request.code_verifier}
    await store.set(_STATE_KEY + request.state, json.dumps(record).encode(), ttl=LOGIN_STATE_TTL)
    log.info(
        "sign-in: to the identity provider",
        extra={
            "step": "authorize",
            "idp": state.idp_id,
            "app": state.app_id,
            "purpose": state.purpose,
            "groups_scope": state.groups_scope,
        },
    )
    return request.url


async def take_state(store: Store, state: str | None, binding: str | None) -> LoginState:
    """The login state for a callback, consumed (single-use) and checked against the browser."""
    if not state:
        raise SignInError("The sign-in answer has no state parameter.", step="state")
    raw = await store.take(_STATE_KEY + state)
    if raw is None:
        raise SignInError(
            "This sign-in link has expired or was already used. Start again from the application.",
            step="state",
        )
    record = LoginState(**json.loads(raw))
    if not binding or not hmac.compare_digest(record.binding, binding):
        raise SignInError(
            "This sign-in was started in another browser (or its cookie was lost).",
            step="state",
            hint="cookies must be enabled for the gateway's domain",
        )
    return record


def okta_redirect_error(error: str, description: str) -> IdPError:
    """The error Okta sent back on the redirect URI (OKTA.md: /authorize errors)."""
    if error == "server_error" and description.startswith(TOO_MANY_GROUPS):
        return too_many_groups_error("authorize")
    status = 403 if error == "access_denied" else 400 if error.startswith("invalid") else 502
    hint = {
        "access_denied": "is the user assigned to the Okta application?",
        "invalid_scope": "the scopes the Okta application allows",
        "unauthorized_client": "the grant types enabled on the Okta application",
    }.get(error, "")
    reason = description or error
    return IdPError(
        f"The identity provider refused the sign-in: {reason}",
        error=error,
        status=status,
        step="authorize",
        hint=hint,
    )


async def finish(
    client: OIDCClient,
    idp_id: str,
    idp_type: str,
    state: LoginState,
    code: str,
    client_ip: str,
    clock: Clock = time.time,
) -> SignedIn:
    """Exchange the code and build the identity."""
    result = await client.sign_in(code=code, nonce=state.nonce, code_verifier=state.code_verifier)
    identity = Identity(
        id=secrets.token_urlsafe(16),
        user_uuid=user_uuid_for(idp_id, result.sub),
        sub=result.sub,
        name=result.name,
        email=result.email,
        groups=result.groups,
        idp_id=idp_id,
        idp_type=idp_type,
        iat=int(clock()),
        ip=client_ip,
        amr=result.amr,
        oidc_fields=result.oidc_fields,
    )
    return SignedIn(identity, result, state)
