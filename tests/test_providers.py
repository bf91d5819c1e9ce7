"""The provider interface: one provider per IdP, chosen by type; the callback's parameters in,
who signed in (or one more trip to the IdP) out; Okta's too-many-groups restart inside the Okta
provider only; and the sign-in state the flow keeps for a provider between the two legs.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import respx
from clock import FakeClock
from fake_okta import TOO_MANY_GROUPS, FakeOkta
from harness import IDP_ID, TEAM, running, settings_doc
from test_oidc import generic_idp

from gateway.app import create_app
from gateway.authn import signin
from gateway.authn.providers import SignInRequest, SignInResult
from gateway.authn.providers.generic import GenericOIDCProvider
from gateway.authn.providers.okta import OktaProvider, TooManyGroupsError
from gateway.config import parse_settings
from gateway.errors import IdPError, SignInError
from gateway.state.store import Store

CAROL = "00ucarol"
MANY = [f"group-{i}" for i in range(5)]


def custom_server(router: respx.MockRouter, clock: FakeClock) -> FakeOkta:
    """A custom authorization server whose Groups claim comes whatever the scopes, with Carol
    in more groups than its (small) limit."""
    okta = FakeOkta(router, authorization_server_id="default", clock=clock)
    okta.group_limit = 3
    okta.add_user(CAROL, "carol@example.com", "Carol", MANY)
    return okta


def generic(okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock) -> GenericOIDCProvider:
    """A generic OIDC provider on FakeOkta's endpoints."""
    idp = generic_idp(okta)
    return GenericOIDCProvider(idp, http, redirect_uri=okta.redirect_uri, clock=clock)


def okta_provider(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock, **config: Any
) -> OktaProvider:
    idp = okta.identity_provider(**config)
    return OktaProvider(idp, http, redirect_uri=okta.redirect_uri, clock=clock)


async def answered(
    provider: OktaProvider | GenericOIDCProvider,
    okta: FakeOkta,
    request: SignInRequest,
    sub: str = CAROL,
) -> SignInResult | SignInRequest:
    callback = dict(parse_qsl(urlsplit(okta.authorize(request.url, sub)).query))
    return await provider.finish(callback, request.pending)


# --- one provider per IdP, by type ------------------------------------------------------------


async def test_the_runtime_gives_each_idp_the_provider_of_its_type() -> None:
    doc = settings_doc("http://127.0.0.1:9")
    doc["identity_providers"].append(
        {
            "id": "corp-oidc",
            "name": "Corporate SSO",
            "type": "oidc",
            "config": {
                "client_id": "gateway",
                "client_secret": "s",
                "issuer": "https://sso.example.com",
                "auth_url": "https://sso.example.com/authorize",
                "token_url": "https://sso.example.com/token",
                "certs_url": "https://sso.example.com/jwks",
            },
        }
    )
    async with running(create_app(parse_settings(doc))) as app:
        rt = app.runtime
        assert rt is not None
        okta, corp = rt.providers[IDP_ID], rt.providers["corp-oidc"]
        assert isinstance(okta, OktaProvider) and okta.idp == rt.settings.idp(IDP_ID)
        assert isinstance(corp, GenericOIDCProvider) and corp.idp.type == "oidc"

        rt.apply(rt.settings)  # an unchanged IdP keeps its provider, caches and all
        assert rt.providers[IDP_ID] is okta and rt.providers["corp-oidc"] is corp
        rt.apply(parse_settings(settings_doc("http://127.0.0.1:9", pkce_enabled=True)))
        assert rt.providers[IDP_ID] is not okta and "corp-oidc" not in rt.providers


# --- the answer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["okta", "generic"])
async def test_an_answer_with_an_error_or_without_a_code_fails_closed(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock, kind: str
) -> None:
    okta = FakeOkta(router, clock=clock)
    provider = okta_provider(okta, http, clock) if kind == "okta" else generic(okta, http, clock)
    request = await provider.begin()

    with pytest.raises(IdPError) as refused:
        await provider.finish(
            {"error": "access_denied", "error_description": "User is not assigned"},
            request.pending,
        )
    assert (refused.value.status, refused.value.step) == (403, "authorize")
    assert "User is not assigned" in refused.value.description

    with pytest.raises(SignInError) as no_code:
        await provider.finish({"state": request.state}, request.pending)
    assert (no_code.value.step, no_code.value.status) == ("authorize", 400)
    assert okta.routes["token"].call_count == 0


async def test_the_pkce_verifier_stays_on_the_server(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta = FakeOkta(router, clock=clock)
    request = await okta_provider(okta, http, clock, pkce_enabled=True).begin()
    verifier = request.pending["code_verifier"]
    assert verifier and verifier not in request.url


# --- Okta's too-many-groups restart, in the Okta provider only --------------------------------


async def test_okta_restarts_once_and_a_second_refusal_names_the_claim_filter(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta = custom_server(router, clock)
    provider = okta_provider(okta, http, clock, api_token=okta.api_token)

    restart = await answered(provider, okta, await provider.begin())
    assert isinstance(restart, SignInRequest)
    query = dict(parse_qsl(urlsplit(restart.url).query))
    assert (query["prompt"], query["scope"]) == ("none", "openid email profile")

    with pytest.raises(TooManyGroupsError) as caught:
        await answered(provider, okta, restart)
    assert "does not depend on the 'groups' scope" in caught.value.hint
    assert okta.routes["groups"].call_count == 0


async def test_okta_s_refusal_on_the_redirect_restarts_too(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta = FakeOkta(router, clock=clock)
    provider = okta_provider(okta, http, clock, api_token=okta.api_token)
    request = await provider.begin()
    refusal = {"error": "server_error", "error_description": TOO_MANY_GROUPS + "."}

    restart = await provider.finish(refusal, request.pending)

    assert isinstance(restart, SignInRequest) and restart.state != request.state
    with pytest.raises(TooManyGroupsError) as caught:
        await provider.finish(refusal, restart.pending)
    assert caught.value.step == "authorize"


async def test_a_generic_provider_never_restarts_and_never_reads_the_refusal_as_no_groups(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    # Okta's wording means nothing special to a generic provider: the refusal fails the
    # sign-in as any refused code exchange does.
    okta = custom_server(router, clock)
    provider = generic(okta, http, clock)

    with pytest.raises(IdPError) as caught:
        await answered(provider, okta, await provider.begin())

    assert not isinstance(caught.value, TooManyGroupsError)
    assert (caught.value.step, caught.value.status) == ("token", 502)
    assert TOO_MANY_GROUPS in caught.value.description
    assert len(okta.authorize_params) == 1


# --- what to check at the IdP ---------------------------------------------------------------


async def test_each_provider_says_where_to_check(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta = FakeOkta(router, clock=clock)
    redirect_uri = TEAM + "/cdn-cgi/access/callback"
    at_okta = okta_provider(okta, http, clock)
    elsewhere = generic(okta, http, clock)

    assert f"redirect URIs in Okta must include exactly {redirect_uri}" in " ".join(
        at_okta.checks("authorize", redirect_uri)
    )
    assert "at the identity provider must include" in " ".join(
        elsewhere.checks("authorize", redirect_uri)
    )
    assert any(
        okta.base + "/.well-known/openid-configuration" in check
        for check in at_okta.checks("discovery", redirect_uri)
    )
    assert elsewhere.checks("jwks", redirect_uri) == [
        "The identity provider's settings at the identity provider and this host's network "
        "access to it."
    ]


# --- the state kept between the legs --------------------------------------------------------


async def test_a_login_state_the_gateway_cannot_read_is_an_expired_link(store: Store) -> None:
    # E.g. kept by an older gateway during a rolling upgrade: start again, never a 500.
    old = {"binding": "b", "idp_id": IDP_ID, "nonce": "n", "code_verifier": "", "purpose": "login"}
    await store.set("login_state:s1", json.dumps(old).encode(), ttl=60)

    with pytest.raises(SignInError) as caught:
        await signin.take_state(store, "s1", "b")

    assert caught.value.step == "state"
    assert "expired" in caught.value.description
