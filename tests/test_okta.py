"""Okta specifics: issuer / discovery URLs per authorization server, and the Groups API."""

from __future__ import annotations

import httpx
import pytest
import respx
from clock import FakeClock
from fake_okta import API_TOKEN, BASE, FakeOkta

from gateway.authn.providers.okta_api import discovery_url, expected_issuer, fetch_user_groups
from gateway.errors import IdPError

GROUPS = [f"group-{i}" for i in range(5)]


class Sleeper:
    """An injectable `sleep` that records each wait and moves the fake clock instead."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def sleep(clock: FakeClock) -> Sleeper:
    return Sleeper(clock)


@pytest.fixture
def okta(router: respx.MockRouter, clock: FakeClock) -> FakeOkta:
    okta = FakeOkta(router, groups_page_size=2, clock=clock)
    okta.add_user("00u1", "alice@example.com", "Alice Example", GROUPS)
    return okta


def test_org_authorization_server_urls() -> None:
    assert expected_issuer(BASE, "") == BASE
    assert discovery_url(BASE, "") == f"{BASE}/.well-known/openid-configuration"


@pytest.mark.parametrize("server_id", ["default", "aus8xk2s0b0rA1b2c3"])
def test_custom_authorization_server_urls(server_id: str) -> None:
    assert expected_issuer(BASE, server_id) == f"{BASE}/oauth2/{server_id}"
    assert (
        discovery_url(BASE + "/", server_id)
        == f"{BASE}/oauth2/{server_id}/.well-known/openid-configuration"
    )


async def test_groups_read_over_several_pages(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    names, pages = await fetch_user_groups(http, BASE, API_TOKEN, "00u1", clock=clock)

    assert names == GROUPS
    assert pages == 3
    requests = [call.request for call in okta.routes["groups"].calls]
    assert all(r.headers["authorization"] == f"SSWS {API_TOKEN}" for r in requests)
    assert all(r.headers["accept"] == "application/json" for r in requests)
    # The second and third URLs are exactly the `next` links Okta gave, cursor and all.
    assert str(requests[1].url) == f"{BASE}/api/v1/users/00u1/groups?after=00g000001&limit=2"
    assert str(requests[2].url) == f"{BASE}/api/v1/users/00u1/groups?after=00g000003&limit=2"


async def test_link_header_with_several_links_in_one_value(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    first = f"{BASE}/api/v1/users/00u1/groups"
    second = f"{BASE}/api/v1/users/00u1/groups?after=00gX&limit=200"
    # respx matches a URL without a query against any query: the more specific route first.
    router.get(second).respond(200, json=[{"id": "00gX", "profile": {"name": "B"}}])
    router.get(first).respond(
        200,
        headers={"Link": f'<{first}?limit=200>; rel="self", <{second}>; rel="next"'},
        json=[{"id": "00g1", "profile": {"name": "A"}}],
    )

    assert await fetch_user_groups(http, BASE, API_TOKEN, "00u1") == (["A", "B"], 2)


async def test_next_link_pointing_back_is_not_followed(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    url = f"{BASE}/api/v1/users/00u1/groups"
    router.get(url).respond(
        200,
        headers={"Link": f'<{url}>; rel="next"'},
        json=[{"id": "00g1", "profile": {"name": "A"}}],
    )

    with pytest.raises(IdPError):
        await fetch_user_groups(http, BASE, API_TOKEN, "00u1")


async def test_next_link_outside_the_org_is_not_followed(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    # Following it would hand the SSWS token to another host.
    router.get(f"{BASE}/api/v1/users/00u1/groups").respond(
        200,
        headers={"Link": '<https://evil.example.com/steal>; rel="next"'},
        json=[{"id": "00g1", "profile": {"name": "A"}}],
    )

    with pytest.raises(IdPError) as caught:
        await fetch_user_groups(http, BASE, API_TOKEN, "00u1")
    assert caught.value.step == "groups"


async def test_rate_limited_then_answered(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock, sleep: Sleeper
) -> None:
    okta.rate_limit(times=1, reset_after=5)

    names, pages = await fetch_user_groups(http, BASE, API_TOKEN, "00u1", clock=clock, sleep=sleep)

    assert names == GROUPS
    assert pages == 3
    assert sleep.slept == [5.0]  # waited exactly until X-Rate-Limit-Reset
    assert okta.routes["groups"].call_count == 4


async def test_rate_limited_for_good_gives_up_within_the_budget(
    okta: FakeOkta, http: httpx.AsyncClient, clock: FakeClock, sleep: Sleeper
) -> None:
    okta.rate_limit(times=None, reset_after=4)

    with pytest.raises(IdPError) as caught:
        await fetch_user_groups(http, BASE, API_TOKEN, "00u1", clock=clock, sleep=sleep, budget=10)

    assert caught.value.step == "groups"
    assert "rate limit" in caught.value.description
    assert sleep.slept == [4.0, 4.0]  # a third wait would pass the 10 s budget
    assert sum(sleep.slept) <= 10


async def test_rate_limit_reset_in_the_past_still_waits(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: FakeClock, sleep: Sleeper
) -> None:
    router.get(f"{BASE}/api/v1/users/00u1/groups").mock(
        side_effect=[
            httpx.Response(429, headers={"X-Rate-Limit-Reset": str(int(clock()) - 30)}),
            httpx.Response(200, json=[]),
        ]
    )

    assert await fetch_user_groups(http, BASE, API_TOKEN, "00u1", clock=clock, sleep=sleep) == (
        [],
        1,
    )
    assert sleep.slept == [1.0]


async def test_invalid_api_token(okta: FakeOkta, http: httpx.AsyncClient) -> None:
    with pytest.raises(IdPError) as caught:
        await fetch_user_groups(http, BASE, "wrong-token", "00u1")
    assert "the Okta API token is invalid" in caught.value.description
    assert caught.value.step == "groups"
    assert caught.value.hint


async def test_api_token_without_permission(okta: FakeOkta, http: httpx.AsyncClient) -> None:
    okta.answer(
        "groups",
        FakeOkta.api_error(403, "E0000006", "You do not have permission to perform the action"),
    )
    with pytest.raises(IdPError) as caught:
        await fetch_user_groups(http, BASE, API_TOKEN, "00u1")
    assert "the Okta API token lacks permission to read groups" in caught.value.description


async def test_user_not_found(okta: FakeOkta, http: httpx.AsyncClient) -> None:
    with pytest.raises(IdPError) as caught:
        await fetch_user_groups(http, BASE, API_TOKEN, "00unknown")
    assert "user not found in Okta" in caught.value.description


async def test_other_errors_use_the_error_summary(okta: FakeOkta, http: httpx.AsyncClient) -> None:
    okta.answer("groups", FakeOkta.api_error(400, "E0000001", "Api validation failed: limit"))
    with pytest.raises(IdPError) as caught:
        await fetch_user_groups(http, BASE, API_TOKEN, "00u1")
    assert "Api validation failed: limit" in caught.value.description


@pytest.mark.parametrize(
    ("failure", "status"), [(httpx.ReadTimeout, 504), (httpx.ConnectError, 503)]
)
async def test_unreachable_api(
    okta: FakeOkta, http: httpx.AsyncClient, failure: type[httpx.TransportError], status: int
) -> None:
    okta.answer("groups", failure)
    with pytest.raises(IdPError) as caught:
        await fetch_user_groups(http, BASE, API_TOKEN, "00u1")
    assert (caught.value.status, caught.value.step) == (status, "groups")
