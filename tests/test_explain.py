"""Would this user get into this app, and why: `policy.explain`, `gateway explain` (SPEC 1) and
its admin API equivalent `GET /api/apps/{app_id}/explain?email=E`.

Both read the registry's last-seen identity, so each test records a sign-in in the registry
first (as the callback does) and asks about that person.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from admin_harness import admin_client, admin_doc, assert_failure
from harness import IDP_ID, running

from gateway.app import create_app
from gateway.authz.policy import RequestFacts, explain
from gateway.cli import main
from gateway.config import parse_settings
from gateway.identity import Identity
from gateway.state.registry import Registry
from gateway.state.store import Store
from gateway.state.store.redis import RedisStore


def person(email: str, *groups: str, idp_id: str = IDP_ID) -> Identity:
    return Identity(
        id="nonce",
        user_uuid="uuid-" + email,
        sub="00u-" + email,
        name=email,
        email=email,
        groups=groups,
        idp_id=idp_id,
        idp_type="okta",
        iat=int(time.time()),
    )


ALICE = person("alice@example.com", "Engineering")
BOB = person("bob@example.com", "Sales")
CAROL = person("carol@example.com", "Engineering", "Contractors")


def explain_doc() -> dict[str, Any]:
    """The harness apps; the wiki refuses contractors, then admits Engineering but Mallory."""
    doc = admin_doc("http://127.0.0.1:9")
    wiki = doc["apps"][1]
    wiki["policies"] = [
        {
            "name": "No contractors",
            "decision": "deny",
            "include": [{"group_name": {"name": "Contractors"}}],
        },
        {
            "name": "Engineering",
            "decision": "allow",
            "include": [{"okta": {"name": "Engineering"}}],
            "exclude": [{"email": {"email": "mallory@example.com"}}],
        },
    ]
    return doc


SETTINGS = parse_settings(explain_doc())
WIKI = next(a for a in SETTINGS.apps if a.id == "wiki")


# --- policy.explain -------------------------------------------------------------------------


def test_an_allowed_user_is_explained_by_the_policy_and_rule_that_let_them_in() -> None:
    explained = explain(WIKI, ALICE, RequestFacts()).to_json()
    assert (explained["allowed"], explained["decision"], explained["policy"]) == (
        True,
        "allow",
        "Engineering",
    )
    assert explained["policies"] == [
        {
            "name": "No contractors",
            "decision": "deny",
            "matched": False,
            "rule": "include: none matched (in group 'Contractors')",
        },
        {
            "name": "Engineering",
            "decision": "allow",
            "matched": True,
            "rule": "include: in Okta group 'Engineering' matched",
        },
    ]


def test_a_user_no_policy_admits_is_explained_by_the_rule_that_failed() -> None:
    explained = explain(WIKI, BOB, RequestFacts()).to_json()
    assert (explained["allowed"], explained["policy"], explained["rule"]) == (
        False,
        "(no policy matched)",
        "Engineering: include: none matched (in Okta group 'Engineering')",
    )


def test_a_deny_policy_is_named_with_the_rule_that_made_it_match() -> None:
    explained = explain(WIKI, CAROL, RequestFacts()).to_json()
    assert (explained["allowed"], explained["policy"], explained["rule"]) == (
        False,
        "No contractors",
        "include: in group 'Contractors' matched",
    )


def test_an_exclude_rule_that_matched_is_named() -> None:
    mallory = person("mallory@example.com", "Engineering")
    explained = explain(WIKI, mallory, RequestFacts()).to_json()
    assert explained["rule"] == "Engineering: exclude: email is 'mallory@example.com' matched"


def test_an_identity_provider_the_app_does_not_allow_is_refused_before_any_policy() -> None:
    doc = explain_doc()
    doc["apps"][1]["allowed_idps"] = [IDP_ID]
    wiki = next(a for a in parse_settings(doc).apps if a.id == "wiki")
    explained = explain(
        wiki, person("alice@example.com", "Engineering", idp_id="other"), RequestFacts()
    )
    assert not explained.decision.allowed
    assert "allowed_idps" in explained.decision.rule


# --- the admin API --------------------------------------------------------------------------


async def test_the_api_explains_an_allowed_and_a_denied_user(store: Store) -> None:
    registry = Registry(store)
    await registry.record_sign_in(ALICE)
    await registry.record_sign_in(BOB)
    async with running(create_app(SETTINGS, store=store)) as app:
        async with admin_client(app) as api:
            allowed = await api.get("/api/apps/wiki/explain", params={"email": "ALICE@example.com"})
            denied = await api.get("/api/apps/wiki/explain", params={"email": "bob@example.com"})
            unknown = await api.get("/api/apps/wiki/explain", params={"email": "eve@example.com"})
            no_app = await api.get("/api/apps/nope/explain", params={"email": "bob@example.com"})
            no_email = await api.get("/api/apps/wiki/explain")
            bad_ip = await api.get(
                "/api/apps/wiki/explain", params={"email": "bob@example.com", "ip": "nope"}
            )
    assert allowed.status_code == 200, allowed.text
    [alice] = allowed.json()["result"]
    assert (alice["email"], alice["allowed"], alice["policy"]) == (
        "alice@example.com",
        True,
        "Engineering",
    )
    [bob] = denied.json()["result"]
    assert (bob["allowed"], bob["policy"]) == (False, "(no policy matched)")
    assert "in Okta group 'Engineering'" in bob["rule"]
    assert "has not signed in" in assert_failure(unknown, 404, "not_found")[0]
    assert_failure(no_app, 404, "not_found")
    assert_failure(no_email, 400, "invalid_query")
    assert_failure(bad_ip, 400, "invalid_query")


# --- gateway explain ------------------------------------------------------------------------


def config_file(tmp_path: Path, store: str) -> Path:
    """The wiki of `explain_doc`, as a config file."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[gateway]
public_url = "https://access.example.com"
cookie_secret = "test-cookie-secret-0123456789abcdef"
store = "{store}"

[[identity_providers]]
id = "{IDP_ID}"
name = "Okta"
type = "okta"
[identity_providers.config]
client_id = "0oaclient"
client_secret = "s3cret"
okta_account = "https://dev-123.okta.com"

[[apps]]
id = "wiki"
name = "Wiki"
domain = "wiki.example.com"
upstream = "http://127.0.0.1:9"

[[apps.policies]]
name = "No contractors"
decision = "deny"
include = [{{ group_name = {{ name = "Contractors" }} }}]

[[apps.policies]]
name = "Engineering"
decision = "allow"
include = [{{ okta = {{ name = "Engineering" }} }}]
"""
    )
    return path


async def signed_in(redis_url: str, *people: Identity) -> None:
    store = RedisStore.from_url(redis_url)
    try:
        for identity in people:
            await Registry(store).record_sign_in(identity)
    finally:
        await store.close()


def test_gateway_explain_says_why_a_user_gets_in_or_not(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(signed_in(redis_url, ALICE, CAROL))
    config = str(config_file(tmp_path, redis_url))

    assert (
        main(["explain", "--config", config, "--email", "alice@example.com", "--app", "wiki"]) == 0
    )
    out = capsys.readouterr().out
    assert "alice@example.com" in out and "would get in to wiki: allow" in out
    assert "policy: Engineering" in out

    assert (
        main(["explain", "--config", config, "--email", "carol@example.com", "--app", "wiki"]) == 1
    )
    out = capsys.readouterr().out
    assert "would NOT get in to wiki: deny" in out
    assert "policy: No contractors" in out
    assert "rule: include: in group 'Contractors' matched" in out


@pytest.mark.parametrize(
    ("email", "app", "message"),
    [
        ("eve@example.com", "wiki", "has not signed in"),
        ("alice@example.com", "nope", "No app 'nope'"),
    ],
)
def test_gateway_explain_cannot_answer_for_an_unknown_user_or_app(
    tmp_path: Path,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
    email: str,
    app: str,
    message: str,
) -> None:
    asyncio.run(signed_in(redis_url, ALICE))
    config = str(config_file(tmp_path, redis_url))
    assert main(["explain", "--config", config, "--email", email, "--app", app]) == 2
    assert message in capsys.readouterr().err


def test_gateway_explain_refuses_the_memory_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(config_file(tmp_path, "memory"))
    assert main(["explain", "--config", config, "--email", "a@example.com", "--app", "wiki"]) == 2
    assert "memory" in capsys.readouterr().err
