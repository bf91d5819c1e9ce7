"""The admin API's protocol: the admin token, the envelope on every answer, request bodies.

Routes' own behaviour is in the other `test_admin_*` files; here every route is exercised for
what they all share (401 without the token, 415/413/400 for bad bodies), and the API as a whole
for the answers that come from no handler (404 route, 405, 503, a bug).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio
from admin_harness import AUTH, TOKEN, assert_failure
from harness import TEAM, running, settings_doc
from starlette.requests import Request

from gateway.admin import OPERATIONS
from gateway.admin.api import Operation
from gateway.admin.envelope import MAX_BODY, read_json
from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.errors import GatewayError, StoreUnavailableError
from gateway.state.store import Store
from gateway.state.store.memory import MemoryStore

IDP_BODY = {
    "name": "my example idp",
    "type": "okta",
    "config": {
        "client_id": "0oa1",
        "client_secret": "s3cret",
        "okta_account": "https://dev-1.okta.com",
    },
}
APP_BODY = {
    "domain": "new.example.com",
    "upstream": "http://127.0.0.1:9",
    "policies": [{"name": "All", "decision": "allow", "include": [{"everyone": {}}]}],
}
INTEGRATIONS = "/api/zt_risk_scoring/integrations"
INTEGRATION_BODY = {"tenant_url": "https://example.okta.com", "reference_id": "okta-test"}
# One concrete request per operation; path ids name objects that exist in `api` below
# ("{api_idp}", "{api_app}": made through the API, so they can be replaced).
CALLS: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {
    ("GET", "/identity_providers"): ("/api/identity_providers", None),
    ("POST", "/identity_providers"): ("/api/identity_providers", IDP_BODY),
    ("GET", "/identity_providers/{idp_id}"): ("/api/identity_providers/okta-test", None),
    ("PUT", "/identity_providers/{idp_id}"): ("/api/identity_providers/{api_idp}", IDP_BODY),
    ("DELETE", "/identity_providers/{idp_id}"): ("/api/identity_providers/okta-test", None),
    ("POST", "/identity_providers/{idp_id}/refresh_scim_secret"): (
        "/api/identity_providers/okta-test/refresh_scim_secret",
        None,
    ),
    ("GET", "/identity_providers/{idp_id}/scim/users"): (
        "/api/identity_providers/okta-test/scim/users",
        None,
    ),
    ("GET", "/identity_providers/{idp_id}/scim/groups"): (
        "/api/identity_providers/okta-test/scim/groups",
        None,
    ),
    ("GET", "/apps"): ("/api/apps", None),
    ("POST", "/apps"): ("/api/apps", APP_BODY),
    ("GET", "/apps/{app_id}"): ("/api/apps/wiki", None),
    ("PUT", "/apps/{app_id}"): ("/api/apps/{api_app}", APP_BODY),
    ("DELETE", "/apps/{app_id}"): ("/api/apps/wiki", None),
    ("POST", "/apps/{app_id}/revoke_tokens"): ("/api/apps/wiki/revoke_tokens", None),
    ("GET", "/apps/{app_id}/explain"): ("/api/apps/wiki/explain?email=alice@example.com", None),
    ("GET", "/users"): ("/api/users", None),
    ("GET", "/users/{user_id}/last_seen_identity"): ("/api/users/nope/last_seen_identity", None),
    ("GET", "/users/{user_id}/active_sessions"): ("/api/users/nope/active_sessions", None),
    ("POST", "/revoke_user"): ("/api/revoke_user", {"email": "alice@example.com"}),
    ("GET", "/service_tokens"): ("/api/service_tokens", None),
    ("POST", "/service_tokens"): ("/api/service_tokens", {"name": "ci"}),
    ("DELETE", "/service_tokens/{token_id}"): ("/api/service_tokens/nope", None),
    ("GET", "/keys"): ("/api/keys", None),
    ("POST", "/keys/rotate"): ("/api/keys/rotate", None),
    ("GET", "/logs/scim"): ("/api/logs/scim", None),
    ("GET", "/logs/access"): ("/api/logs/access", None),
    ("GET", "/logs/audit"): ("/api/logs/audit", None),
    ("GET", "/zt_risk_scoring/integrations"): (INTEGRATIONS, None),
    ("POST", "/zt_risk_scoring/integrations"): (INTEGRATIONS, INTEGRATION_BODY),
    ("GET", "/zt_risk_scoring/integrations/{integration_id}"): (
        f"{INTEGRATIONS}/{{api_integration}}",
        None,
    ),
    ("PUT", "/zt_risk_scoring/integrations/{integration_id}"): (
        f"{INTEGRATIONS}/{{api_integration}}",
        INTEGRATION_BODY,
    ),
    ("DELETE", "/zt_risk_scoring/integrations/{integration_id}"): (
        f"{INTEGRATIONS}/{{api_integration}}",
        None,
    ),
    ("GET", "/zt_risk_scoring/behaviors"): ("/api/zt_risk_scoring/behaviors", None),
    ("PUT", "/zt_risk_scoring/behaviors"): (
        "/api/zt_risk_scoring/behaviors",
        {"behaviors": {"new_network": {"enabled": True, "risk_level": "low"}}},
    ),
    ("GET", "/zt_risk_scoring/summary"): ("/api/zt_risk_scoring/summary", None),
    ("GET", "/zt_risk_scoring/{user_id}"): ("/api/zt_risk_scoring/nope", None),
    ("POST", "/zt_risk_scoring/{user_id}/reset"): ("/api/zt_risk_scoring/nope/reset", None),
}
PROTECTED = [op for op in OPERATIONS if not op.public]
WITH_BODY = [op for op in PROTECTED if CALLS[(op.method, op.path)][1] is not None]


def op_id(op: Operation) -> str:
    return f"{op.method} {op.path}"


class FlakyStore:
    """A memory store that can be switched off: every call then fails like a dead Redis."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.down = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not self.down or name == "close":
            return method

        async def failing(*args: object, **kwargs: object) -> None:
            raise StoreUnavailableError("store down (test)")

        return failing


def admin_settings_doc(admin_token: str = TOKEN) -> dict[str, Any]:
    doc = settings_doc("http://127.0.0.1:9")
    doc["gateway"]["admin_token"] = admin_token
    return doc


@pytest.fixture
def flaky() -> FlakyStore:
    return FlakyStore()


@pytest_asyncio.fixture
async def gateway(flaky: FlakyStore) -> AsyncIterator[Gateway]:
    settings = parse_settings(admin_settings_doc())
    async with running(create_app(settings, store=cast(Store, flaky))) as app:
        yield app


@pytest_asyncio.fixture
async def api(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url=TEAM, headers=AUTH) as client:
        yield client


@pytest_asyncio.fixture
async def made(api: httpx.AsyncClient) -> dict[str, str]:
    """Ids of an IdP and an app made through the API (replaceable, unlike the file's), and of
    a risk sharing integration."""
    idp = await api.post("/api/identity_providers", json=IDP_BODY)
    app = await api.post("/api/apps", json={**APP_BODY, "domain": "made.example.com"})
    integration = await api.post(INTEGRATIONS, json=INTEGRATION_BODY)
    return {
        "api_idp": idp.json()["result"]["id"],
        "api_app": app.json()["result"]["id"],
        "api_integration": integration.json()["result"]["id"],
    }


def target(op: Operation, made: dict[str, str]) -> tuple[str, dict[str, Any] | None]:
    path, body = CALLS[(op.method, op.path)]
    return path.format(**made), body


async def call(
    client: httpx.AsyncClient, op: Operation, made: dict[str, str], **kwargs: Any
) -> httpx.Response:
    path, body = target(op, made)
    return await client.request(op.method, path, json=body, **kwargs)


def test_every_operation_has_a_call_here() -> None:
    assert {(op.method, op.path) for op in PROTECTED} == set(CALLS)


# --- the admin token ------------------------------------------------------------------------


@pytest.mark.parametrize("op", PROTECTED, ids=op_id)
async def test_every_route_needs_the_token(
    api: httpx.AsyncClient, made: dict[str, str], op: Operation
) -> None:
    missing = await call(api, op, made, headers={"Authorization": ""})
    assert_failure(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = await call(api, op, made, headers={"Authorization": f"Bearer {TOKEN}x"})
    assert assert_failure(wrong, 401, "unauthorized") == ["Invalid admin token."]


@pytest.mark.parametrize(
    "authorization",
    [TOKEN, f"Basic {TOKEN}", "Bearer", "Bearer ", f"Bearer {TOKEN[:-1]}", f"Token {TOKEN}"],
)
async def test_only_a_bearer_token_that_matches_is_accepted(
    api: httpx.AsyncClient, authorization: str
) -> None:
    response = await api.get("/api/apps", headers={"Authorization": authorization})
    assert_failure(response, 401, "unauthorized")


async def test_the_scheme_is_case_insensitive(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/apps", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200


async def test_no_admin_token_configured_means_no_admin_api() -> None:
    settings = parse_settings(admin_settings_doc(admin_token=""))
    async with running(create_app(settings, store=MemoryStore())) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEAM) as client:
            for path in ("/api/apps", "/api/openapi.json", "/api/nope"):
                for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
                    response = await client.get(path, headers=headers)
                    assert_failure(response, 404, "no_route")


async def test_openapi_document_needs_no_token(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/openapi.json", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1")


# --- the envelope ---------------------------------------------------------------------------


async def test_success_envelope(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/apps")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"success", "errors", "messages", "result"}
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []


async def test_unknown_route_is_a_404_envelope(api: httpx.AsyncClient) -> None:
    for path in ("/api/", "/api/nope", "/api/apps/wiki/nope", "/api/apps/"):
        assert_failure(await api.get(path), 404, "no_route")


async def test_unknown_route_without_the_token_is_a_401(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/nope", headers={"Authorization": ""})
    assert_failure(response, 401, "unauthorized")


async def test_an_ambiguous_path_is_a_400_envelope(api: httpx.AsyncClient) -> None:
    # Refused before any routing (routing.is_ambiguous_path), yet still in the envelope.
    for path in ("/api/apps/a%5Cb", "/api/apps/%2E%2E", "/api/apps/%2E"):
        assert_failure(await api.get(path), 400, "invalid_path")


async def test_wrong_method_is_a_405_with_allow(api: httpx.AsyncClient) -> None:
    response = await api.patch("/api/apps/wiki", json={})
    assert assert_failure(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, PUT, DELETE"
    response = await api.get("/api/keys/rotate")
    assert_failure(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


async def test_store_down_is_a_503_envelope(api: httpx.AsyncClient, flaky: FlakyStore) -> None:
    flaky.down = True
    assert_failure(await api.post("/api/apps", json=APP_BODY), 503, "store_unavailable")
    assert_failure(await api.get("/api/keys"), 503, "store_unavailable")
    assert_failure(await api.get("/api/service_tokens"), 503, "store_unavailable")
    assert_failure(await api.get(INTEGRATIONS), 503, "store_unavailable")
    assert_failure(await api.post(INTEGRATIONS, json=INTEGRATION_BODY), 503, "store_unavailable")


async def test_a_bug_is_a_500_envelope_with_a_reference(
    gateway: Gateway,
    api: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: object) -> list[object]:
        raise RuntimeError("boom")

    assert gateway.runtime is not None
    monkeypatch.setattr(gateway.runtime.service_tokens, "all", broken)
    response = await api.get("/api/service_tokens")
    (message,) = assert_failure(response, 500, "internal_error")
    assert "boom" not in response.text and "Traceback" not in response.text
    reference = message.split("reference ")[1].rstrip(").")
    assert any(reference in r.getMessage() for r in caplog.records)


# --- request bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("op", WITH_BODY, ids=op_id)
async def test_a_body_must_be_sent_as_json(
    api: httpx.AsyncClient, made: dict[str, str], op: Operation
) -> None:
    path, _ = target(op, made)
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = {"Content-Type": content_type} if content_type else {}
        response = await api.request(op.method, path, content=b'{"name": "x"}', headers=headers)
        assert_failure(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("op", WITH_BODY, ids=op_id)
async def test_malformed_json_is_a_400(
    api: httpx.AsyncClient, made: dict[str, str], op: Operation
) -> None:
    path, _ = target(op, made)
    headers = {"Content-Type": "application/json"}
    for raw in (b"{", b"", b'{"name": NaN}', b"\xff\xfe", b'{"a": 1} x'):
        response = await api.request(op.method, path, content=raw, headers=headers)
        assert_failure(response, 400, "invalid_json")


async def test_deeply_nested_json_is_a_400_not_a_crash() -> None:
    # Read directly: Python's JSON parser gives up on this with RecursionError, not ValueError.
    body = b"[" * 100_000
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        message = {"type": "http.request", "body": b"" if sent else body, "more_body": False}
        sent = True
        return message

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/apps",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    with pytest.raises(GatewayError) as refused:
        await read_json(Request(scope, receive))
    assert refused.value.status == 400 and refused.value.error == "invalid_json"


@pytest.mark.parametrize("op", WITH_BODY, ids=op_id)
async def test_a_body_must_be_an_object(
    api: httpx.AsyncClient, made: dict[str, str], op: Operation
) -> None:
    path, _ = target(op, made)
    for raw in (b"[]", b'"x"', b"1", b"null"):
        headers = {"Content-Type": "application/json"}
        response = await api.request(op.method, path, content=raw, headers=headers)
        assert assert_failure(response, 400, "invalid_json") == [
            "The request body must be a JSON object."
        ]


@pytest.mark.parametrize("op", WITH_BODY, ids=op_id)
async def test_an_oversized_body_is_a_413(
    api: httpx.AsyncClient, made: dict[str, str], op: Operation
) -> None:
    path, _ = target(op, made)
    big = b'{"name": "' + b"x" * MAX_BODY + b'"}'
    headers = {"Content-Type": "application/json"}
    response = await api.request(op.method, path, content=big, headers=headers)
    assert_failure(response, 413, "body_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(3):
            yield b" " * (MAX_BODY // 2)

    response = await api.request(op.method, path, content=chunks(), headers=headers)
    assert_failure(response, 413, "body_too_large")


async def test_a_body_of_exactly_the_limit_is_read(api: httpx.AsyncClient) -> None:
    body = b'{"name": "ci"}'
    padded = body + b" " * (MAX_BODY - len(body))
    response = await api.post(
        "/api/service_tokens", content=padded, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text


async def test_json_content_type_variants_are_accepted(api: httpx.AsyncClient) -> None:
    for content_type in ("application/json; charset=utf-8", "Application/JSON"):
        response = await api.post(
            "/api/service_tokens", content=b'{"name": "ci"}', headers={"Content-Type": content_type}
        )
        assert response.status_code == 201, response.text


async def test_a_body_on_a_bodiless_route_is_ignored(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/keys/rotate", content=b"junk")
    assert response.status_code == 200
