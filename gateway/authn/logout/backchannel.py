"""OpenID Connect Back-Channel Logout 1.0 (SPEC 8): the Relying Party's side.

An IdP with `backchannel_logout = true` POSTs a form with `logout_token` to
`{public_url}/cdn-cgi/access/backchannel-logout/<idp id>`. `validate` checks it as section 2.6 says:
a signed JWT (the provider's algorithms and key cache, as for its ID tokens; `typ`, when present,
`logout+jwt`), `iss` the provider's issuer, `aud` containing the client ID, `iat` at most 5 minutes
old, `exp` (when present) not passed, the back-channel logout event as an object, a `sub` or a `sid`
or both, no `nonce` (so an ID token cannot pass for a logout token), and a `jti` no instance has
spent (it is spent once the sessions are ended). `end_sessions` then ends the sessions made from
that IdP session (`sid`: kept from the ID token with each session,
`SessionManager.revoke_idp_session`) or, with only a `sub`, every session of that user from this IdP
(section 2.7). Every refusal is a 400 `invalid_request` (section 2.8).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.authn.logout import TokenUse, audiences, check_times, token_id, unspent
from gateway.authn.providers.id_token import CLOCK_LEEWAY
from gateway.authn.providers.oidc import OIDCProvider
from gateway.authn.providers.signed_jwt import SignedJWTVerifier
from gateway.errors import LogoutRequestError
from gateway.identity import user_uuid_for
from gateway.state.sessions import SessionManager
from gateway.state.store import Store

log = logging.getLogger("gateway.logout")

PATH = "/cdn-cgi/access/backchannel-logout"
MAX_BODY = 16 * 1024  # a form holding one JWT
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_AGE = 300.0  # SPEC 8: iat no older than 5 minutes
_TYPES = ("logout+jwt", "application/logout+jwt")  # section 2.4: explicit typing, RFC 8725 3.11


@dataclass(frozen=True, slots=True)
class LogoutToken:
    """What a valid logout token asks for: the end of IdP session `sid` and/or of user `sub`;
    `use` is its `jti`, to be spent once that is done."""

    sub: str
    sid: str
    use: TokenUse


def refuse(description: str) -> LogoutRequestError:
    return LogoutRequestError(description, error="invalid_request", status=400)


async def validate(provider: OIDCProvider, store: Store, token: str, now: float) -> LogoutToken:
    """Back-Channel Logout 1.0 section 2.6; raises a 400 `LogoutRequestError` unless every
    check holds and the `jti` is unspent on every instance."""
    verifier = SignedJWTVerifier(
        what="logout token",
        algorithms=provider.algorithms,
        keys=provider.keys,
        fail=lambda description, _: refuse(description),
        who=provider.who,
    )
    header, claims = await verifier.verified(token)
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in _TYPES):
        raise refuse("The logout token's typ is not logout+jwt")
    # Step 3: iss, aud and iat as for an ID token.
    if claims.get("iss") != provider.issuer:
        raise refuse("The logout token's issuer is not this identity provider")
    if provider.client_id not in audiences(claims):
        raise refuse("The logout token's audience does not include this client ID")
    until = check_times(claims, now, refuse, require_exp=False)
    iat = float(claims["iat"])  # check_times made sure it is a number
    if now - iat > MAX_AGE + CLOCK_LEEWAY:
        raise refuse("The logout token is too old (iat more than 5 minutes ago)")
    # Step 4: a sub, a sid, or both.
    sub, sid = claims.get("sub"), claims.get("sid")
    if sub is None and sid is None:
        raise refuse("The logout token has neither sub nor sid")
    if not _optional_text(sub) or not _optional_text(sid):
        raise refuse("The logout token's sub and sid must be non-empty strings")
    # Step 5: the event, as a JSON object.
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(LOGOUT_EVENT), dict):
        raise refuse("The logout token lacks the back-channel logout event")
    # Step 6: no nonce, which tells a logout token from an ID token.
    if "nonce" in claims:
        raise refuse("The logout token carries a nonce, which a logout token must not")
    # Step 7: the jti, once.
    jti = token_id(claims, refuse)
    replayed = refuse("The logout token was already used (jti replayed)")
    use = await unspent(store, "backchannel", provider.idp.id, jti, until - now, replayed)
    return LogoutToken(sub=sub or "", sid=sid or "", use=use)


def _optional_text(value: object) -> bool:
    return value is None or (isinstance(value, str) and value != "")


async def end_sessions(idp_id: str, sessions: SessionManager, token: LogoutToken) -> int:
    """Section 2.7: end the sessions of the IdP session `sid` (of the user `sub`, when given
    too) or, without a sid, every session of the user `sub` from this IdP; returns how many
    were live (none is still a success)."""
    if token.sid:
        # Section 2.7: with a sub as well, only that user's sessions of that IdP session.
        revoked = await sessions.revoke_idp_session(idp_id, token.sid, sub=token.sub)
    else:
        revoked = await sessions.revoke_user(user_uuid_for(idp_id, token.sub))
    log.info(
        "back-channel logout idp=%s by=%s sessions_revoked=%d",
        idp_id,
        "sid" if token.sid else "sub",
        revoked,
        extra={"step": "backchannel_logout", "idp": idp_id, "sessions_revoked": revoked},
    )
    return revoked
