"""Signing-key rotation at the IdP, through the Okta and generic providers against FakeOkta: a
rotation never fails a sign-in, and tokens naming made-up keys cost a bounded number of JWKS
fetches (the bounds are in the docstring of gateway/authn/providers/jwks.py).

The basics (one refetch on an unknown kid, the hourly refresh, an unreachable JWKS) are in
test_oidc.py, whose sign-in helpers these tests drive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count

import httpx
import pytest
import respx
from clock import FakeClock
from fake_okta import FakeOkta
from test_oidc import ALICE, generic_idp, provider_for, rejected, sign_in

from gateway.authn.providers import jwks
from gateway.authn.providers.generic import GenericOIDCProvider
from gateway.authn.providers.jwks import JWKS_REFETCH_LIMIT, JWKS_REFETCH_WINDOW, UNKNOWN_KID_TTL
from gateway.errors import SignInError, TokenValidationError


@pytest.fixture
def okta(router: respx.MockRouter, clock: FakeClock) -> FakeOkta:
    okta = FakeOkta(router, clock=clock)
    okta.add_user(ALICE, "alice@example.com", "Alice Example", ["Everyone"])
    return okta


def fetches(okta: FakeOkta) -> int:
    return okta.routes["jwks"].call_count


class HeldJWKS:
    """A slow JWKS endpoint: every answer, as the key set stood when asked, is held until
    `released` is set, so that sign-ins can arrive while a fetch is under way."""

    def __init__(self, okta: FakeOkta) -> None:
        self.asked = 0
        self.released = asyncio.Event()
        serve = okta.routes["jwks"].side_effect
        assert callable(serve)

        async def held(request: httpx.Request) -> httpx.Response:
            self.asked += 1
            answer: httpx.Response = serve(request)
            await self.released.wait()
            return answer

        okta.routes["jwks"].side_effect = held


async def until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until `condition` holds, then a little longer so that each
    reaches the point where it waits (no wall-clock time passes)."""
    for _ in range(10_000):
        if condition():
            break
        await asyncio.sleep(0)
    else:
        pytest.fail("the sign-ins never got there")
    for _ in range(10):
        await asyncio.sleep(0)


def tokens_issued(okta: FakeOkta, number: int) -> Callable[[], bool]:
    return lambda: okta.routes["token"].call_count >= number


@contextmanager
def made_up_kids(okta: FakeOkta) -> Iterator[None]:
    """Within, each ID token Okta issues names a key id of its own that no key has."""
    route = okta.routes["token"]
    serve = route.side_effect
    assert callable(serve)
    numbers = count()

    def token(request: httpx.Request) -> httpx.Response:
        okta.id_token_header = {"kid": f"made-up-{next(numbers)}"}
        response: httpx.Response = serve(request)
        return response

    route.side_effect = token
    try:
        yield
    finally:
        route.side_effect = serve
        okta.id_token_header = {}


# --- a rotation never fails a sign-in ---------------------------------------------------------


async def test_a_key_added_a_second_after_an_unknown_kid_refetch_is_found(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)
    okta.id_token_header = {"kid": "no-such-kid"}
    await rejected(provider, okta)
    assert fetches(okta) == 2

    clock.advance(1)
    okta.id_token_header = {}
    okta.rotate_keys()  # Okta publishes a new key and signs with it
    assert (await sign_in(provider, okta)).sub == ALICE
    assert fetches(okta) == 3


async def test_a_kid_less_token_follows_a_rotation_of_the_only_key(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    okta.id_token_header = {"kid": None}  # OIDC Core 10.1: one key, kid optional
    await sign_in(provider, okta)

    clock.advance(1)
    okta.rotate_keys(keep_old=False)  # the only key changes
    assert (await sign_in(provider, okta)).sub == ALICE
    assert fetches(okta) == 2

    assert (await sign_in(provider, okta)).sub == ALICE  # the new key is cached now
    assert fetches(okta) == 2


async def test_a_kid_less_token_follows_a_new_key_of_another_algorithm(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = GenericOIDCProvider(
        generic_idp(okta), http, redirect_uri=okta.redirect_uri, clock=clock
    )
    okta.id_token_header = {"kid": None}
    await sign_in(provider, okta)

    okta.rotate_keys(alg="ES256", keep_old=False)  # the cached RS256 key is not even tried
    assert (await sign_in(provider, okta)).sub == ALICE
    assert fetches(okta) == 2


async def test_a_kid_less_token_with_a_bad_signature_gets_one_fresh_look(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)
    okta.id_token_header = {"kid": None}
    okta.id_token_signer = "foreign_key"  # signed with a key Okta never published

    assert (await rejected(provider, okta)).description == "The ID token's signature is invalid"
    assert fetches(okta) == 2


async def test_sign_ins_during_a_rotation_share_one_fetch(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)
    okta.rotate_keys()
    held = HeldJWKS(okta)

    signing_in = [asyncio.create_task(sign_in(provider, okta)) for _ in range(20)]
    await until(tokens_issued(okta, 21))
    held.released.set()

    assert [result.sub for result in await asyncio.gather(*signing_in)] == [ALICE] * 20
    assert fetches(okta) == 2


async def test_a_key_published_while_a_fetch_was_under_way_is_found(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    # Okta: the JWKS "could lag slightly". A fetch begun before a token was in hand may predate
    # its key, so it cannot tell that the key is not there.
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)
    held = HeldJWKS(okta)
    okta.id_token_header = {"kid": "no-such-kid"}
    unknown = asyncio.create_task(sign_in(provider, okta))
    await until(lambda: held.asked == 1)  # its refetch is under way, with the key set as it was

    okta.id_token_header = {}
    okta.rotate_keys()
    rotated = asyncio.create_task(sign_in(provider, okta))
    await until(tokens_issued(okta, 3))
    held.released.set()

    with pytest.raises(TokenValidationError):
        await unknown
    assert (await rotated).sub == ALICE
    assert fetches(okta) == 3


# --- made-up key ids cost a bounded number of fetches -----------------------------------------


async def test_a_flood_of_unknown_kids_is_bounded(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)

    with made_up_kids(okta):
        for _ in range(50):
            await rejected(provider, okta)
            clock.advance(0.1)
        assert fetches(okta) == 1 + JWKS_REFETCH_LIMIT
        assert "key set refetched 6 times in 60 s; not again yet" in caplog.text

        clock.advance(JWKS_REFETCH_WINDOW)  # a rate, not a lock-out: a new window, new fetches
        await rejected(provider, okta)
        assert fetches(okta) == 2 + JWKS_REFETCH_LIMIT

    okta.rotate_keys()
    assert (await sign_in(provider, okta)).sub == ALICE
    assert fetches(okta) == 3 + JWKS_REFETCH_LIMIT


async def test_a_concurrent_flood_of_unknown_kids_shares_fetches(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)
    held = HeldJWKS(okta)

    with made_up_kids(okta):
        signing_in = [asyncio.create_task(sign_in(provider, okta)) for _ in range(50)]
        await until(tokens_issued(okta, 51))
    held.released.set()

    outcomes = await asyncio.gather(*signing_in, return_exceptions=True)
    assert all(isinstance(outcome, TokenValidationError) for outcome in outcomes)
    # The first made-up kid's refetch, then one that all the others, in hand while the first
    # was under way, waited for.
    assert fetches(okta) == 3


async def test_a_kid_found_missing_is_not_looked_up_again_for_a_while(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)
    okta.id_token_header = {"kid": "no-such-kid"}
    await rejected(provider, okta)
    okta.id_token_header = {"kid": "another-kid"}
    await rejected(provider, okta)  # a new kid is looked up right away
    assert fetches(okta) == 3

    for _ in range(10):
        okta.id_token_header = {"kid": "no-such-kid"}
        await rejected(provider, okta)
        okta.id_token_header = {"kid": "another-kid"}
        await rejected(provider, okta)
    assert fetches(okta) == 3

    clock.advance(UNKNOWN_KID_TTL)
    await rejected(provider, okta)
    assert fetches(okta) == 4


async def test_forged_kid_less_tokens_are_bounded(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)
    okta.id_token_header = {"kid": None}
    okta.id_token_signer = "foreign_key"

    for _ in range(20):
        await rejected(provider, okta)
    assert fetches(okta) == 1 + JWKS_REFETCH_LIMIT


async def test_a_failing_refetch_counts_against_the_limit(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)
    okta.answer("jwks", httpx.ConnectError)  # the JWKS endpoint is down from now on

    steps = []
    with made_up_kids(okta):
        for _ in range(20):
            with pytest.raises(SignInError) as caught:
                await sign_in(provider, okta)
            steps.append(caught.value.step)
    assert steps == ["jwks"] * JWKS_REFETCH_LIMIT + ["id_token"] * (20 - JWKS_REFETCH_LIMIT)
    assert fetches(okta) == 1 + JWKS_REFETCH_LIMIT


async def test_only_so_many_missing_kids_are_remembered(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jwks, "UNKNOWN_KIDS_KEPT", 2)
    provider = provider_for(okta, http, clock)
    await sign_in(provider, okta)
    for kid in ("first", "second", "third"):
        okta.id_token_header = {"kid": kid}
        await rejected(provider, okta)
    assert fetches(okta) == 4

    await rejected(provider, okta)  # "third" is remembered
    assert fetches(okta) == 4
    okta.id_token_header = {"kid": "first"}
    await rejected(provider, okta)  # the oldest made room for it, so it is looked up again
    assert fetches(okta) == 5
