"""The console's Applications, Users and Logs pages (SPEC 9), driven as a browser would: GET a
page, POST its form with its CSRF token from the team origin, follow the redirect.

alice (Engineering) is admitted by the harness's `[console.policy]`; bob is not, and signs in to
apps only. What the console changes is read back through the admin API, the same storage."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
import pytest_asyncio
from admin_harness import admin_client, eventually_ok, instance
from console_harness import console_doc, console_sign_in, csrf_of, post_form
from fake_okta import FakeOkta
from harness import IDP_ID, EchoUpstream, browser, running, sign_in

from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.console import logs as logs_page
from gateway.runtime import Runtime
from gateway.scim.repository import ScimRepository
from gateway.scim.schema import GROUPS
from gateway.state.catalog import POLL_INTERVAL
from gateway.state.store import Store

SCRIPT = "<script>alert(1)</script>"


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(console_doc(upstream.url)), store=store)) as app:
        yield app


@pytest_asyncio.fixture
async def alice(client: httpx.AsyncClient, okta: FakeOkta) -> httpx.AsyncClient:
    """The client, signed in to the console as alice."""
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


def new_app_form(**changes: Any) -> dict[str, Any]:
    """The new-application form as a browser posts it: one policy with one Okta rule."""
    form = {
        "name": "Payroll",
        "domain": "payroll.example.com",
        "upstream": "http://127.0.0.1:9",
        "session_duration": "",
        "same_site_cookie_attribute": "lax",
        "auto_redirect_to_identity": "true",
        "http_only_cookie_attribute": "true",
        "custom_deny_message": "",
        "policies[0].name": "Engineering",
        "policies[0].decision": "allow",
        "policies[0].session_duration": "",
        "policies[0].include[0].kind": "okta",
        "policies[0].include[0].okta.name": "Engineering",
        "policies[0].include[0].okta.identity_provider_id": "",
        "action": "save",
    }
    return form | changes


async def create_app_in_console(client: httpx.AsyncClient, **changes: Any) -> httpx.Response:
    page = await client.get("/console/apps/new")
    assert page.status_code == 200, page.text
    return await post_form(client, "/console/apps/new", new_app_form(**changes), csrf=csrf_of(page))


async def last_audit_of(api: httpx.AsyncClient) -> tuple[str, str, str]:
    entry = (await api.get("/api/logs/audit")).json()["result"][0]
    return entry["actor"], entry["action"], entry["object_id"]


def error_next_to(page: str, field: str) -> str:
    """The message shown under the input named `field` (its `aria-describedby` target)."""
    found = re.search(rf'<p class="error" id="{re.escape(field)}-error">([^<]*)</p>', page)
    assert found is not None, f"no error next to {field}"
    return html.unescape(found.group(1))


# --- applications -----------------------------------------------------------------------------


async def test_the_list_shows_every_app_and_which_are_read_only(alice: httpx.AsyncClient) -> None:
    page = await alice.get("/console/apps")
    assert page.status_code == 200
    assert '<a href="/console/apps/wiki">Wiki</a>' in page.text
    assert "config file (read-only)" in page.text
    edit = await alice.get("/console/apps/wiki")
    assert "read-only here" in edit.text
    assert '<fieldset class="plain" disabled>' in edit.text
    assert 'value="save">Save</button>' not in edit.text


async def test_a_new_app_is_stored_as_the_admin_api_stores_it(
    gateway: Gateway, alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    saved = await create_app_in_console(alice)
    assert saved.status_code == 303, saved.text
    app_id = saved.headers["location"].removeprefix("/console/apps/").removesuffix("?saved=1")
    shown = (await api.get(f"/api/apps/{app_id}")).json()["result"]
    assert shown["read_only"] is False
    assert shown["domain"] == "payroll.example.com"
    assert shown["session_duration"] == "24h"  # empty: the gateway's
    assert shown["policies"] == [
        {
            "name": "Engineering",
            "decision": "allow",
            "include": [{"okta": {"name": "Engineering"}}],
            "require": [],
            "exclude": [],
        }
    ]
    page = await alice.get(saved.headers["location"])
    assert "Saved." in page.text
    audit = (await api.get("/api/logs/audit")).json()["result"]
    assert audit[0]["actor"] == "alice@example.com"
    assert (audit[0]["action"], audit[0]["object_id"]) == ("create", app_id)


async def test_an_app_changed_through_the_api_shows_in_the_console_form(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    saved = await create_app_in_console(alice)
    location = saved.headers["location"].removesuffix("?saved=1")
    app_id = location.removeprefix("/console/apps/")
    body = (await api.get(f"/api/apps/{app_id}")).json()["result"]
    body["policies"][0]["exclude"] = [{"email": {"email": "mallory@example.com"}}]
    for key in ("id", "aud", "read_only"):
        del body[key]
    assert (await api.put(f"/api/apps/{app_id}", json=body)).status_code == 200
    page = await alice.get(location)
    assert 'name="policies[0].exclude[0].kind" value="email"' in page.text
    assert 'value="mallory@example.com"' in page.text


async def test_a_risk_rule_is_built_from_checkboxes(
    alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    name = "policies[1].include[0].user_risk_score.user_risk_score"
    form: dict[str, Any] = {
        "policies[1].name": "Risky",
        "policies[1].decision": "deny",
        "policies[1].include[0].kind": "user_risk_score",
        name: ["medium", "high"],  # two checked boxes
    }
    saved = await create_app_in_console(alice, **form)
    assert saved.status_code == 303, saved.text
    app_id = saved.headers["location"].removeprefix("/console/apps/").removesuffix("?saved=1")
    shown = (await api.get(f"/api/apps/{app_id}")).json()["result"]["policies"][1]
    assert shown["include"] == [{"user_risk_score": {"user_risk_score": ["medium", "high"]}}]
    page = await alice.get(saved.headers["location"])
    assert f'name="{name}" value="high" checked' in page.text
    assert f'name="{name}" value="low">' in page.text


async def test_a_new_app_starts_with_a_policy_whose_rules_are_to_be_chosen(
    gateway: Gateway, alice: httpx.AsyncClient
) -> None:
    page = await alice.get("/console/apps/new")
    assert 'id="f-policies[0].name"' in page.text
    assert 'name="policies[0].include[0].kind"' not in page.text  # no rule chosen for you
    form = new_app_form()
    for key in [k for k in form if k.startswith("policies[0].include[0]")]:
        del form[key]
    refused = await post_form(alice, "/console/apps/new", form, csrf=csrf_of(page))
    assert refused.status_code == 400
    assert error_next_to(refused.text, "policies[0].include") == "needs at least one rule"
    assert [a.id for a in runtime(gateway).settings.apps] == ["team-app", "wiki"]


async def test_an_app_is_deleted_after_a_confirmation(
    gateway: Gateway, alice: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    saved = await create_app_in_console(alice)
    location = saved.headers["location"].removesuffix("?saved=1")
    app_id = location.removeprefix("/console/apps/")
    page = await alice.get(location)
    confirm = await post_form(alice, f"{location}/delete", {}, csrf=csrf_of(page))
    assert "Delete the application Payroll (payroll.example.com)?" in confirm.text
    assert runtime(gateway).app_by_id(app_id) is not None  # a confirmation changes nothing
    done = await post_form(alice, f"{location}/delete", {"confirm": "yes"}, csrf=csrf_of(page))
    assert (done.status_code, done.headers["location"]) == (303, "/console/apps?deleted=1")
    assert (await api.get(f"/api/apps/{app_id}")).status_code == 404
    assert (await last_audit_of(api))[:2] == ("alice@example.com", "delete")
    wiki = await post_form(
        alice, "/console/apps/wiki/delete", {"confirm": "yes"}, csrf=csrf_of(page)
    )
    assert wiki.status_code == 403  # defined in the config file
    assert runtime(gateway).app_by_id("wiki") is not None


async def test_a_group_nobody_was_seen_in_is_saved_with_a_warning(
    alice: httpx.AsyncClient,
) -> None:
    saved = await create_app_in_console(alice, **{"policies[0].include[0].okta.name": "Enginering"})
    assert saved.status_code == 303, saved.text
    page = await alice.get(saved.headers["location"])
    assert "Saved, but check these:" in page.text
    assert "(did you mean &#39;Engineering&#39;?)" in page.text


async def test_a_builder_button_redraws_the_form_and_stores_nothing(
    gateway: Gateway, alice: httpx.AsyncClient
) -> None:
    page = await alice.get("/console/apps/new")
    form = new_app_form(action="add:policies[0].require") | {"policies[0].require.new": "email"}
    redrawn = await post_form(alice, "/console/apps/new", form, csrf=csrf_of(page))
    assert redrawn.status_code == 200
    assert 'name="policies[0].require[0].kind" value="email"' in redrawn.text
    assert 'id="f-policies[0].require[0].email.email"' in redrawn.text
    assert 'value="payroll.example.com"' in redrawn.text  # what was typed is kept
    assert [a.id for a in runtime(gateway).settings.apps] == ["team-app", "wiki"]


async def test_a_problem_is_shown_next_to_its_field_and_nothing_is_stored(
    gateway: Gateway, alice: httpx.AsyncClient
) -> None:
    refused = await create_app_in_console(
        alice,
        domain="https://payroll.example.com",
        **{"policies[0].include[0].okta.name": "", "policies[0].decision": "sometimes"},
    )
    assert refused.status_code == 400
    assert error_next_to(refused.text, "domain") == "must be host[/path] without a scheme"
    assert error_next_to(refused.text, "policies[0].include[0].okta.name") == "is required"
    assert "must be one of" in error_next_to(refused.text, "policies[0].decision")
    assert 'aria-invalid="true" aria-describedby="domain-error"' in refused.text
    assert [a.id for a in runtime(gateway).settings.apps] == ["team-app", "wiki"]


async def test_a_domain_taken_by_another_app_is_a_conflict_next_to_the_domain(
    alice: httpx.AsyncClient,
) -> None:
    refused = await create_app_in_console(alice, domain="wiki.example.com")
    assert refused.status_code == 409
    assert "is already served by app 'wiki'" in error_next_to(refused.text, "domain")


async def test_a_file_defined_app_cannot_be_changed(
    gateway: Gateway, alice: httpx.AsyncClient
) -> None:
    page = await alice.get("/console/apps/wiki")
    refused = await post_form(
        alice, "/console/apps/wiki", new_app_form(domain="wiki.example.com"), csrf=csrf_of(page)
    )
    assert refused.status_code == 403
    wiki = runtime(gateway).app_by_id("wiki")
    assert wiki is not None and wiki.name == "Wiki"


async def test_an_app_named_like_a_script_renders_as_text(alice: httpx.AsyncClient) -> None:
    saved = await create_app_in_console(alice, name=SCRIPT, custom_deny_message=SCRIPT)
    assert saved.status_code == 303, saved.text
    for path in ("/console/apps", saved.headers["location"]):
        page = await alice.get(path)
        assert SCRIPT not in page.text
        assert html.escape(SCRIPT) in page.text or "&lt;script&gt;" in page.text


async def test_the_group_picker_offers_pushed_and_seen_groups(
    gateway: Gateway, alice: httpx.AsyncClient
) -> None:
    await ScimRepository(runtime(gateway).store, IDP_ID, runtime(gateway).clock).create(
        GROUPS, {"displayName": "Contractors"}
    )
    page = await alice.get("/console/apps/new")
    picker = re.search(r'<datalist id="choices-group">(.*?)</datalist>', page.text)
    assert picker is not None
    offered = re.findall(r'<option value="([^"]*)">', picker.group(1))
    # Contractors was pushed over SCIM; alice's sign-in showed Engineering and Everyone.
    assert offered == ["Contractors", "Engineering", "Everyone"]
    form = new_app_form(action="add:policies[0].include") | {
        "policies[0].include.new": "group_name"
    }
    redrawn = await post_form(alice, "/console/apps/new", form, csrf=csrf_of(page))
    assert 'id="f-policies[0].include[1].group_name.name"' in redrawn.text
    assert 'list="choices-group"' in redrawn.text


async def test_who_would_get_in_names_the_decision_and_the_rule(
    gateway: Gateway, alice: httpx.AsyncClient, okta: FakeOkta
) -> None:
    async with browser(gateway) as bob:
        await sign_in(bob, okta, "00ubob")
    allowed = await alice.get("/console/apps/wiki?who=alice@example.com")
    assert "gets in</span> (allow) by policy <strong>Engineering</strong>" in allowed.text
    denied = await alice.get("/console/apps/wiki?who=bob@example.com")
    assert "is denied" in denied.text
    assert "Because: Engineering: include: none matched (in Okta group &#39;Engineering&#39;)" in (
        denied.text
    )
    unknown = await alice.get("/console/apps/wiki?who=nobody@example.com")
    assert "has not signed in yet" in error_next_to(unknown.text, "who")


# --- users ------------------------------------------------------------------------------------


async def test_the_registry_is_searched_by_email(
    gateway: Gateway, alice: httpx.AsyncClient, okta: FakeOkta
) -> None:
    async with browser(gateway) as bob:
        await sign_in(bob, okta, "00ubob")
    everyone = await alice.get("/console/users")
    assert "alice@example.com" in everyone.text and "bob@example.com" in everyone.text
    found = await alice.get("/console/users?q=BOB")
    assert "bob@example.com" in found.text and "alice@example.com</a>" not in found.text
    none = await alice.get("/console/users?q=" + SCRIPT)
    assert "No user's email contains" in none.text
    assert SCRIPT not in none.text


async def test_a_users_page_shows_the_identity_sessions_and_revokes_them(
    gateway: Gateway, alice: httpx.AsyncClient, okta: FakeOkta, upstream: EchoUpstream
) -> None:
    rt = runtime(gateway)
    async with browser(gateway, base_url="https://wiki.example.com") as carol:
        okta.add_user("00ucarol", "carol@example.com", "Carol Example", ["Engineering"])
        reached = await sign_in(carol, okta, "00ucarol", "https://wiki.example.com/")
        assert reached.status_code == 302
        authorized = await carol.get(reached.headers["location"])  # the app session
        assert authorized.status_code == 302, authorized.text
        (record,) = await rt.registry.by_email("carol@example.com")
        page = await alice.get(f"/console/users/{record.id}")
        assert page.status_code == 200
        assert "&#34;email&#34;: &#34;carol@example.com&#34;" in page.text  # the identity JSON
        assert "<li>Engineering</li>" in page.text
        assert '<td data-label="Where">Wiki</td>' in page.text
        path = f"/console/users/{record.id}/revoke"
        confirm = await post_form(alice, path, {}, csrf=csrf_of(page))
        assert "Revoke every session of carol@example.com?" in confirm.text
        assert await rt.sessions.active_sessions(record.id)  # a confirmation changes nothing
        done = await post_form(alice, path, {"confirm": "yes"}, csrf=csrf_of(confirm))
        assert done.status_code == 303
        assert await rt.sessions.active_sessions(record.id) == []
        after = await alice.get(done.headers["location"])
        assert "Revoked 2 sessions" in after.text
        assert "No active session." in after.text
        bounced = await carol.get("https://wiki.example.com/")
        assert bounced.status_code == 302  # to sign in again


async def test_an_unknown_user_is_a_404_page(alice: httpx.AsyncClient) -> None:
    page = await alice.get("/console/users/nobody")
    assert page.status_code == 404
    assert "No user with id" in page.text
    token = csrf_of(await alice.get("/console/apps/new"))
    revoke = await post_form(alice, "/console/users/nobody/revoke", {"confirm": "yes"}, csrf=token)
    assert revoke.status_code == 404


# --- logs -------------------------------------------------------------------------------------


async def test_the_logs_show_sign_ins_scim_and_changes_newest_first(
    gateway: Gateway, alice: httpx.AsyncClient, okta: FakeOkta
) -> None:
    async with browser(gateway) as bob:
        await sign_in(bob, okta, "00ubob")
    await create_app_in_console(alice, name="First", domain="first.example.com")
    await create_app_in_console(alice, name="Second", domain="second.example.com")
    page = await alice.get("/console/logs")
    assert page.status_code == 200
    sections = page.text.split('<h2 id="')
    access = next(s for s in sections if s.startswith("access"))
    audit = next(s for s in sections if s.startswith("audit"))
    assert "bob@example.com" in access and "deny" in access
    assert "Engineering: include: none matched" in access
    assert audit.index("Second") < audit.index("First")  # newest first
    assert "alice@example.com" in audit


async def test_each_log_shows_at_most_its_bound(
    gateway: Gateway, alice: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime(gateway)
    for i in range(logs_page.SHOWN + 5):
        await rt.provisioning_log.record(
            idp_id=IDP_ID, method="POST", resource_type="Users", status=201, resource_name=f"u{i}"
        )
    page = await alice.get("/console/logs")
    scim = next(s for s in page.text.split('<h2 id="') if s.startswith("scim"))
    assert scim.count("<tr>") == logs_page.SHOWN + 1  # and the header row
    assert f"u{logs_page.SHOWN + 4}" in scim and ">u0<" not in scim


# --- accessibility --------------------------------------------------------------------------


class Controls(HTMLParser):
    """Every form control of a page, the labels' targets, the labels wrapping a control, and
    every element id."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.controls: list[dict[str, str]] = []
        self.label_targets: set[str] = set()
        self.ids: list[str] = []
        self._in_label = 0
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if "id" in values:
            self.ids.append(values["id"])
        if tag == "label":
            self._in_label += 1
            if values.get("for"):
                self.label_targets.add(values["for"])
        if tag in ("input", "select", "textarea") and values.get("type") != "hidden":
            self.controls.append({**values, "wrapped": "yes" if self._in_label else ""})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label -= 1


async def test_every_control_of_these_pages_has_a_label_and_ids_are_unique(
    gateway: Gateway, alice: httpx.AsyncClient, okta: FakeOkta
) -> None:
    rt = runtime(gateway)
    (record,) = await rt.registry.by_email("alice@example.com")
    saved = await create_app_in_console(
        alice,
        **{
            "policies[0].require[0].kind": "user_risk_score",
            "policies[0].require[0].user_risk_score.user_risk_score": ["high"],
            "policies[0].exclude[0].kind": "ip",
            "policies[0].exclude[0].ip.ip": "192.0.2.0/24",
        },
    )
    pages = [
        "/console/apps",
        "/console/apps/new",
        "/console/apps/wiki?who=alice@example.com",
        saved.headers["location"],
        "/console/users",
        f"/console/users/{record.id}",
        "/console/logs",
        "/console/risk",
    ]
    checked = 0
    for path in pages:
        page = await alice.get(path)
        assert page.status_code == 200, path
        found = Controls(page.text)
        checked += len(found.controls)
        for control in found.controls:
            labelled = (
                control["wrapped"]
                or control.get("id", "") in found.label_targets
                or control.get("aria-label")
            )
            assert labelled, (path, control)
        assert len(found.ids) == len(set(found.ids)), (path, sorted(found.ids))
    assert checked > 50  # the forms were there to be checked


async def test_an_app_made_in_the_console_is_served_by_another_instance(
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
        saved = await create_app_in_console(console_one)
        app_id = saved.headers["location"].removeprefix("/console/apps/").removesuffix("?saved=1")
        await eventually_ok(api_two, f"/api/apps/{app_id}", within=10 * POLL_INTERVAL)
        shown = (await api_two.get(f"/api/apps/{app_id}")).json()["result"]
        assert shown["policies"][0]["include"] == [{"okta": {"name": "Engineering"}}]
        audit = (await api_two.get("/api/logs/audit")).json()["result"]
        assert (audit[0]["actor"], audit[0]["object_id"]) == ("alice@example.com", app_id)
