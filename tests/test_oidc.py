"""The OIDC core, through the Okta and generic providers, against FakeOkta: the authorize URL,
the code exchange, every ID-token check of OIDC Core 3.1.3.7, and where email, name, groups and
kept claims come from (SPEC 4).

Most tests run twice, against Okta's org authorization server and a custom one, because their
issuers, endpoints and groups claims differ (OKTA.md).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import httpx
import pytest
import respx
from clock import FakeClock
from fake_okta import CLIENT_SECRET, FakeOkta

from gateway.authn.providers import SignInRequest, SignInResult
from gateway.authn.providers.generic import GenericOIDCProvider
from gateway.authn.providers.okta import OktaProvider, TooManyGroupsError
from gateway.config import IdentityProvider, OIDCConfig
from gateway.errors import IdPError, SignInError, TokenValidationError

ALICE = "00u1alice"
ALICE_GROUPS = ["Engineering", "Everyone"]


@pytest.fixture(params=[None, "aus8xk2s0b0rA1b2c3"], ids=["org", "custom"])
def okta(request: pytest.FixtureRequest, router: respx.MockRouter, clock: FakeClock) -> FakeOkta:
    okta = FakeOkta(router, authorization_server_id=request.param, clock=clock)
    okta.add_user(ALICE, "alice@example.com", "Alice Example", ALICE_GROUPS, department="R&D")
    return okta


Provider = OktaProvider | GenericOIDCProvider


def provider_for(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock, **config: Any
) -> OktaProvider:
    idp = okta.identity_provider(**config)
    return OktaProvider(idp, http, redirect_uri=okta.redirect_uri, clock=clock)


async def answer(
    provider: Provider, okta: FakeOkta, sub: str = ALICE, request: SignInRequest | None = None
) -> SignInResult | SignInRequest:
    """What the login and callback handlers do, with the browser leg played by FakeOkta:
    `request` (else a new sign-in) answered at Okta as `sub`, and the provider's outcome."""
    request = request or await provider.begin()
    callback = dict(parse_qsl(urlsplit(okta.authorize(request.url, sub)).query))
    assert callback["state"] == request.state, callback
    return await provider.finish(callback, request.pending)


async def sign_in(
    provider: Provider, okta: FakeOkta, sub: str = ALICE, request: SignInRequest | None = None
) -> SignInResult:
    """A sign-in that must end with who signed in."""
    outcome = await answer(provider, okta, sub, request)
    assert isinstance(outcome, SignInResult), outcome
    return outcome


def scope_of(authorize_url: str) -> str:
    return dict(parse_qsl(urlsplit(authorize_url).query))["scope"]


async def rejected(provider: Provider, okta: FakeOkta) -> TokenValidationError:
    with pytest.raises(TokenValidationError) as caught:
        await sign_in(provider, okta)
    assert caught.value.step == "id_token"
    return caught.value


# --- the happy path and the authorize URL ----------------------------------------------------


async def test_good_token_is_accepted(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    result = await sign_in(provider_for(okta, http, clock), okta)

    assert result.sub == ALICE
    assert result.email == "alice@example.com"
    assert result.name == "Alice Example"
    assert result.amr == ("pwd",)
    assert result.groups == tuple(ALICE_GROUPS)
    assert (result.groups_source, result.groups_api_pages, result.groups_note) == ("claim", 0, "")
    assert result.id_token_claims["iss"] == okta.issuer
    assert result.id_token_claims["aud"] == okta.client_id
    assert result.oidc_fields == {}
    assert okta.routes["userinfo"].call_count == 0  # the ID token had everything


async def test_authorize_url(okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock) -> None:
    provider = provider_for(okta, http, clock)
    request = await provider.begin()
    first = await provider.begin()
    nonce = request.pending["nonce"]

    assert request.url.startswith(okta.authorization_endpoint + "?")
    params = dict(parse_qsl(urlsplit(request.url).query))
    assert params["response_type"] == "code"
    assert params["client_id"] == okta.client_id
    assert params["redirect_uri"] == okta.redirect_uri
    assert (params["state"], params["nonce"]) == (request.state, nonce)
    assert "prompt" not in params  # only the restart is silent (below)
    assert "code_challenge" not in params
    assert request.pending["code_verifier"] == ""
    for value in (request.state, nonce):
        assert len(value) >= 43  # 256 bits in base64url: at least the 128 the brief asks
        assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert first.state != request.state and first.pending["nonce"] != nonce
    assert okta.routes["discovery"].call_count == 1  # cached


async def test_scopes_org_server_asks_for_groups(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta = FakeOkta(router, clock=clock)
    many_groups(okta)
    provider = provider_for(okta, http, clock, api_token=okta.api_token)

    with_groups = await provider.begin()
    without = await answer(provider, okta, "00u5dave", with_groups)  # the restart

    assert scope_of(with_groups.url) == "openid email profile groups"
    assert isinstance(without, SignInRequest)
    assert scope_of(without.url) == "openid email profile"
    assert dict(parse_qsl(urlsplit(without.url).query))["prompt"] == "none"


async def test_scopes_custom_server_without_groups_scope(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    # A custom server does not advertise `groups`, and Okta fails the whole authorize request
    # with invalid_scope for a scope it does not know: its groups come from a server claim.
    okta = FakeOkta(router, authorization_server_id="default", clock=clock)
    okta.add_user(ALICE, "alice@example.com", "Alice Example", ALICE_GROUPS)
    provider = provider_for(okta, http, clock)

    request = await provider.begin()
    result = await sign_in(provider, okta)

    assert scope_of(request.url) == "openid email profile"
    assert result.groups == tuple(ALICE_GROUPS)


async def test_discovery_is_cached_for_an_hour(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    await provider.metadata()
    clock.advance(3599)
    meta = await provider.metadata()
    assert okta.routes["discovery"].call_count == 1
    clock.advance(1)
    await provider.metadata()
    assert okta.routes["discovery"].call_count == 2
    assert (meta.issuer, meta.token_endpoint, meta.jwks_uri, meta.userinfo_endpoint) == (
        okta.issuer,
        okta.token_endpoint,
        okta.jwks_uri,
        okta.userinfo_endpoint,
    )


async def test_discovery_issuer_mismatch(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    document = {**okta.discovery_document(), "issuer": "https://dev-999.okta.com"}
    okta.answer("discovery", httpx.Response(200, json=document))

    with pytest.raises(IdPError) as caught:
        await provider_for(okta, http, clock).begin()

    assert caught.value.step == "discovery"
    assert caught.value.hint == "check the Okta domain / authorization server ID"


async def test_discovery_not_found(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.answer("discovery", httpx.Response(404, json={"errorCode": "E0000022"}))
    with pytest.raises(IdPError) as caught:
        await provider_for(okta, http, clock).metadata()
    assert caught.value.step == "discovery"
    assert "404" in caught.value.description


# --- the code exchange ------------------------------------------------------------------------


async def test_client_secret_basic_only(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    # RFC 6749 2.3.1: id and secret are form-urlencoded before base64, so ":" "+" "/" survive.
    okta = FakeOkta(router, client_secret="p:ss+w/rd ü%", clock=clock)
    okta.add_user(ALICE, "alice@example.com", "Alice Example")

    await sign_in(provider_for(okta, http, clock), okta)

    request = okta.routes["token"].calls.last.request
    form = dict(parse_qsl(request.content.decode()))
    assert set(form) == {"grant_type", "code", "redirect_uri"}
    assert form["grant_type"] == "authorization_code"
    assert form["redirect_uri"] == okta.redirect_uri
    encoded = base64.b64decode(request.headers["authorization"].removeprefix("Basic ")).decode()
    assert [unquote_plus(part) for part in encoded.split(":")] == [okta.client_id, "p:ss+w/rd ü%"]


async def test_pkce_verifier_sent_when_enabled(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock, pkce_enabled=True)
    request = await provider.begin()
    code_verifier = request.pending["code_verifier"]
    params = dict(parse_qsl(urlsplit(request.url).query))
    digest = hashlib.sha256(code_verifier.encode()).digest()
    assert params["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert params["code_challenge_method"] == "S256"
    assert 43 <= len(code_verifier) <= 128

    await sign_in(provider, okta, request=request)  # FakeOkta checks the verifier

    assert okta.authorize_params[-1]["code_challenge_method"] == "S256"

    form = dict(parse_qsl(okta.routes["token"].calls.last.request.content.decode()))
    assert form["code_verifier"]


async def test_pkce_wrong_verifier_is_invalid_grant(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock, pkce_enabled=True)
    request = await provider.begin()
    callback = dict(parse_qsl(urlsplit(okta.authorize(request.url, ALICE)).query))

    with pytest.raises(IdPError) as caught:
        await provider.finish(callback, {**request.pending, "code_verifier": "x" * 43})
    assert (caught.value.status, caught.value.step) == (400, "token")


async def test_no_pkce_verifier_when_disabled(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    await sign_in(provider_for(okta, http, clock), okta)
    form = dict(parse_qsl(okta.routes["token"].calls.last.request.content.decode()))
    assert "code_verifier" not in form


async def test_code_is_single_use(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    request = await provider.begin()
    callback = dict(parse_qsl(urlsplit(okta.authorize(request.url, ALICE)).query))
    await provider.finish(callback, request.pending)

    with pytest.raises(IdPError) as caught:
        await provider.finish(callback, request.pending)
    assert (caught.value.status, caught.value.step) == (400, "token")
    assert "invalid or has expired" in caught.value.description


@pytest.mark.parametrize(
    ("answer", "status", "hint"),
    [
        (FakeOkta.oauth_error(400, "invalid_grant", "The authorization code is invalid."), 400, ""),
        (FakeOkta.oauth_error(401, "invalid_client", "Client authentication failed."), 502, "ID"),
        (FakeOkta.oauth_error(400, "access_denied", "User is not assigned to the app."), 403, ""),
        (FakeOkta.oauth_error(403, "access_denied", "User status is invalid."), 403, ""),
        (FakeOkta.oauth_error(500, "server_error", "Internal error."), 502, ""),
        (httpx.Response(502, text="<html>Bad gateway</html>"), 502, ""),
        (FakeOkta.oauth_error(429, "invalid_grant", "Rate limited."), 502, ""),
        (httpx.ReadTimeout, 504, ""),
        (httpx.ConnectError, 503, ""),
    ],
    ids=[
        "invalid_grant",
        "invalid_client",
        "not-assigned",
        "user-status",
        "500",
        "html-502",
        "429",
        "timeout",
        "connection-error",
    ],
)
async def test_token_endpoint_errors(
    okta: FakeOkta,
    http: httpx.AsyncClient,
    clock: FakeClock,
    answer: httpx.Response | type[httpx.TransportError],
    status: int,
    hint: str,
) -> None:
    okta.answer("token", answer)

    with pytest.raises(IdPError) as caught:
        await sign_in(provider_for(okta, http, clock), okta)

    assert (caught.value.status, caught.value.step) == (status, "token")
    assert not isinstance(caught.value, TooManyGroupsError)
    if hint:
        assert caught.value.hint == "check the client ID and secret"


async def test_invalid_client_description_is_plain(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    with pytest.raises(IdPError) as caught:
        await sign_in(provider_for(okta, http, clock, client_secret="rotated-in-okta"), okta)
    assert (
        caught.value.description == "Okta refused the code exchange: Client authentication failed."
    )


async def test_token_answer_without_id_token(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.answer("token", httpx.Response(200, json={"access_token": "at", "token_type": "Bearer"}))
    with pytest.raises(IdPError) as caught:
        await sign_in(provider_for(okta, http, clock), okta)
    assert caught.value.step == "token"


# --- ID-token validation (OIDC Core 3.1.3.7) ------------------------------------------------


async def test_bad_signature(okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock) -> None:
    okta.id_token_signer = "foreign_key"
    error = await rejected(provider_for(okta, http, clock), okta)
    assert error.description == "The ID token's signature is invalid"


async def test_alg_none(okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock) -> None:
    okta.id_token_signer = "none"
    error = await rejected(provider_for(okta, http, clock), okta)
    assert "alg none" in error.description


async def test_hs256_signed_with_the_client_secret(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.id_token_signer = "client_secret"
    error = await rejected(provider_for(okta, http, clock), okta)
    assert "HMAC (HS256" in error.description


async def test_okta_accepts_only_rs256(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.rotate_keys(alg="ES256")
    error = await rejected(provider_for(okta, http, clock), okta)
    assert "'ES256' is not allowed" in error.description


async def test_header_alg_must_match_the_key(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.rotate_keys(alg="RS384")
    okta.id_token_header = {"alg": "RS256"}  # an RS256 signature by a key published for RS384
    error = await rejected(provider_for(okta, http, clock), okta)
    assert "meant for RS384" in error.description


async def test_jwe_id_token(okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock) -> None:
    okta.id_token_signer = "jwe"
    error = await rejected(provider_for(okta, http, clock), okta)
    assert "encrypted (JWE)" in error.description
    assert "encryption" in error.hint


async def test_garbage_id_token(okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock) -> None:
    okta.answer(
        "token", httpx.Response(200, json={"id_token": "a.b", "access_token": "at"}), times=1
    )
    error = await rejected(provider_for(okta, http, clock), okta)
    assert "well-formed" in error.description


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://dev-999.okta.com"}, "issuer"),
        ({"iss": None}, "issuer"),
        ({"aud": "0oaother"}, "audience does not include"),
        ({"aud": ["0oaother", "0oaclient"]}, "no azp"),
        ({"aud": ["0oaother", "0oaclient"], "azp": "0oaother"}, "azp"),
        ({"azp": "0oaother"}, "azp"),
        ({"sub": None}, "no sub"),
        ({"exp": None}, "expired"),
        ({"iat": None}, "iat"),
        ({"nonce": None}, "no nonce"),
        ({"nonce": "another-sign-in"}, "nonce does not match"),
        ({"groups": {"not": "a list"}}, "groups claim"),
    ],
    ids=[
        "wrong-iss",
        "no-iss",
        "wrong-aud",
        "several-aud-no-azp",
        "several-aud-wrong-azp",
        "wrong-azp",
        "no-sub",
        "no-exp",
        "no-iat",
        "no-nonce",
        "wrong-nonce",
        "malformed-groups",
    ],
)
async def test_claims_rejected(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock, claims: dict[str, Any], reason: str
) -> None:
    okta.id_token_claims = claims
    with pytest.raises(TokenValidationError) as caught:
        await sign_in(provider_for(okta, http, clock), okta)
    assert reason in caught.value.description


async def test_several_audiences_with_our_azp(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.id_token_claims = {"aud": ["0oaother", okta.client_id], "azp": okta.client_id}
    assert (await sign_in(provider_for(okta, http, clock), okta)).sub == ALICE


@pytest.mark.parametrize(
    ("claim", "offset", "accepted"),
    [
        ("exp", -59, True),  # expired, but within the 60 s leeway
        ("exp", -61, False),
        ("iat", 59, True),
        ("iat", 3600, False),  # issued an hour in the future
        ("nbf", 59, True),
        ("nbf", 120, False),
    ],
)
async def test_clock_leeway(
    okta: FakeOkta,
    http: httpx.AsyncClient,
    clock: FakeClock,
    claim: str,
    offset: int,
    accepted: bool,
) -> None:
    okta.id_token_claims = {claim: int(clock()) + offset}
    provider = provider_for(okta, http, clock)
    if accepted:
        assert (await sign_in(provider, okta)).sub == ALICE
    else:
        assert "clock" in (await rejected(provider, okta)).hint


async def test_key_rotation_refetches_the_jwks_once(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)
    assert okta.routes["jwks"].call_count == 1

    okta.rotate_keys()  # Okta starts signing with a key the cached JWKS does not hold
    await sign_in(provider, okta)
    assert okta.routes["jwks"].call_count == 2  # exactly one refetch

    await sign_in(provider, okta)
    assert okta.routes["jwks"].call_count == 2


async def test_unknown_kid_stays_unknown(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)
    okta.id_token_header = {"kid": "no-such-kid"}

    error = await rejected(provider, okta)
    assert "'no-such-kid'" in error.description
    assert okta.routes["jwks"].call_count == 2  # one refetch, then fail

    clock.advance(29)
    await rejected(provider, okta)
    assert okta.routes["jwks"].call_count == 2  # a kid found missing is not looked up for 30 s

    clock.advance(1)
    await rejected(provider, okta)
    assert okta.routes["jwks"].call_count == 3


async def test_first_fetch_is_not_followed_by_a_refetch(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.id_token_header = {"kid": "no-such-kid"}
    await rejected(provider_for(okta, http, clock), okta)
    assert okta.routes["jwks"].call_count == 1  # the keys were fetched just now


async def test_jwks_is_refreshed_after_an_hour(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    # A key Okta withdrew must stop being trusted, not stay cached for the process lifetime.
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)
    clock.advance(3600)
    await sign_in(provider, okta)
    assert okta.routes["jwks"].call_count == 2


async def test_missing_kid_with_a_single_key(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    okta.id_token_header = {"kid": None}
    assert (await sign_in(provider, okta)).sub == ALICE  # OIDC Core 10.1: one key, kid optional

    okta.rotate_keys()
    clock.advance(3600)
    await rejected(provider, okta)  # two keys: which one is meant is not ours to guess


async def test_jwks_unreachable(okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock) -> None:
    okta.answer("jwks", httpx.ConnectError)
    with pytest.raises(IdPError) as caught:
        await sign_in(provider_for(okta, http, clock), okta)
    assert (caught.value.status, caught.value.step) == (503, "jwks")


async def test_secrets_stay_out_of_messages_and_logs(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)
    okta.id_token_claims = {"nonce": "another-sign-in"}
    error = await rejected(provider, okta)

    for call in okta.routes["token"].calls:
        token_answer = call.response.json()
        code = dict(parse_qsl(call.request.content.decode()))["code"]
        for secret in (token_answer["id_token"], token_answer["access_token"], code, CLIENT_SECRET):
            assert secret not in caplog.text
            assert secret not in error.description
    assert "nonce does not match" in caplog.text


# --- email, name, claims ---------------------------------------------------------------------


async def test_email_from_userinfo(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.id_token_claims = {"email": None}
    result = await sign_in(provider_for(okta, http, clock), okta)

    assert result.email == "alice@example.com"
    assert okta.routes["userinfo"].call_count == 1
    request = okta.routes["userinfo"].calls.last.request
    assert request.headers["authorization"].startswith("Bearer ")


async def test_userinfo_for_another_sub_is_rejected(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.id_token_claims = {"email": None}
    okta.userinfo_claims = {"sub": "00u2mallory", "email": "mallory@example.com"}

    with pytest.raises(TokenValidationError) as caught:
        await sign_in(provider_for(okta, http, clock), okta)
    assert caught.value.step == "userinfo"


async def test_userinfo_unreachable_fails_with_one_log_line(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    okta.id_token_claims = {"email": None}
    okta.answer("userinfo", httpx.ConnectError)
    with pytest.raises(IdPError) as caught:
        await sign_in(provider_for(okta, http, clock), okta)
    assert (caught.value.step, caught.value.status) == ("userinfo", 503)
    failures = [r for r in caplog.records if "sign-in failed at userinfo" in r.getMessage()]
    assert len(failures) == 1


async def test_userinfo_refused(okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock) -> None:
    okta.id_token_claims = {"email": None}
    okta.answer(
        "userinfo",
        httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer error="invalid_token", error_description="x"'}
        ),
    )
    with pytest.raises(IdPError) as caught:
        await sign_in(provider_for(okta, http, clock), okta)
    assert (caught.value.step, caught.value.status) == ("userinfo", 502)


async def test_no_email_anywhere(okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock) -> None:
    okta.id_token_claims = {"email": None}
    okta.userinfo_claims = {"email": None}

    with pytest.raises(SignInError) as caught:
        await sign_in(provider_for(okta, http, clock), okta)

    assert type(caught.value) is SignInError
    assert (caught.value.step, caught.value.status) == ("email", 400)
    assert caught.value.description == "The identity provider did not send an email address"


async def test_email_claim_name(okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock) -> None:
    okta.add_user("00u3bob", "bob@login.example.com", "Bob", upn="bob@corp.example.com")
    provider = provider_for(okta, http, clock, email_claim_name="upn")
    assert (await sign_in(provider, okta, "00u3bob")).email == "bob@corp.example.com"


async def test_name_falls_back_to_given_and_family_then_email(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    okta.id_token_claims = {"name": None}
    assert (await sign_in(provider, okta)).name == "Alice Example"
    okta.id_token_claims = {"name": None, "given_name": None, "family_name": None}
    assert (await sign_in(provider, okta)).name == "alice@example.com"


async def test_only_listed_claims_are_kept(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.add_user(
        "00u4carol",
        "carol@example.com",
        "Carol",
        department="R&D",
        roles=["admin", "auditor"],
        level=3,
        contractor=False,
        address={"country": "FR"},
        secret_thing="not listed",
    )
    provider = provider_for(
        okta, http, clock, claims=("department", "roles", "level", "contractor", "address", "nope")
    )

    result = await sign_in(provider, okta, "00u4carol")

    assert result.oidc_fields == {
        "department": "R&D",
        "roles": ["admin", "auditor"],
        "level": 3,
        "contractor": False,
    }


async def test_listed_claims_fall_back_to_userinfo(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.id_token_claims = {"department": None}
    result = await sign_in(provider_for(okta, http, clock, claims=("department",)), okta)
    assert result.oidc_fields == {"department": "R&D"}
    assert okta.routes["userinfo"].call_count == 1


# --- groups ---------------------------------------------------------------------------------


async def test_groups_from_userinfo(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.groups_claim = "userinfo"
    result = await sign_in(provider_for(okta, http, clock), okta)
    assert (result.groups, result.groups_source) == (tuple(ALICE_GROUPS), "userinfo")


async def test_no_groups_claim_and_no_api_token(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.groups_claim = "none"
    result = await sign_in(provider_for(okta, http, clock), okta)

    assert (result.groups, result.groups_source, result.groups_api_pages) == ((), "none", 0)
    assert "Matches regex" in result.groups_note
    where = "authorization server" if okta.authorization_server_id else "Sign On tab"
    assert where in result.groups_note


async def test_no_groups_claim_with_api_token(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta.groups_claim = "none"
    okta.groups_page_size = 1
    result = await sign_in(provider_for(okta, http, clock, api_token=okta.api_token), okta)

    assert (result.groups, result.groups_source) == (tuple(ALICE_GROUPS), "api")
    assert (result.groups_api_pages, result.groups_note) == (2, "")


def many_groups(okta: FakeOkta, sub: str = "00u5dave") -> list[str]:
    okta.group_limit = 3  # Okta's limit is 100; a small one keeps the test small
    groups = [f"group-{i}" for i in range(5)]
    okta.add_user(sub, "dave@example.com", "Dave", groups)
    okta.groups_page_size = 2
    return groups


async def test_too_many_groups_at_token(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    # At /token there is no ID token to go on: without an API token the sign-in fails (with one
    # the provider restarts, below).
    many_groups(okta)
    provider = provider_for(okta, http, clock)

    with pytest.raises(TooManyGroupsError) as caught:
        await sign_in(provider, okta, "00u5dave")

    assert (caught.value.step, caught.value.status, caught.value.error) == (
        "token",
        502,
        "server_error",
    )
    assert "100" in caught.value.hint
    assert "api_token" in caught.value.hint


async def test_too_many_groups_restart_without_groups_scope_reads_the_api(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    # SPEC 4: with an API token the provider restarts once without the groups scope. On the org
    # server the app's groups claim needs that scope, so the claim is gone and the API is read.
    okta = FakeOkta(router, clock=clock)
    groups = many_groups(okta)
    provider = provider_for(okta, http, clock, api_token=okta.api_token)
    restart = await answer(provider, okta, "00u5dave")
    assert isinstance(restart, SignInRequest)
    assert okta.routes["token"].calls.last.response.status_code == 400  # refused at /token

    result = await sign_in(provider, okta, "00u5dave", restart)

    assert (result.groups, result.groups_source, result.groups_api_pages) == (
        tuple(groups),
        "api",
        3,
    )
    assert result.restarted


async def test_too_many_groups_at_userinfo_without_api_token(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    many_groups(okta)
    okta.groups_claim = "userinfo"

    with pytest.raises(TooManyGroupsError) as caught:
        await sign_in(provider_for(okta, http, clock), okta, "00u5dave")
    assert caught.value.step == "userinfo"


async def test_too_many_groups_at_userinfo_with_api_token(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    groups = many_groups(okta)
    okta.groups_claim = "userinfo"

    result = await sign_in(
        provider_for(okta, http, clock, api_token=okta.api_token), okta, "00u5dave"
    )

    assert (result.groups, result.groups_source, result.groups_api_pages) == (
        tuple(groups),
        "api",
        3,
    )
    assert result.email == "dave@example.com"


# --- generic OIDC ---------------------------------------------------------------------------


def generic_idp(okta: FakeOkta, **config: Any) -> IdentityProvider:
    return IdentityProvider(
        id="generic",
        name="Some OIDC provider",
        config=OIDCConfig(
            client_id=okta.client_id,
            client_secret=okta.client_secret,
            issuer=okta.issuer,
            auth_url=okta.authorization_endpoint,
            token_url=okta.token_endpoint,
            certs_url=okta.jwks_uri,
            userinfo_url=okta.userinfo_endpoint,
            **config,
        ),
    )


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES384"])
async def test_generic_oidc(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock, alg: str
) -> None:
    okta = FakeOkta(router, authorization_server_id="default", clock=clock)
    okta.add_user(ALICE, "alice@example.com", "Alice Example", ALICE_GROUPS)
    okta.rotate_keys(alg=alg, keep_old=False)
    provider = GenericOIDCProvider(
        generic_idp(okta), http, redirect_uri=okta.redirect_uri, clock=clock
    )

    request = await provider.begin()
    result = await sign_in(provider, okta)

    assert scope_of(request.url) == "openid email profile"
    assert (result.email, result.groups, result.groups_source) == (
        "alice@example.com",
        tuple(ALICE_GROUPS),
        "claim",
    )
    assert okta.routes["discovery"].call_count == 0  # endpoints come from the configuration


async def test_generic_oidc_configured_scopes_and_checks(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    okta = FakeOkta(router, clock=clock)
    okta.add_user(ALICE, "alice@example.com", "Alice Example")
    provider = GenericOIDCProvider(
        generic_idp(okta, scopes=("email", "profile")),
        http,
        redirect_uri=okta.redirect_uri,
        clock=clock,
    )

    request = await provider.begin()
    assert scope_of(request.url) == "openid email profile"

    okta.id_token_signer = "client_secret"
    with pytest.raises(TokenValidationError):
        await sign_in(provider, okta)
    okta.id_token_signer = "jwks"
    okta.id_token_claims = {"iss": "https://elsewhere.example.com"}
    with pytest.raises(TokenValidationError) as caught:
        await sign_in(provider, okta)
    assert "issuer" in caught.value.description


@pytest.mark.parametrize("verified", [False, "false"])
async def test_generic_oidc_refuses_an_email_the_provider_calls_unverified(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock, verified: object
) -> None:
    okta = FakeOkta(router, clock=clock)
    okta.add_user(ALICE, "alice@example.com", "Alice Example")
    provider = GenericOIDCProvider(
        generic_idp(okta), http, redirect_uri=okta.redirect_uri, clock=clock
    )

    okta.id_token_claims = {"email_verified": verified}
    with pytest.raises(SignInError) as caught:
        await sign_in(provider, okta)
    assert (caught.value.status, caught.value.step) == (403, "email")

    okta.id_token_claims = {"email_verified": True}
    assert (await sign_in(provider, okta)).email == "alice@example.com"


async def test_okta_s_email_verified_is_advisory(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """OKTA.md: admin-made Okta users are often unverified; Okta vouches for the address."""
    okta.id_token_claims = {"email_verified": False}
    assert (await sign_in(provider_for(okta, http, clock), okta)).email == "alice@example.com"


# --- the fake's redirect errors -------------------------------------------------------------


async def test_fake_okta_redirect_errors(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    request = await provider_for(okta, http, clock).begin()
    callback = okta.authorize_error(request.url, "access_denied", "User is not assigned")
    params = dict(parse_qsl(urlsplit(callback).query))
    assert params == {
        "error": "access_denied",
        "error_description": "User is not assigned",
        "state": request.state,
    }
