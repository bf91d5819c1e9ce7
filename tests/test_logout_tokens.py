"""The logout tokens on their own (gateway.authn.logout): which key set verifies Okta's Universal
Logout token when ID tokens come from a custom authorization server, and a generic OpenID
Connect provider's logout tokens with its own algorithms."""

from __future__ import annotations

import httpx
import pytest
import respx
from clock import FakeClock
from fake_okta import FakeOkta
from test_oidc import generic_idp

from gateway.authn.logout import backchannel, spend, universal
from gateway.authn.providers.generic import GenericOIDCProvider
from gateway.authn.providers.okta import OktaProvider
from gateway.errors import IdPError, LogoutRequestError
from gateway.state.store.memory import MemoryStore

AUDIENCE = "https://access.example.com/cdn-cgi/access/global-token-revocation/okta-idp"


async def test_a_custom_authorization_server_idp_checks_the_org_keys(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta = FakeOkta(router, authorization_server_id="default", clock=clock)
    provider = OktaProvider(
        okta.identity_provider(universal_logout=True),
        http,
        redirect_uri=okta.redirect_uri,
        clock=clock,
    )
    store = MemoryStore(clock=clock)
    signed_by_org = okta.universal_logout_token(AUDIENCE)
    await universal.authenticate(provider, store, signed_by_org, audience=AUDIENCE, now=clock())
    assert okta.routes["org_jwks"].call_count == 1
    assert okta.routes["jwks"].call_count == 0  # the ID tokens' key set is another one

    # Signed with the custom server's (ID-token) key: not the org's, so refused.
    by_custom_server = okta.sign(
        {"iss": okta.base, "aud": AUDIENCE, "iat": clock(), "exp": clock() + 60, "jti": "j-2"}
    )
    with pytest.raises(LogoutRequestError) as refused:
        await universal.authenticate(
            provider, store, by_custom_server, audience=AUDIENCE, now=clock()
        )
    assert refused.value.status == 401
    assert "the Okta org's key set" in refused.value.description


async def test_an_unreachable_org_key_set_is_not_a_token_refusal(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta = FakeOkta(router, clock=clock)
    okta.answer("jwks", httpx.Response(503))
    provider = OktaProvider(okta.identity_provider(), http, redirect_uri=okta.redirect_uri)
    token = okta.universal_logout_token(AUDIENCE)
    with pytest.raises(IdPError):  # the receiver answers 503: Okta may try again
        await universal.authenticate(
            provider, MemoryStore(clock=clock), token, audience=AUDIENCE, now=clock()
        )


@pytest.mark.parametrize("alg", ["ES256", "PS256"])
async def test_a_generic_providers_logout_token_with_its_own_algorithm(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock, alg: str
) -> None:
    okta = FakeOkta(router, authorization_server_id="default", clock=clock)
    okta.rotate_keys(alg=alg, keep_old=False)
    provider = GenericOIDCProvider(
        generic_idp(okta, backchannel_logout=True),
        http,
        redirect_uri=okta.redirect_uri,
        clock=clock,
    )
    store = MemoryStore(clock=clock)
    token = okta.logout_token(sub="00ualice", sid="sid-1")
    logout = await backchannel.validate(provider, store, token, clock())
    assert (logout.sub, logout.sid) == ("00ualice", "sid-1")
    await spend(store, logout.use)  # the logout done
    with pytest.raises(LogoutRequestError, match="already used"):
        await backchannel.validate(provider, store, token, clock())
