"""Risk levels sent to Okta (SPEC 8): integrations, the SETs, durable delivery, the metadata.

A real HTTP server plays the Okta org (`okta_receiver.py`): it fetches the gateway's
`/.well-known/ssf-configuration` and the keys it names, and checks every SET as Okta would.
Level changes are fed to the transmitter directly (`level_changed`, as the risk engine calls
it). The gateways run on a real Redis and a fake clock: backoff and `Retry-After` waits pass by
moving the clock, and a delivery round is run by hand (`round_by_hand`) where a test must know
that nothing more was sent; the background worker, woken by each change, sends the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import Any

import httpx
import pytest
import pytest_asyncio
import respx
from admin_harness import AUTH, admin_client, admin_doc, assert_failure
from clock import FakeClock
from fake_okta import FakeOkta
from harness import IDP_ID, TEAM, EchoUpstream, browser, running, sign_in
from okta_receiver import EVENT_TYPE, Answer, OktaReceiver
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway, create_app
from gateway.authz.app_tokens import ROTATE_AFTER
from gateway.config import parse_settings
from gateway.errors import StoreUnavailableError
from gateway.risk.changes import LevelChange, RiskLevel
from gateway.ssf.outbox import Pending, Queue
from gateway.ssf.transmitter import DeliveryPolicy
from gateway.state.store import Store

# The worker sleeps between rounds until a change wakes it: rounds run when a test says so.
BY_HAND = DeliveryPolicy(poll_interval=3600, first_backoff=30, max_backoff=600)
BUSY = DeliveryPolicy(poll_interval=0.01, first_backoff=30, max_backoff=600)
ALICE = "okta-test:00ualice"
BOB = "okta-test:00ubob"


def change(
    user_uuid: str = ALICE,
    previous: RiskLevel = "low",
    current: RiskLevel = "medium",
    *,
    idp_id: str = IDP_ID,
    email: str = "",
    reason: str = "repeated_denials",
    at: int = 1_764_460_000,
) -> LevelChange:
    email = email or user_uuid.rsplit(":", 1)[1].removeprefix("00u") + "@example.com"
    entity = "admin" if reason == "reset" else "policy"
    return LevelChange(user_uuid, email, idp_id, previous, current, entity, reason, at)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[OktaReceiver]:
    okta = OktaReceiver(TEAM)
    await okta.start()
    yield okta
    await okta.stop()


@pytest.fixture
def redis_store(open_store_of: Callable[[str], Store]) -> Store:
    return open_store_of("redis")


@contextlib.asynccontextmanager
async def gateway_on(
    store: Store, clock: FakeClock, receiver: OktaReceiver, policy: DeliveryPolicy = BY_HAND
) -> AsyncIterator[Gateway]:
    """A gateway on this store and clock whose worker follows `policy`; the receiver fetches
    the transmitter's metadata and keys from it."""
    app = create_app(parse_settings(admin_doc("http://127.0.0.1:9")), store=store, clock=clock)
    async with running(app):
        assert app.runtime is not None
        app.runtime.transmitter.policy = policy
        receiver.gateway = lambda: httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=TEAM
        )
        yield app


def transmitter_of(app: Gateway) -> Any:
    assert app.runtime is not None
    return app.runtime.transmitter


async def create_integration(app: Gateway, tenant_url: str, **extra: Any) -> dict[str, Any]:
    async with admin_client(app) as api:
        body = {"integration_type": "Okta", "tenant_url": tenant_url, "reference_id": IDP_ID}
        response = await api.post("/api/zt_risk_scoring/integrations", json={**body, **extra})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


async def integration_of(app: Gateway, integration_id: str) -> dict[str, Any]:
    async with admin_client(app) as api:
        response = await api.get(f"/api/zt_risk_scoring/integrations/{integration_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


async def waiting(app: Gateway, integration_id: str, user_uuid: str = ALICE) -> list[Pending]:
    return list(await transmitter_of(app).outbox.pending(Queue(integration_id, user_uuid)))


async def tried(app: Gateway, integration_id: str, times: int, user_uuid: str = ALICE) -> None:
    """Until the head of the user's queue has failed `times` times (0: until the queue is
    empty): the worker's round that sent it is over, and a round run by hand cannot race it."""
    async with asyncio.timeout(10):
        while True:
            events = await waiting(app, integration_id, user_uuid)
            if (events[0].attempts >= times) if events else times == 0:
                return
            await asyncio.sleep(0.01)


async def round_by_hand(app: Gateway) -> None:
    """One delivery round over every queue (run again while the worker, woken by a change,
    holds one)."""
    async with asyncio.timeout(10):
        while await transmitter_of(app).deliver_round():
            await asyncio.sleep(0.01)


async def metric(app: Gateway, name: str, **labels: str) -> float:
    async with admin_client(app) as api:
        text = (await api.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


# --- delivery ---------------------------------------------------------------------------------


async def test_a_set_survives_503s_and_a_429_and_arrives_once_in_order(
    redis_store: Store, clock: FakeClock, receiver: OktaReceiver
) -> None:
    receiver.answers = [
        Answer(503),
        Answer(503),
        Answer(429, {"Retry-After": "7"}),
    ]
    async with gateway_on(redis_store, clock, receiver) as app:
        integration = await create_integration(app, receiver.url)
        transmitter = transmitter_of(app)
        await transmitter.level_changed(change(current="medium"))
        await transmitter.level_changed(change(previous="medium", current="high", at=1_764_460_060))
        await receiver.until(1)  # the worker, woken by the change, tried at once: 503
        await tried(app, integration["id"], 1)

        await round_by_hand(app)
        assert len(receiver.received) == 1  # the first backoff (30 s) has not passed
        clock.advance(30)
        await round_by_hand(app)
        assert len(receiver.received) == 2  # 503 again: the backoff doubles
        clock.advance(59)
        await round_by_hand(app)
        assert len(receiver.received) == 2
        clock.advance(1)
        await round_by_hand(app)
        assert len(receiver.received) == 3  # 429, Retry-After: 7
        clock.advance(6)
        await round_by_hand(app)
        assert len(receiver.received) == 3
        clock.advance(1)
        await round_by_hand(app)

        assert receiver.problems == []
        assert [r.answered for r in receiver.received] == [503, 503, 429, 202, 202]
        first = receiver.received[0]
        # every retry sent the very same SET
        assert {r.token for r in receiver.received[:4]} == {first.token}
        assert [
            (r.event["previous_level"], r.event["current_level"]) for r in receiver.accepted
        ] == [
            ("low", "medium"),
            ("medium", "high"),
        ]
        assert len({r.jti for r in receiver.accepted}) == 2
        assert first.event == {
            "subject": {"user": {"format": "email", "email": "alice@example.com"}},
            "current_level": "medium",
            "previous_level": "low",
            "event_timestamp": 1_764_460_000,
            "initiating_entity": "policy",
            "reason_admin": {"en": "repeated_denials"},
        }
        assert first.claims["aud"] == receiver.url and first.claims["iss"] == TEAM

        status = (await integration_of(app, integration["id"]))["delivery"]
        assert status["pending"] == 0
        assert status["last_success_at"] is not None
        assert status["last_error"]["status"] == 429
        assert status["last_error"]["err"] == "rate_limited"
        assert await metric(app, "gateway_ssf_events_sent_total") == 2
        assert await metric(app, "gateway_ssf_delivery_retries_total", reason="server_error") == 2
        assert await metric(app, "gateway_ssf_delivery_retries_total", reason="rate_limited") == 1
        assert await metric(app, "gateway_ssf_events_pending") == 0


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [
        (lambda now: "120", 120),
        (lambda now: formatdate(now + 90, usegmt=True), 90),
        (lambda now: "soon", 30),  # unreadable: the backoff's own wait
    ],
)
async def test_a_503_s_retry_after_is_a_delay_or_a_date(
    redis_store: Store,
    clock: FakeClock,
    receiver: OktaReceiver,
    retry_after: Callable[[float], str],
    wait: int,
) -> None:
    receiver.answers = [Answer(503, {"Retry-After": retry_after(clock())})]
    async with gateway_on(redis_store, clock, receiver) as app:
        integration = await create_integration(app, receiver.url)
        await transmitter_of(app).level_changed(change())
        await receiver.until(1)
        await tried(app, integration["id"], 1)
        clock.advance(wait - 1)
        await round_by_hand(app)
        assert len(receiver.received) == 1
        clock.advance(1)
        await round_by_hand(app)
    assert [r.answered for r in receiver.received] == [503, 202]


async def test_events_waiting_at_a_restart_are_delivered_after_it(
    redis_store: Store, clock: FakeClock, receiver: OktaReceiver
) -> None:
    receiver.answers = [Answer(503), Answer(503)]
    async with gateway_on(redis_store, clock, receiver) as first:
        integration = await create_integration(first, receiver.url)
        await transmitter_of(first).level_changed(change(current="medium"))
        await transmitter_of(first).level_changed(change(previous="medium", current="high"))
        await transmitter_of(first).level_changed(change(BOB, current="high"))
        await receiver.until(2)  # alice's first and bob's: both 503
        await tried(first, integration["id"], 1)
        await tried(first, integration["id"], 1, BOB)
        await round_by_hand(first)
        assert await metric(first, "gateway_ssf_events_pending") == 3
    # The gateway stopped with every event waiting; a new one on the same store sends them
    # once the backoff has passed, the same SETs, alice's in order.
    first_tries = {r.jti for r in receiver.received}
    clock.advance(30)
    async with gateway_on(redis_store, clock, receiver, BUSY) as second:
        await receiver.until(5)
        await round_by_hand(second)
        assert await metric(second, "gateway_ssf_events_pending") == 0
    assert receiver.problems == []
    assert len(receiver.received) == 5
    assert first_tries < {r.jti for r in receiver.accepted}
    alice = [r.event for r in receiver.accepted if "alice" in r.event["subject"]["user"]["email"]]
    assert [e["current_level"] for e in alice] == ["medium", "high"]


async def test_two_instances_send_each_event_once_and_each_user_s_in_order(
    redis_store: Store, open_store_of: Callable[[str], Store], receiver: OktaReceiver
) -> None:
    receiver.delay = 0.02  # a slow Okta: the other instance's rounds run during each send
    clock = FakeClock()
    async with (
        gateway_on(redis_store, clock, receiver, BUSY) as one,
        gateway_on(open_store_of("redis"), clock, receiver, BUSY) as two,
    ):
        await create_integration(one, receiver.url)
        levels: list[RiskLevel] = ["low", "medium", "high", "low", "high"]
        for i, (previous, current) in enumerate(itertools.pairwise(levels)):
            for user in (ALICE, BOB):
                instance = one if i % 2 else two
                await transmitter_of(instance).level_changed(change(user, previous, current))
        await receiver.until(8)
        await asyncio.sleep(0.2)  # both workers ran many more rounds: nothing else is sent
    assert receiver.problems == []
    assert len(receiver.received) == 8
    assert len({r.jti for r in receiver.received}) == 8
    for email in ("alice@example.com", "bob@example.com"):
        mine = [r.event for r in receiver.received if r.event["subject"]["user"]["email"] == email]
        assert [e["current_level"] for e in mine] == levels[1:]


async def test_a_400_is_recorded_with_okta_s_error_and_not_retried(
    redis_store: Store, clock: FakeClock, receiver: OktaReceiver
) -> None:
    refusal = {"err": "invalid_request", "description": "The subject is not a known user."}
    receiver.answers = [Answer(400, body=refusal)]
    async with gateway_on(redis_store, clock, receiver) as app:
        integration = await create_integration(app, receiver.url)
        await transmitter_of(app).level_changed(change())
        await receiver.until(1)
        await tried(app, integration["id"], 0)
        clock.advance(86400)
        await round_by_hand(app)
        assert len(receiver.received) == 1
        status = (await integration_of(app, integration["id"]))["delivery"]
        assert status == {
            "pending": 0,
            "last_success_at": None,
            "last_error": {
                "at": status["last_error"]["at"],
                "status": 400,
                "err": "invalid_request",
                "description": "The subject is not a known user.",
            },
        }
        assert await metric(app, "gateway_ssf_events_failed_total", reason="rejected") == 1
    assert receiver.problems == []


async def test_an_event_undelivered_for_24_hours_is_dropped_and_recorded(
    redis_store: Store, clock: FakeClock, receiver: OktaReceiver
) -> None:
    async with gateway_on(redis_store, clock, receiver) as app:
        # Nothing listens there: every try fails to connect.
        integration = await create_integration(app, "http://127.0.0.1:9")
        transmitter = transmitter_of(app)
        await transmitter.level_changed(change())
        await tried(app, integration["id"], 1)
        status = (await integration_of(app, integration["id"]))["delivery"]
        assert status["pending"] == 1
        assert status["last_error"]["err"] == "network_error"
        assert status["last_error"]["status"] is None
        clock.advance(86400)
        await round_by_hand(app)
        status = (await integration_of(app, integration["id"]))["delivery"]
        assert status["pending"] == 0
        assert status["last_error"]["err"] == "expired"
        assert await metric(app, "gateway_ssf_events_failed_total", reason="expired") == 1
        assert await metric(app, "gateway_ssf_delivery_retries_total", reason="network") >= 1


async def test_the_worker_keeps_going_through_a_store_outage(
    open_store_of: Callable[[str], Store],
    clock: FakeClock,
    receiver: OktaReceiver,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = open_store_of("memory")
    receiver.answers = [Answer(503)]
    async with gateway_on(store, clock, receiver, BUSY) as app:
        integration = await create_integration(app, receiver.url)
        await transmitter_of(app).level_changed(change())
        await receiver.until(1)
        await tried(app, integration["id"], 1)

        async def down(*args: object) -> None:
            raise StoreUnavailableError("store down (test)")

        monkeypatch.setattr(store, "set_members", down)
        clock.advance(30)
        async with asyncio.timeout(10):
            while "ssf delivery round failed: store down (test)" not in caplog.text:
                await asyncio.sleep(0.01)
        monkeypatch.undo()
        await receiver.until(2)  # the same worker, once the store is back
    assert [r.answered for r in receiver.received] == [503, 202]


async def test_only_active_integrations_of_the_user_s_idp_get_events(
    redis_store: Store, clock: FakeClock, receiver: OktaReceiver
) -> None:
    async with gateway_on(redis_store, clock, receiver) as app:
        paused = await create_integration(app, receiver.url, active=False)
        transmitter = transmitter_of(app)
        await transmitter.level_changed(change())  # the only integration is inactive
        await transmitter.level_changed(change(BOB, idp_id="another-idp"))
        await transmitter.level_changed(change(idp_id=""))  # no IdP known: no integration
        await round_by_hand(app)
        assert receiver.received == []
        assert (await integration_of(app, paused["id"]))["delivery"]["pending"] == 0

        # Made active, the next change is sent. Paused, an event that waits for a retry is
        # not sent, however long it waits; active again, it is.
        receiver.answers = [Answer(202), Answer(503)]
        async with admin_client(app) as api:
            path = f"/api/zt_risk_scoring/integrations/{paused['id']}"
            body = {"tenant_url": receiver.url, "reference_id": IDP_ID, "active": True}
            assert (await api.put(path, json=body)).status_code == 200
            await transmitter.level_changed(change())
            await receiver.until(1)
            await transmitter.level_changed(change(previous="medium", current="high"))
            await receiver.until(2)
            await tried(app, paused["id"], 1)
            assert (await api.put(path, json={**body, "active": False})).status_code == 200
            clock.advance(3600)
            await round_by_hand(app)
            assert len(receiver.received) == 2
            assert (await integration_of(app, paused["id"]))["delivery"]["pending"] == 1
            assert (await api.put(path, json=body)).status_code == 200
            await round_by_hand(app)
        assert [r.answered for r in receiver.received] == [202, 503, 202]
    assert receiver.problems == []


async def test_another_tenant_url_drops_the_events_addressed_to_the_old_one(
    redis_store: Store, clock: FakeClock, receiver: OktaReceiver
) -> None:
    receiver.answers = [Answer(503)]
    async with gateway_on(redis_store, clock, receiver) as app:
        integration = await create_integration(app, receiver.url)
        await transmitter_of(app).level_changed(change())
        await receiver.until(1)
        await tried(app, integration["id"], 1)
        async with admin_client(app) as api:
            path = f"/api/zt_risk_scoring/integrations/{integration['id']}"
            body = {"tenant_url": "http://localhost:9", "reference_id": IDP_ID}
            replaced = (await api.put(path, json=body)).json()["result"]
        assert replaced["delivery"]["pending"] == 0
        # A change of the same org (active toggled) keeps what waits.
        await transmitter_of(app).level_changed(change(previous="medium", current="high"))
        async with admin_client(app) as api:
            paused = (await api.put(path, json={**body, "active": False})).json()["result"]
        assert paused["delivery"]["pending"] == 1


async def test_deleting_an_integration_forgets_its_waiting_events(
    redis_store: Store, clock: FakeClock, receiver: OktaReceiver
) -> None:
    receiver.answers = [Answer(503)]
    async with gateway_on(redis_store, clock, receiver) as app:
        integration = await create_integration(app, receiver.url)
        await transmitter_of(app).level_changed(change())
        await receiver.until(1)
        await tried(app, integration["id"], 1)
        async with admin_client(app) as api:
            path = f"/api/zt_risk_scoring/integrations/{integration['id']}"
            assert (await api.delete(path)).json()["result"] == {"id": integration["id"]}
            assert (await api.get(path)).status_code == 404
        clock.advance(3600)
        await round_by_hand(app)
        assert len(receiver.received) == 1


# --- end to end: a behaviour trips, Okta hears of it --------------------------------------------


async def test_a_user_denied_ten_times_and_reset_is_reported_to_okta(
    redis_store: Store, receiver: OktaReceiver, upstream: EchoUpstream
) -> None:
    # Okta's sign-in is mocked (respx); the receiver is reached for real over loopback.
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        okta = FakeOkta(router)
        okta.add_user("00ubob", "bob@example.com", "Bob Example", ["Sales", "Everyone"])
        settings = parse_settings(admin_doc(upstream.url))
        app = create_app(settings, store=redis_store)
        async with running(app), browser(app) as bob:
            assert app.runtime is not None
            app.runtime.transmitter.policy = BUSY
            receiver.gateway = lambda: httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=TEAM
            )
            await create_integration(app, receiver.url)
            await sign_in(bob, okta, "00ubob", url="/")  # not in Engineering: team-app denies
            for _ in range(10):
                assert (await bob.get("/docs")).status_code == 403
            await receiver.until(1)
            # An operator's reset is sent too, as the admin's doing.
            async with admin_client(app) as api:
                [user] = (await api.get("/api/users")).json()["result"]
                reset = await api.post(f"/api/zt_risk_scoring/{user['id']}/reset")
                assert reset.status_code == 200, reset.text
            await receiver.until(2)
    assert receiver.problems == []
    tripped, reset_event = (r.event for r in receiver.received)
    assert tripped["subject"] == {"user": {"format": "email", "email": "bob@example.com"}}
    assert (tripped["previous_level"], tripped["current_level"]) == ("low", "medium")
    assert tripped["initiating_entity"] == "policy"
    assert tripped["reason_admin"] == {"en": "repeated_denials"}
    assert (reset_event["previous_level"], reset_event["current_level"]) == ("medium", "low")
    assert reset_event["initiating_entity"] == "admin"
    assert reset_event["reason_admin"] == {"en": "reset"}


# --- the metadata and the keys ----------------------------------------------------------------


async def test_the_metadata_and_keys_are_public_on_the_team_host_only(
    redis_store: Store, clock: FakeClock, receiver: OktaReceiver
) -> None:
    async with gateway_on(redis_store, clock, receiver) as app:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=TEAM
        ) as anonymous:
            config = (await anonymous.get("/.well-known/ssf-configuration")).json()
            assert config == {
                "spec_version": "1_0",
                "issuer": TEAM,
                "jwks_uri": f"{TEAM}/cdn-cgi/access/ssf/jwks",
                "delivery_methods_supported": ["urn:ietf:rfc:8935"],
                "events_supported": [EVENT_TYPE],
            }
            ssf_keys = (await anonymous.get("/cdn-cgi/access/ssf/jwks")).json()["keys"]
            app_keys = (await anonymous.get("/cdn-cgi/access/certs")).json()["keys"]
            assert [k["kty"] for k in ssf_keys] == ["RSA"]
            assert "d" not in ssf_keys[0]  # the public half only
            assert {k["kid"] for k in ssf_keys}.isdisjoint(k["kid"] for k in app_keys)
            on_app_host = await anonymous.get("https://wiki.example.com/cdn-cgi/access/ssf/jwks")
            assert on_app_host.status_code == 404

        # The keys rotate like the app-token keys; the old one is still published.
        integration = await create_integration(app, receiver.url)
        assert integration["well_known_url"] == f"{TEAM}/.well-known/ssf-configuration"
        await transmitter_of(app).level_changed(change())
        await receiver.until(1)
        clock.advance(ROTATE_AFTER)
        await transmitter_of(app).level_changed(change(previous="medium", current="high"))
        await receiver.until(2)
        first, second = receiver.received
        assert first.header["kid"] != second.header["kid"]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=TEAM
        ) as anonymous:
            published = (await anonymous.get("/cdn-cgi/access/ssf/jwks")).json()["keys"]
        assert [k["kid"] for k in published] == [second.header["kid"], first.header["kid"]]
    assert receiver.problems == []


# --- the admin API ----------------------------------------------------------------------------


BASE_URL_ONLY = "tenant_url: must be the org's base URL, like https://example.okta.com"
NOT_A_URL = "must be an absolute https or http URL"
NOT_OKTA = "must be one of 'Okta', not 'Azure'"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"tenant_url": "http://example.okta.com"}, 400, "tenant_url: must be an https URL"),
        ({"tenant_url": "https://example.okta.com/oauth2/default"}, 400, BASE_URL_ONLY),
        ({"tenant_url": "https://example.okta.com?x=1"}, 400, BASE_URL_ONLY),
        ({"tenant_url": "https://user@example.okta.com"}, 400, BASE_URL_ONLY),
        ({"tenant_url": "example.okta.com"}, 400, f"tenant_url: {NOT_A_URL}"),
        ({"tenant_url": None}, 400, "tenant_url: is required"),
        ({"reference_id": "no-such-idp"}, 422, "reference_id: no identity provider 'no-such-idp'"),
        ({"reference_id": None}, 400, "reference_id: is required"),
        ({"reference_id": 7}, 400, "reference_id: must be a string"),
        ({"active": "yes"}, 400, "active: must be true or false"),
        ({"integration_type": "Azure"}, 400, f"integration_type: {NOT_OKTA}"),
        ({"secret": "x"}, 400, "secret: unknown key"),
    ],
)  # fmt: skip
async def test_a_bad_integration_is_refused_and_nothing_is_stored(
    redis_store: Store,
    clock: FakeClock,
    receiver: OktaReceiver,
    body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    error = "unprocessable" if status == 422 else "invalid_config"
    good = {"integration_type": "Okta", "tenant_url": "https://example.okta.com"}
    document = {**good, "reference_id": IDP_ID, **body}
    document = {k: v for k, v in document.items() if v is not None}
    async with gateway_on(redis_store, clock, receiver) as app, admin_client(app) as api:
        created = await create_integration(app, "https://example.okta.com")
        path = "/api/zt_risk_scoring/integrations"
        assert assert_failure(await api.post(path, json=document), status, error) == [message]
        refused = await api.put(f"{path}/{created['id']}", json=document)
        assert assert_failure(refused, status, error) == [message]
        listed = (await api.get(path)).json()["result"]
        assert listed == [created]


async def test_integrations_through_the_api(
    redis_store: Store, clock: FakeClock, receiver: OktaReceiver
) -> None:
    async with gateway_on(redis_store, clock, receiver) as app, admin_client(app) as api:
        path = "/api/zt_risk_scoring/integrations"
        created = await create_integration(app, "https://Example.okta.com/")
        assert created == {
            "id": created["id"],
            "integration_type": "Okta",
            "tenant_url": "https://example.okta.com",
            "reference_id": IDP_ID,
            "active": True,
            "created_at": "2025-11-30T00:00:00Z",
            "well_known_url": f"{TEAM}/.well-known/ssf-configuration",
            "delivery": {"pending": 0, "last_success_at": None, "last_error": None},
        }
        body = {"tenant_url": "https://other.okta.com", "reference_id": IDP_ID, "active": False}
        replaced = (await api.put(f"{path}/{created['id']}", json=body)).json()["result"]
        assert replaced == {**created, "tenant_url": "https://other.okta.com", "active": False}
        assert (await api.get(f"{path}/{created['id']}")).json()["result"] == replaced
        for method in ("GET", "PUT", "DELETE"):
            missing = await api.request(method, f"{path}/nope", json=body)
            assert_failure(missing, 404, "not_found")
        assert_failure(
            await api.post(path, content=b"[]", headers=AUTH), 415, "unsupported_media_type"
        )
        unauthenticated = await api.get(path, headers={"Authorization": "Bearer wrong"})
        assert_failure(unauthenticated, 401, "unauthorized")
