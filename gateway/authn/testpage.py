"""The identity provider "Test" button: `/test-idp?idp=<id>` (SPEC 4 "Test page").

`begin` starts an ordinary sign-in whose login state says `purpose="test"`; the IdP answers on
the usual callback, which runs the same sign-in code (`signin.finish`, with Okta's too-many-groups
restart) and then, instead of creating a session, hands what the sign-in learned to
`success_page` or the `SignInError` it raised to `failure_page`. Nothing here re-does a
sign-in step: this module only turns a `SignedIn` or a `SignInError` into the page
`templates/test_idp.html` shows, with what the provider says to check for the step that failed;
the callback keeps it and sends the browser to `/test-idp/result/<id>`, which can be reloaded or
shared for a few minutes (it holds claims, never a token). Without a valid `idp`, `/test-idp`
lists the identity providers to test. The test never creates a session or sets
`CF_Authorization`, and it shows only the tester's own identity, so it needs no admin token.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response

from gateway.authn import signin
from gateway.authn.providers import SignInResult
from gateway.authn.providers.okta import TooManyGroupsError
from gateway.config import IdentityProvider, SamlConfig
from gateway.errors import SignInError
from gateway.runtime import CALLBACK_PATH, Runtime, reference_id
from gateway.web.cookies import LOGIN_BINDING_COOKIE, set_binding_cookie
from gateway.web.pages import Kept

log = logging.getLogger("gateway.testpage")

TEMPLATE = "test_idp.html"
CHOOSE_TEMPLATE = "test_idp_choose.html"

# What each sign-in step (`SignInError.step`) is called on the page.
_STEP_LABELS = {
    "discovery": "Discovery (reading Okta's OpenID configuration)",
    "jwks": "Reading the signing keys (JWKS)",
    "authorize": "Okta's answer on the redirect (authorize)",
    "token": "Code exchange at the token endpoint",
    "id_token": "ID token validation",
    "userinfo": "Userinfo",
    "email": "Email address",
    "groups": "Reading groups from the Okta Groups API",
    "state": "Sign-in state",
    # SAML (gateway/authn/providers/saml.py)
    "metadata": "Reading the SAML IdP metadata",
    "response": "The SAML Response",
    "signature": "SAML signature (the IdP certificate)",
    "issuer": "SAML Issuer",
    "audience": "SAML Audience (the SP entity id)",
    "recipient": "SAML Recipient / Destination (the Single sign-on URL)",
    "time": "SAML validity period (clock skew)",
    "unsolicited": "SAML InResponseTo (IdP-initiated sign-in)",
    "replay": "SAML assertion already used",
    "status": "The IdP's SAML status",
}


async def begin(rt: Runtime, idp_id: str, binding_cookie: str) -> Response:
    """Start a test sign-in with IdP `idp_id`: a redirect to its authorize endpoint.

    `binding_cookie` is the browser's `CF_Session` value, reused when valid. A failure before
    the redirect (discovery) is the test page in failure mode. Without an IdP (400) or with an
    unknown one (404), the page lists the identity providers to test.
    """
    if not idp_id:
        return _choose(rt, 400, "Choose the identity provider to test: /test-idp?idp=<id>.")
    idp = rt.settings.idp(idp_id)
    if idp is None:
        return _choose(rt, 404, "There is no identity provider with that id.")
    binding = rt.bindings.unsign(binding_cookie) or secrets.token_urlsafe(24)
    state = signin.LoginState(binding=binding, idp_id=idp.id, purpose="test")
    try:
        authorize_url = await signin.start(rt.store, rt.providers[idp.id], state)
    except SignInError as exc:
        return rt.pages.show(failure_page(rt, idp, exc))
    response = RedirectResponse(authorize_url, status_code=302)
    response.headers["Cache-Control"] = "no-store"
    set_binding_cookie(
        rt, response, LOGIN_BINDING_COOKIE, binding, cross_site_post=idp.type == "saml"
    )
    return response


def _choose(rt: Runtime, status: int, reason: str) -> Response:
    """The identity providers to test, each a link, under why none was tested."""
    idps = [
        {"name": idp.name, "type": idp.type, "url": "/test-idp?" + urlencode({"idp": idp.id})}
        for idp in rt.settings.identity_providers
    ]
    return rt.pages.render(
        CHOOSE_TEMPLATE, status, title="Test an identity provider", reason=reason, idps=idps
    )


def success_page(rt: Runtime, idp: IdentityProvider, signed_in: signin.SignedIn) -> Kept:
    """The page for a test sign-in that worked: what the sign-in learned, as it learned it."""
    result = signed_in.result
    log.info("idp test ok idp=%s user=%s", idp.id, signed_in.identity.user_uuid)
    config = idp.config
    # What the page shows whichever protocol signed in.
    learned: dict[str, Any] = {
        "title": "Your connection works!",
        "ok": True,
        "idp_name": idp.name,
        "idp_type": idp.type,
        "identity_json": _pretty(signed_in.identity.to_json()),
        "groups_source": _groups_source(result),
        "groups_note": result.groups_note,
    }
    if isinstance(config, SamlConfig):
        wanted = sorted(config.kept_attributes)
        return _page(
            200,
            **learned,
            email_source=f"The email address came from {result.email_source}.",
            attributes_json=_pretty(result.id_token_claims),
            claims_configured=bool(wanted),
            oidc_fields_json=_pretty({k: list(v) for k, v in result.saml_attributes.items()}),
            claims_not_sent=[name for name in wanted if name not in result.id_token_claims],
        )
    kept = result.oidc_fields
    return _page(
        200,
        **learned,
        claims_configured=bool(config.claims),
        oidc_fields_json=_pretty(kept),
        claims_not_sent=[name for name in config.claims if name not in kept],
        id_token_claims_json=_pretty(result.id_token_claims),
    )


def failure_page(rt: Runtime, idp: IdentityProvider, exc: SignInError) -> Kept:
    """The page for a test sign-in that failed: the step, Okta's reason, and what to check.

    Answered with the error's own status (400/403/502/503/504, as the sign-in would), and a
    reference id that matches the log line.
    """
    reference = reference_id()
    log.warning(
        "idp test failed ref=%s idp=%s step=%s error=%s status=%d: %r",
        reference,
        idp.id,
        exc.step,
        exc.error,
        exc.status,
        exc.description,
    )
    redirect_uri = rt.settings.gateway.public_url + CALLBACK_PATH
    too_many_groups = isinstance(exc, TooManyGroupsError)
    return _page(
        exc.status,
        title="The connection failed",
        ok=False,
        idp_name=idp.name,
        idp_type=idp.type,
        step=(
            "Groups: more than 100 groups for the groups claim"
            if too_many_groups
            else _STEP_LABELS.get(exc.step, exc.step or "Sign-in")
        ),
        reason=exc.description,
        hint=exc.hint,
        # The refusal's hint already names the limit and both fixes; nothing else to check.
        checks=[] if too_many_groups else _checks(rt, idp, exc.step, redirect_uri),
        redirect_uri=redirect_uri,
        retry_url="/test-idp?" + urlencode({"idp": idp.id}),
        status=exc.status,
        reference=reference,
    )


def _page(status: int, /, **context: Any) -> Kept:
    return Kept(TEMPLATE, status, context)


def _checks(rt: Runtime, idp: IdentityProvider, step: str, redirect_uri: str) -> list[str]:
    """What to check when `step` failed: the sign-in state here, the rest at the IdP."""
    if step == "state":
        return ["Cookies are enabled for the gateway, and the test finishes within 10 minutes."]
    return rt.providers[idp.id].checks(step, redirect_uri)


def _groups_source(result: SignInResult) -> str:
    """Where the groups came from, in a sentence."""
    count = _plural(len(result.groups), "group")
    if result.groups_source == "claim":
        return f"{count} from the groups claim of the ID token."
    if result.groups_source == "attribute":
        return f"{count} from the 'groups' attribute of the SAML assertion."
    if result.groups_source == "userinfo":
        return f"{count} from the groups claim of the userinfo answer."
    if result.groups_source == "api":
        pages = _plural(result.groups_api_pages, "page")
        why = (
            "Okta refused the groups claim (more than 100 groups), so the gateway signed in "
            "again without the groups scope"
            if result.restarted
            else "The sign-in carried no usable groups claim"
        )
        return (
            f"{count} read from the Okta Groups API (GET /api/v1/users/{{id}}/groups) in "
            f"{pages}. {why}, and api_token is set."
        )
    return "No groups: the sign-in carried no groups claim."


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _pretty(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)
