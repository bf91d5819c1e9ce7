"""Okta Universal Logout (SPEC 8): the receiving end of draft-parecki-oauth-global-token-revocation
as Okta sends it.

Okta POSTs `{"sub_id": ...}` to `{public_url}/cdn-cgi/access/global-token-revocation/<idp id>` with
`Authorization: Bearer <JWT>`. `authenticate` checks that JWT: signed (RS256 only) by a key of the
org authorization server (`{okta_account}/oauth2/v1/keys`, the provider's `org_keys` cache), `iss`
the org, `aud` this endpoint's URL, unexpired, issued, and its `jti` not spent on any instance (it
is spent once the sessions are ended). `read_subject` reads the body's Subject Identifier (RFC 9493:
the `email` and `iss_sub` formats); `revoke` finds that person among the people of this IdP
(sign-ins and SCIM, `Registry.people_of`) and ends every one of their sessions. A bad token is a
401, a bad body a 400, an unknown person a 404 (the draft's answers); nothing changes before all of
it holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from gateway.authn.logout import TokenUse, audiences, check_times, token_id, unspent
from gateway.authn.providers.okta import OKTA_ALGORITHMS, OktaProvider
from gateway.authn.providers.signed_jwt import SignedJWTVerifier
from gateway.errors import LogoutRequestError
from gateway.state.registry import Registry
from gateway.state.sessions import SessionManager
from gateway.state.store import Store

log = logging.getLogger("gateway.logout")

PATH = "/cdn-cgi/access/global-token-revocation"
MAX_BODY = 4096  # a Subject Identifier is a few hundred bytes
_MAX_NAME = 320  # RFC 5321's longest address; also the bound for an Okta user id


def endpoint_url(public_url: str, idp_id: str) -> str:
    """The URL Okta calls, and the `aud` its tokens must carry."""
    return f"{public_url}{PATH}/{idp_id}"


@dataclass(frozen=True, slots=True)
class Subject:
    """Whom to sign out: by `email`, or by `sub` (the Okta user id) in `iss_sub` format."""

    format: Literal["email", "iss_sub"]
    value: str
    iss: str = ""


def bad_token(description: str) -> LogoutRequestError:
    """RFC 6750 3.1: a missing, malformed or failing bearer token is a 401 `invalid_token`."""
    return LogoutRequestError(description, error="invalid_token", status=401)


def bad_request(description: str) -> LogoutRequestError:
    return LogoutRequestError(description, error="invalid_request", status=400)


async def authenticate(
    provider: OktaProvider, store: Store, token: str, *, audience: str, now: float
) -> TokenUse:
    """Check Okta's bearer JWT; raises a 401 `LogoutRequestError` unless all of it holds and
    its `jti` is unspent. The caller spends it (`gateway.authn.logout.spend`) once the logout
    is done."""
    verifier = SignedJWTVerifier(
        what="Universal Logout token",
        algorithms=OKTA_ALGORITHMS,
        keys=provider.org_keys,
        fail=lambda description, _: bad_token(description),
        who="the Okta org",
    )
    _, claims = await verifier.verified(token)
    if claims.get("iss") != provider.org:
        raise bad_token("The token's issuer is not this IdP's Okta org")
    # draft-parecki-oauth-global-token-revocation: the audience is the endpoint's own URL, so a
    # token made for another app's endpoint cannot be replayed here.
    if audience not in audiences(claims):
        raise bad_token("The token's audience is not this endpoint")
    until = check_times(claims, now, bad_token, require_exp=True)
    jti = token_id(claims, bad_token)
    replayed = bad_token("The token was already used (jti replayed)")
    return await unspent(store, "universal", provider.idp.id, jti, until - now, replayed)


def read_subject(body: Any) -> Subject:
    """The body's `sub_id` (RFC 9493 Subject Identifier), in a format Okta sends; raises a 400
    `LogoutRequestError` for anything else."""
    sub_id = body.get("sub_id") if isinstance(body, dict) else None
    if not isinstance(sub_id, dict):
        raise bad_request("The body must be a JSON object with a sub_id object")
    fmt = sub_id.get("format")
    if fmt == "email":
        email = sub_id.get("email")
        if not _name(email) or "@" not in email:
            raise bad_request("sub_id.email must be an email address")
        return Subject("email", email)
    if fmt == "iss_sub":
        iss, sub = sub_id.get("iss"), sub_id.get("sub")
        if not _name(iss) or not _name(sub):
            raise bad_request("sub_id.iss and sub_id.sub must be non-empty strings")
        return Subject("iss_sub", sub, iss)
    raise LogoutRequestError(
        "sub_id.format must be 'email' or 'iss_sub'", error="unsupported_format", status=400
    )


def _name(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value.strip()) == len(value) <= _MAX_NAME


async def revoke(
    provider: OktaProvider, registry: Registry, sessions: SessionManager, subject: Subject
) -> int:
    """End every session of the person `subject` names among this IdP's people; returns how
    many were live. Raises a 404 `LogoutRequestError` when no such person is known."""
    idp_id = provider.idp.id
    people: set[str] | None = None
    if subject.format == "email":
        people = await registry.people_of(idp_id, email=subject.value)
    elif subject.iss in (provider.org, provider.issuer):  # an Okta user id names a user of it
        people = await registry.people_of(idp_id, sub=subject.value)
    if people is None:
        raise LogoutRequestError(
            "No such user is known for this identity provider", error="not_found", status=404
        )
    revoked = 0
    for user_uuid in sorted(people):
        revoked += await sessions.revoke_user(user_uuid)
    log.info(
        "universal logout idp=%s users=%s sessions_revoked=%d",
        idp_id,
        ",".join(sorted(people)) or "-",
        revoked,
        extra={
            "step": "universal_logout",
            "idp": idp_id,
            "user_uuids": sorted(people),
            "sessions_revoked": revoked,
        },
    )
    return revoked
