"""The console's Risk page and a user's risk (SPEC 8, 9): behaviours, risk sharing with Okta,
a user's level and events, the reset; each change read back through the admin API and named in
the audit log."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from admin_harness import admin_client
from console_harness import console_doc, console_sign_in, csrf_of, post_form
from fake_okta import FakeOkta
from harness import IDP_ID, EchoUpstream, browser, running, sign_in

from gateway.app import Gateway, create_app
from gateway.config import RiskIntegrationBody, parse_settings
from gateway.runtime import Runtime
from gateway.state.store import Store

TENANT = "https://example.okta.com"


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(console_doc(upstream.url)), store=store)) as app:
        yield app


@pytest_asyncio.fixture
async def alice(client: httpx.AsyncClient, okta: FakeOkta) -> httpx.AsyncClient:
    page = await console_sign_in(client, okta, "00ualice")
    assert page.status_code == 200, page.text
    return client


@pytest_asyncio.fixture
async def api(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_client(gateway) as client:
        yield client


def runtime(gateway: Gateway) -> Runtime:
    assert gateway.runtime is not None
    return gateway.runtime


def behaviors_form(**changes: str) -> dict[str, str]:
    """The behaviours form with the defaults (unchecked boxes are not posted)."""
    form = {
        "behaviors.repeated_denials.enabled": "true",
        "behaviors.repeated_denials.risk_level": "medium",
        "behaviors.failed_sign_ins.enabled": "true",
        "behaviors.failed_sign_ins.risk_level": "medium",
        "behaviors.new_network.risk_level": "low",
        "behaviors.scim_deprovisioned_sign_in.enabled": "true",
        "behaviors.scim_deprovisioned_sign_in.risk_level": "high",
    }
    return form | changes


def error_next_to(page: str, field: str) -> str:
    found = re.search(rf'<p class="error" id="{re.escape(field)}-error">([^<]*)</p>', page)
    assert found is not None, f"no error next to {field}"
    return html.unescape(found.group(1))


async def last_audit(api: httpx.AsyncClient) -> dict[str, str]:
    entries: list[dict[str, str]] = (await api.get("/api/logs/audit")).json()["result"]
    return entries[0]


# --- behaviours -------------------------------------------------------------------------------


async def test_the_behaviours_are_shown_and_saved_as_the_api_saves_them(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    page = await alice.get("/console/risk")
    assert page.status_code == 200
    assert "a sign-in from a network (IPv4 /24, IPv6 /48)" in page.text
    assert 'name="behaviors.repeated_denials.enabled" value="true" checked' in page.text
    assert 'name="behaviors.new_network.enabled" value="true">' in page.text  # off by default
    form = behaviors_form(
        **{"behaviors.new_network.enabled": "true", "behaviors.new_network.risk_level": "high"}
    )
    form.pop("behaviors.failed_sign_ins.enabled")  # unchecked: off
    saved = await post_form(alice, "/console/risk/behaviors", form, csrf=csrf_of(page))
    assert saved.status_code == 303
    shown = (await api.get("/api/zt_risk_scoring/behaviors")).json()["result"]["behaviors"]
    assert (shown["new_network"]["enabled"], shown["new_network"]["risk_level"]) == (True, "high")
    assert shown["failed_sign_ins"]["enabled"] is False
    assert (await last_audit(api))["actor"] == "alice@example.com"
    assert "Saved: every instance scores" in (await alice.get(saved.headers["location"])).text


async def test_a_bad_level_is_shown_next_to_it_and_nothing_changes(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    page = await alice.get("/console/risk")
    form = behaviors_form(**{"behaviors.new_network.risk_level": "extreme"})
    refused = await post_form(alice, "/console/risk/behaviors", form, csrf=csrf_of(page))
    assert refused.status_code == 400
    field = "behaviors.new_network.risk_level"
    assert error_next_to(refused.text, field) == "must be one of low, medium, high"
    shown = (await api.get("/api/zt_risk_scoring/behaviors")).json()["result"]["behaviors"]
    assert shown["new_network"]["risk_level"] == "low"


# --- risk sharing with Okta -------------------------------------------------------------------


async def test_an_integration_is_added_shown_with_its_well_known_url_and_deleted(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    page = await alice.get("/console/risk")
    assert 'value="https://access.example.com/.well-known/ssf-configuration"' in page.text
    body = {"tenant_url": TENANT, "reference_id": IDP_ID, "active": "true"}
    added = await post_form(alice, "/console/risk/integrations", body, csrf=csrf_of(page))
    assert added.status_code == 303, added.text
    (integration,) = (await api.get("/api/zt_risk_scoring/integrations")).json()["result"]
    assert (integration["tenant_url"], integration["reference_id"]) == (TENANT, IDP_ID)
    assert integration["active"] is True
    assert (await last_audit(api))["action"] == "create"
    shown = await alice.get("/console/risk")
    assert f"<h3>{TENANT}</h3>" in shown.text
    assert "0 events waiting; last success never" in shown.text
    path = f"/console/risk/integrations/{integration['id']}/delete"
    confirm = await post_form(alice, path, {}, csrf=csrf_of(shown))
    assert f"Stop sending risk level changes to {TENANT}?" in confirm.text
    assert len((await api.get("/api/zt_risk_scoring/integrations")).json()["result"]) == 1
    deleted = await post_form(alice, path, {"confirm": "yes"}, csrf=csrf_of(confirm))
    assert deleted.status_code == 303
    assert (await api.get("/api/zt_risk_scoring/integrations")).json()["result"] == []
    assert (await last_audit(api))["action"] == "delete"


async def test_an_integration_is_changed_from_its_own_form(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    page = await alice.get("/console/risk")
    body = {"tenant_url": TENANT, "reference_id": IDP_ID, "active": "true"}
    await post_form(alice, "/console/risk/integrations", body, csrf=csrf_of(page))
    (integration,) = (await api.get("/api/zt_risk_scoring/integrations")).json()["result"]
    prefix = integration["id"] + "."
    path = f"/console/risk/integrations/{integration['id']}"
    off = {prefix + "tenant_url": TENANT, prefix + "reference_id": IDP_ID}  # active unchecked
    assert (await post_form(alice, path, off, csrf=csrf_of(page))).status_code == 303
    (changed,) = (await api.get("/api/zt_risk_scoring/integrations")).json()["result"]
    assert changed["active"] is False
    bad = {prefix + "tenant_url": "http://okta.example.com", prefix + "reference_id": IDP_ID}
    refused = await post_form(alice, path, bad, csrf=csrf_of(page))
    assert refused.status_code == 400
    assert error_next_to(refused.text, prefix + "tenant_url") == "must be an https URL"


async def test_an_integration_must_name_a_login_method_and_an_https_org(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    page = await alice.get("/console/risk")
    unknown = {"tenant_url": TENANT, "reference_id": "nope", "active": "true"}
    refused = await post_form(alice, "/console/risk/integrations", unknown, csrf=csrf_of(page))
    assert refused.status_code == 422
    assert error_next_to(refused.text, "reference_id") == "no identity provider 'nope'"
    plain = {"tenant_url": "http://example.okta.com", "reference_id": IDP_ID}
    refused = await post_form(alice, "/console/risk/integrations", plain, csrf=csrf_of(page))
    assert refused.status_code == 400
    assert error_next_to(refused.text, "tenant_url") == "must be an https URL"
    assert 'value="http://example.okta.com"' in refused.text  # what was typed is kept
    assert (await api.get("/api/zt_risk_scoring/integrations")).json()["result"] == []


async def test_an_integration_whose_login_method_is_gone_is_not_re_pointed_silently(
    gateway: Gateway, alice: httpx.AsyncClient
) -> None:
    """An IdP left the config file (the API refuses to delete one an integration names): the
    integration's form keeps it chosen, named as gone, and saving it as shown is refused."""
    rt = runtime(gateway)
    gone = await rt.risk_integrations.create(RiskIntegrationBody(TENANT, "okta-old", True))
    page = await alice.get("/console/risk")
    assert '<option value="okta-old" selected>(no such login method: okta-old)</option>' in (
        page.text
    )
    prefix = gone.id + "."
    as_shown = {prefix + "tenant_url": TENANT, prefix + "reference_id": "okta-old"}
    path = f"/console/risk/integrations/{gone.id}"
    refused = await post_form(alice, path, as_shown, csrf=csrf_of(page))
    assert refused.status_code == 422
    assert error_next_to(refused.text, prefix + "reference_id") == (
        "no identity provider 'okta-old'"
    )
    assert (await rt.risk_integrations.get(gone.id)).reference_id == "okta-old"


# --- a user's risk ----------------------------------------------------------------------------


async def test_a_users_risk_is_shown_and_reset_after_a_confirmation(
    gateway: Gateway, alice: httpx.AsyncClient, okta: FakeOkta, api: httpx.AsyncClient
) -> None:
    rt = runtime(gateway)
    async with browser(gateway) as bob:
        await sign_in(bob, okta, "00ubob")
    (record,) = await rt.registry.by_email("bob@example.com")
    for _ in range(5):  # the failed_sign_ins threshold
        await rt.risk.sign_in_failed(record.id, record.email, IDP_ID, "deprovisioned")
    page = await alice.get(f"/console/users/{record.id}")
    assert 'Level now: <strong class="level-medium">medium</strong>' in page.text
    assert "failed sign ins" in page.text
    at_risk = await alice.get("/console/risk")
    assert f'<a href="/console/users/{record.id}#risk">bob@example.com</a>' in at_risk.text
    path = f"/console/users/{record.id}/reset-risk"
    confirm = await post_form(alice, path, {}, csrf=csrf_of(page))
    assert "Reset the risk level of bob@example.com (now medium) to low?" in confirm.text
    assert await rt.risk.level(record.id) == "medium"  # a confirmation changes nothing
    done = await post_form(alice, path, {"confirm": "yes"}, csrf=csrf_of(confirm))
    assert done.status_code == 303
    assert await rt.risk.level(record.id) == "low"
    after = await alice.get(done.headers["location"])
    assert "Risk reset to low." in after.text and "No risk event kept." in after.text
    audit = await last_audit(api)
    assert (audit["actor"], audit["action"], audit["object_id"]) == (
        "alice@example.com",
        "reset_risk",
        record.id,
    )


async def test_a_reset_through_the_api_is_audited_as_the_admin_api(
    gateway: Gateway, okta: FakeOkta, api: httpx.AsyncClient
) -> None:
    rt = runtime(gateway)
    async with browser(gateway) as bob:
        await sign_in(bob, okta, "00ubob")
    (record,) = await rt.registry.by_email("bob@example.com")
    assert (await api.post(f"/api/zt_risk_scoring/{record.id}/reset")).status_code == 200
    audit = await last_audit(api)
    assert (audit["actor"], audit["action"]) == ("admin-api", "reset_risk")
