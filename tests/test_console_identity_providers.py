"""The console's login-method pages (SPEC 9 "Login methods"): add an Okta IdP with the guide's
fields, validation next to each field, SCIM and its secret shown once, read-only file IdPs,
CSRF, and one code path with the admin API (every instance, the audit log)."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from admin_harness import admin_client, eventually_ok, instance
from console_harness import console_doc, console_sign_in, csrf_of, post_form
from fake_okta import BASE, CLIENT_ID, CLIENT_SECRET, FakeOkta
from harness import TEAM, EchoUpstream, browser, running

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.state.catalog import POLL_INTERVAL
from gateway.state.store import Store

OKTA_FORM = {
    "type": "okta",
    "name": "Okta prod",
    "config.client_id": CLIENT_ID,
    "config.client_secret": CLIENT_SECRET,
    "config.okta_account": BASE,
    "config.api_token": "",
    "config.authorization_server_id": "",
    "config.claims": "department, team",
    "config.pkce_enabled": "true",
}
NEW = "/console/identity-providers/new"


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(console_doc(upstream.url)), store=store)) as app:
        yield app


@pytest_asyncio.fixture
async def alice(client: httpx.AsyncClient, okta: FakeOkta) -> httpx.AsyncClient:
    """The browser, signed in to the console as alice (admitted)."""
    assert (await console_sign_in(client, okta, "00ualice")).status_code == 200
    return client


async def add_idp(
    alice: httpx.AsyncClient, form: dict[str, Any] = OKTA_FORM
) -> tuple[str, httpx.Response]:
    """Add a login method through the console; its id and the page the browser lands on."""
    page = await alice.get(f"{NEW}?type=okta")
    answer = await post_form(alice, NEW, form, csrf=csrf_of(page))
    if answer.status_code == 303:
        location = answer.headers["location"]
        return location.split("/")[-1].split("?")[0], await alice.get(location)
    assert answer.status_code == 200, answer.text
    idp_id = answer.text.split('action="/console/identity-providers/')[1].split('"')[0]
    return idp_id, answer


async def test_the_okta_form_has_the_guides_fields(alice: httpx.AsyncClient) -> None:
    page = await alice.get(f"{NEW}?type=okta")
    assert page.status_code == 200
    for label in ("Name", "App ID", "Client secret", "Okta account URL", "API token"):
        assert f">{label}" in page.text
    for label in ("Authorization server ID", "Claims", "Use PKCE"):
        assert label in page.text
    assert f"{TEAM}/cdn-cgi/access/callback" in page.text  # the redirect URL to paste
    assert 'data-copy="redirect-url"' in page.text


async def test_an_okta_idp_added_in_the_console_shows_in_the_api_and_the_audit_log(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    idp_id, page = await add_idp(alice)
    assert "Saved." in page.text
    assert f'href="/test-idp?idp={idp_id}"' in page.text
    shown = (await api.get(f"/api/identity_providers/{idp_id}")).json()["result"]
    assert shown["name"] == "Okta prod"
    assert shown["read_only"] is False
    assert shown["config"]["claims"] == ["department", "team"]
    assert shown["config"]["pkce_enabled"] is True
    assert CLIENT_SECRET not in page.text  # a secret is never shown back
    audit = (await api.get("/api/logs/audit")).json()["result"]
    assert audit[0]["actor"] == "alice@example.com"
    assert (audit[0]["action"], audit[0]["object_id"]) == ("create", idp_id)
    listed = await alice.get("/console/identity-providers")
    assert "Okta prod" in listed.text


async def test_an_edit_keeps_the_secret_left_empty(
    alice: httpx.AsyncClient, api: httpx.AsyncClient, okta: FakeOkta
) -> None:
    idp_id, page = await add_idp(alice)
    edited = {**OKTA_FORM, "name": "Okta renamed", "config.client_secret": ""}
    answer = await post_form(
        alice, f"/console/identity-providers/{idp_id}", edited, csrf=csrf_of(page)
    )
    assert answer.status_code == 303
    assert (await api.get(f"/api/identity_providers/{idp_id}")).json()["result"]["name"] == (
        "Okta renamed"
    )
    # the kept secret still signs people in: the test page reaches Okta with it
    to_okta = await alice.get(f"/test-idp?idp={idp_id}")
    result = await alice.get(okta.authorize(to_okta.headers["location"], "00ualice"))
    assert "Your connection works!" in (await alice.get(result.headers["location"])).text


async def test_a_validation_error_is_shown_next_to_its_field_and_nothing_is_stored(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    before = (await api.get("/api/identity_providers")).json()["result"]
    bad = {**OKTA_FORM, "config.client_id": "", "config.okta_account": "not a url"}
    page = await alice.get(NEW)
    answer = await post_form(alice, NEW, bad, csrf=csrf_of(page))
    assert answer.status_code == 400
    assert 'id="config.client_id-error">is required<' in answer.text
    assert 'id="config.okta_account-error">must be an absolute https or http URL<' in answer.text
    assert 'value="Okta prod"' in answer.text  # what was typed is kept
    assert (await api.get("/api/identity_providers")).json()["result"] == before
    assert (await api.get("/api/logs/audit")).json()["result"] == []


async def test_a_script_in_a_name_renders_as_text(alice: httpx.AsyncClient) -> None:
    idp_id, _ = await add_idp(alice, {**OKTA_FORM, "name": "<script>alert(1)</script>"})
    for url in (
        "/console/identity-providers",
        f"/console/identity-providers/{idp_id}",
        "/console/",
    ):
        shown = await alice.get(url)
        assert "<script>alert(1)</script>" not in shown.text, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown.text, url


async def test_scim_secret_is_shown_once_and_regenerated_after_confirmation(
    alice: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    idp_id, page = await add_idp(alice)
    url = f"/console/identity-providers/{idp_id}"
    scim = {
        "form": "scim",
        "scim_config.enabled": "true",
        "scim_config.user_deprovision": "true",
        "scim_config.identity_update_behavior": "reauth",
    }
    enabled = await post_form(alice, url, scim, csrf=csrf_of(page))
    assert enabled.status_code == 200, enabled.text
    secret = _secret_on(enabled)
    endpoint = f"{TEAM}/populations/{idp_id}/scim/v2"
    assert f'value="{endpoint}"' in enabled.text
    assert "View logs" in enabled.text
    assert await _scim_status(client, idp_id, secret) == 200
    again = await alice.get(url)
    assert secret not in again.text  # shown once
    # regenerate: first a confirmation, which changes nothing
    asked = await post_form(alice, f"{url}/scim-secret", {}, csrf=csrf_of(again))
    assert "Regenerate the SCIM secret?" in asked.text
    assert 'name="confirm" value="yes"' in asked.text
    assert await _scim_status(client, idp_id, secret) == 200
    done = await post_form(alice, f"{url}/scim-secret", {"confirm": "yes"}, csrf=csrf_of(again))
    fresh = _secret_on(done)
    assert fresh != secret
    assert await _scim_status(client, idp_id, secret) == 401
    assert await _scim_status(client, idp_id, fresh) == 200


async def test_scim_options_are_validated_next_to_their_field(alice: httpx.AsyncClient) -> None:
    idp_id, page = await add_idp(alice)
    seat_only = {
        "form": "scim",
        "scim_config.enabled": "true",
        "scim_config.seat_deprovision": "true",
    }
    answer = await post_form(
        alice, f"/console/identity-providers/{idp_id}", seat_only, csrf=csrf_of(page)
    )
    assert answer.status_code == 400
    assert 'id="scim_config.seat_deprovision-error">needs user_deprovision = true<' in answer.text


def _secret_on(page: httpx.Response) -> str:
    assert "shown this once" in page.text, page.text
    return page.text.split('id="scim-secret" value="')[1].split('"')[0]


async def _scim_status(client: httpx.AsyncClient, idp_id: str, secret: str) -> int:
    answer = await client.get(
        f"/populations/{idp_id}/scim/v2/Users", headers={"Authorization": f"Bearer {secret}"}
    )
    return answer.status_code


async def test_file_idps_are_read_only_with_a_note(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    page = await alice.get("/console/identity-providers/okta-test")
    assert "defined in the config file" in page.text
    assert ">Save<" not in page.text
    changed = {**OKTA_FORM, "name": "Mine now"}
    answer = await post_form(
        alice, "/console/identity-providers/okta-test", changed, csrf=csrf_of(page)
    )
    assert answer.status_code == 403
    assert "read-only" in answer.text
    assert (await api.get("/api/identity_providers/okta-test")).json()["result"]["name"] == "Okta"


async def test_delete_asks_first(alice: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    idp_id, page = await add_idp(alice)
    url = f"/console/identity-providers/{idp_id}/delete"
    asked = await post_form(alice, url, {}, csrf=csrf_of(page))
    assert "Delete this login method?" in asked.text
    assert (await api.get(f"/api/identity_providers/{idp_id}")).status_code == 200
    done = await post_form(alice, url, {"confirm": "yes"}, csrf=csrf_of(page))
    assert done.status_code == 303
    assert (await api.get(f"/api/identity_providers/{idp_id}")).status_code == 404


async def test_an_idp_a_risk_sharing_integration_names_is_not_deleted(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    idp_id, page = await add_idp(alice)
    integration = {"tenant_url": "https://example.okta.com", "reference_id": idp_id}
    made = await api.post("/api/zt_risk_scoring/integrations", json=integration)
    integration_id = made.json()["result"]["id"]
    refusal = (
        f"Identity provider {idp_id!r} is the reference_id of risk sharing integration(s) "
        f"{integration_id!r} (https://example.okta.com); delete them or point them at another "
        "identity provider first."
    )
    url = f"/console/identity-providers/{idp_id}/delete"
    # told before being asked to confirm, on the login method's page
    asked = await post_form(alice, url, {}, csrf=csrf_of(page))
    assert asked.status_code == 409
    assert refusal in html.unescape(asked.text)
    assert "Delete this login method?" not in asked.text
    assert 'action="/console/identity-providers/' + idp_id + '"' in asked.text
    # and a confirmation sent anyway (an older page) is refused the same way
    forced = await post_form(alice, url, {"confirm": "yes"}, csrf=csrf_of(page))
    assert forced.status_code == 409
    assert refusal in html.unescape(forced.text)
    assert (await api.get(f"/api/identity_providers/{idp_id}")).status_code == 200
    kept = await api.get(f"/api/zt_risk_scoring/integrations/{integration_id}")
    assert kept.json()["result"]["reference_id"] == idp_id


# --- CSRF: each refusal changes nothing -------------------------------------------------------


async def test_a_post_without_the_token_changes_nothing(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    answer = await post_form(alice, NEW, OKTA_FORM, csrf=None)
    assert answer.status_code == 403
    assert "nothing was changed" in answer.text
    assert len((await api.get("/api/identity_providers")).json()["result"]) == 1


async def test_another_sessions_token_changes_nothing(
    alice: httpx.AsyncClient, gateway: Gateway, okta: FakeOkta, api: httpx.AsyncClient
) -> None:
    async with browser(gateway) as other:
        await console_sign_in(other, okta, "00ualice")  # alice, in another browser
        others_token = csrf_of(await other.get(NEW))
    assert csrf_of(await alice.get("/console/identity-providers/new")) != others_token
    answer = await post_form(alice, NEW, OKTA_FORM, csrf=others_token)
    assert answer.status_code == 403
    assert len((await api.get("/api/identity_providers")).json()["result"]) == 1


async def test_a_foreign_origin_changes_nothing(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    token = csrf_of(await alice.get(NEW))
    for origin in ("https://evil.example", "null", "http://access.example.com"):
        answer = await post_form(alice, NEW, OKTA_FORM, csrf=token, origin=origin)
        assert answer.status_code == 403, origin
        assert "another site" in answer.text
    # neither Origin nor Referer: refused too; a same-origin Referer alone is accepted
    assert (await post_form(alice, NEW, OKTA_FORM, csrf=token, origin=None)).status_code == 403
    assert len((await api.get("/api/identity_providers")).json()["result"]) == 1
    referred = await alice.post(
        NEW, data={**OKTA_FORM, "csrf_token": token}, headers={"Referer": f"{TEAM}{NEW}"}
    )
    assert referred.status_code == 303


# --- one code path: a console change on every instance ----------------------------------------


async def test_a_console_change_shows_on_another_instance_with_its_author(
    redis_url: str, upstream: EchoUpstream, okta: FakeOkta
) -> None:
    doc = console_doc(upstream.url)
    async with (
        instance(redis_url, doc) as one,
        instance(redis_url, doc) as two,
        browser(one) as console_one,
        admin_client(two) as api_two,
    ):
        assert (await console_sign_in(console_one, okta, "00ualice")).status_code == 200
        idp_id, _ = await add_idp(console_one)
        await eventually_ok(api_two, f"/api/identity_providers/{idp_id}", within=10 * POLL_INTERVAL)
        shown = (await api_two.get(f"/api/identity_providers/{idp_id}")).json()["result"]
        assert shown["name"] == "Okta prod"
        audit = (await api_two.get("/api/logs/audit")).json()["result"]
        assert (audit[0]["actor"], audit[0]["action"]) == ("alice@example.com", "create")


async def test_a_generic_oidc_idp_is_added_with_its_endpoints(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    form = {
        "type": "oidc",
        "name": "Keycloak",
        "config.client_id": "gateway",
        "config.client_secret": "s3cret",
        "config.issuer": "https://sso.example.com/realms/main",
        "config.auth_url": "https://sso.example.com/auth",
        "config.token_url": "https://sso.example.com/token",
        "config.certs_url": "https://sso.example.com/certs",
        "config.scopes": "openid, email, groups",
    }
    page = await alice.get(f"{NEW}?type=oidc")
    assert "JWKS (certificates) URL" in page.text
    answer = await post_form(alice, NEW, form, csrf=csrf_of(page))
    assert answer.status_code == 303, answer.text
    idp_id = answer.headers["location"].split("/")[-1].split("?")[0]
    config = (await api.get(f"/api/identity_providers/{idp_id}")).json()["result"]["config"]
    assert config["issuer"] == "https://sso.example.com/realms/main"
    assert config["scopes"] == ["openid", "email", "groups"]


async def test_the_saml_form_has_spec_10s_fields(alice: httpx.AsyncClient) -> None:
    page = await alice.get(f"{NEW}?type=saml")
    for field in ("issuer_url", "sso_target_url", "idp_public_certs", "metadata_url"):
        assert f'name="config.{field}"' in page.text
    for field in ("email_attribute_name", "attributes", "sign_request"):
        assert f'name="config.{field}"' in page.text
