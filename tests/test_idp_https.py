"""Every identity-provider URL the gateway sends a browser to or fetches from is https, except to a
loopback host (127.0.0.0/8, ::1, localhost): over plain http the codes, tokens and assertions
cross the network in clear and anyone on the path can read or alter them. The rule holds wherever
an IdP is made: the config file, the admin API and the operator console's form.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from admin_harness import assert_failure
from console_harness import console_doc, console_sign_in, csrf_of, post_form
from fake_okta import FakeOkta
from harness import TEAM, EchoUpstream, running, settings_doc
from saml_idp import KeyPair

from gateway.admin.openapi import build
from gateway.app import Gateway, create_app
from gateway.authn.providers.saml import idp_metadata, parse_idp_metadata
from gateway.config import SamlConfig, parse_identity_provider, parse_settings
from gateway.errors import ConfigError
from gateway.state.store import Store

REFUSED = "must be an https URL"
# (type, key): every IdP URL the gateway sends a browser to or fetches from (SAML's metadata_url
# too: tests/test_saml_signin.py).
FIELDS = [
    ("okta", "okta_account"),
    ("oidc", "issuer"),
    ("oidc", "auth_url"),
    ("oidc", "token_url"),
    ("oidc", "certs_url"),
    ("oidc", "userinfo_url"),
    ("saml", "sso_target_url"),
]
PLAIN_PUBLIC = (
    "http://idp.example.com",
    "http://10.0.0.7:8080",  # a private address is still a network away
    "http://localhost.example.com",
    "http://app.localhost",  # resolved by DNS like any name, not the loopback by rule
    "http://0.0.0.0:9000",
)
LOOPBACK_OR_HTTPS = (
    "https://idp.example.com",
    "http://127.0.0.1:9000",
    "http://127.8.9.10",
    "http://localhost:9000",
    "http://LOCALHOST",
    "http://[::1]:9000",
)


@pytest.fixture(scope="module")
def cert_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    return KeyPair.generate(tmp_path_factory.mktemp("idp"), "idp").cert_pem


def idp_config(idp_type: str, cert_pem: str, **urls: str) -> dict[str, Any]:
    """A valid `config` of this type (all https), with `urls` in place of its own."""
    if idp_type == "okta":
        config: dict[str, Any] = {"okta_account": "https://dev-9.okta.com"}
    elif idp_type == "oidc":
        config = {
            "issuer": "https://id.example.org",
            "auth_url": "https://id.example.org/authorize",
            "token_url": "https://id.example.org/token",
            "certs_url": "https://id.example.org/jwks",
            "userinfo_url": "https://id.example.org/userinfo",
        }
    else:
        return {
            "issuer_url": "http://www.okta.com/exk1",  # an entity id, never fetched
            "sso_target_url": "https://okta.example/sso",
            "idp_public_certs": [cert_pem],
            **urls,
        }
    return {"client_id": "c", "client_secret": "s", **config, **urls}


def url_for(key: str, origin: str) -> str:
    """The URL of `key` on `origin`: an Okta account is an origin, the others have a path."""
    return origin if key == "okta_account" else f"{origin}/sso"


def idp_body(idp_type: str, key: str, origin: str, cert_pem: str) -> dict[str, Any]:
    config = idp_config(idp_type, cert_pem, **{key: url_for(key, origin)})
    return {"name": "IdP", "type": idp_type, "config": config}


# --- the config file and the parser every entry point shares ---------------------------------


@pytest.mark.parametrize(("idp_type", "key"), FIELDS)
@pytest.mark.parametrize("origin", PLAIN_PUBLIC)
def test_the_config_file_refuses_plain_http_to_a_host_off_this_machine(
    idp_type: str, key: str, origin: str, cert_pem: str
) -> None:
    doc = settings_doc("http://127.0.0.1:9")
    doc["identity_providers"].append({"id": "other", **idp_body(idp_type, key, origin, cert_pem)})
    with pytest.raises(ConfigError) as refused:
        parse_settings(doc)
    assert refused.value.problems == [f"identity_providers[1].config.{key}: {REFUSED}"]


@pytest.mark.parametrize(("idp_type", "key"), FIELDS)
@pytest.mark.parametrize("origin", LOOPBACK_OR_HTTPS)
def test_https_and_plain_http_to_a_loopback_host_are_taken(
    idp_type: str, key: str, origin: str, cert_pem: str
) -> None:
    idp = parse_identity_provider({"id": "x", **idp_body(idp_type, key, origin, cert_pem)})
    assert getattr(idp.config, key) == url_for(key, origin)


# --- the admin API ----------------------------------------------------------------------------


@pytest_asyncio.fixture
async def gateway(store: Store, upstream: EchoUpstream, okta: FakeOkta) -> AsyncIterator[Gateway]:
    async with running(create_app(parse_settings(console_doc(upstream.url)), store=store)) as app:
        yield app


async def stored_idps(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = (await api.get("/api/identity_providers")).json()["result"]
    return result


@pytest.mark.parametrize(("idp_type", "key"), FIELDS)
async def test_the_admin_api_refuses_plain_http_and_stores_nothing(
    api: httpx.AsyncClient, idp_type: str, key: str, cert_pem: str
) -> None:
    before = await stored_idps(api)
    body = idp_body(idp_type, key, "http://idp.example.com", cert_pem)
    refused = await api.post("/api/identity_providers", json=body)
    assert assert_failure(refused, 400, "invalid_config") == [f"config.{key}: {REFUSED}"]
    assert await stored_idps(api) == before

    made = await api.post(
        "/api/identity_providers", json=idp_body(idp_type, key, "https://idp.example.com", cert_pem)
    )
    assert made.status_code == 201, made.text
    idp_id = made.json()["result"]["id"]
    replaced = await api.put(f"/api/identity_providers/{idp_id}", json=body)
    assert assert_failure(replaced, 400, "invalid_config") == [f"config.{key}: {REFUSED}"]
    shown = (await api.get(f"/api/identity_providers/{idp_id}")).json()["result"]
    assert shown["config"][key] == url_for(key, "https://idp.example.com")


@pytest.mark.parametrize(("idp_type", "key"), FIELDS)
async def test_the_admin_api_takes_plain_http_to_a_loopback_host(
    api: httpx.AsyncClient, idp_type: str, key: str, cert_pem: str
) -> None:
    body = idp_body(idp_type, key, "http://127.0.0.1:9000", cert_pem)
    made = await api.post("/api/identity_providers", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["result"]["config"][key] == url_for(key, "http://127.0.0.1:9000")


def test_the_openapi_document_is_as_strict_as_the_validation() -> None:
    """The request schemas say https for each of these fields (they say less than the validator
    takes: http to a loopback host is for tests, so they leave it out)."""
    schemas = build(TEAM)["components"]["schemas"]
    for key in {k for _, k in FIELDS} | {"metadata_url"}:
        patterns = _patterns_of(schemas, key)
        assert patterns, key  # the request schemas give each one
        assert all(p.startswith("^https://") for p in patterns), (key, patterns)


def _patterns_of(schema: Any, key: str) -> list[str]:
    """Every `pattern` under a property named `key`, anywhere in `schema`."""
    found: list[str] = []
    if isinstance(schema, dict):
        for name, value in schema.items():
            if name == "properties" and isinstance(value, dict) and key in value:
                found += _all_patterns(value[key])
            found += _patterns_of(value, key)
    elif isinstance(schema, list):
        for item in schema:
            found += _patterns_of(item, key)
    return found


def _all_patterns(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        own = [schema["pattern"]] if isinstance(schema.get("pattern"), str) else []
        return own + [p for k, v in schema.items() if k != "not" for p in _all_patterns(v)]
    if isinstance(schema, list):
        return [p for item in schema for p in _all_patterns(item)]
    return []


# --- the operator console ---------------------------------------------------------------------

NEW = "/console/identity-providers/new"


def form_of(body: dict[str, Any]) -> dict[str, str]:
    form = {"type": body["type"], "name": body["name"]}
    for key, value in body["config"].items():
        form[f"config.{key}"] = "\n".join(value) if isinstance(value, list) else value
    return form


@pytest.mark.parametrize(("idp_type", "key"), FIELDS)
async def test_the_console_form_shows_the_refusal_next_to_the_field_and_stores_nothing(
    client: httpx.AsyncClient,
    okta: FakeOkta,
    api: httpx.AsyncClient,
    idp_type: str,
    key: str,
    cert_pem: str,
) -> None:
    assert (await console_sign_in(client, okta, "00ualice")).status_code == 200
    before = await stored_idps(api)
    page = await client.get(f"{NEW}?type={idp_type}")
    body = idp_body(idp_type, key, "http://idp.example.com", cert_pem)
    refused = await post_form(client, NEW, form_of(body), csrf=csrf_of(page))
    assert refused.status_code == 400
    assert f'id="config.{key}-error">{REFUSED}<' in refused.text
    assert f'value="{url_for(key, "http://idp.example.com")}"' in refused.text  # kept as typed
    assert await stored_idps(api) == before

    local = idp_body(idp_type, key, "http://localhost:9000", cert_pem)
    taken = await post_form(client, NEW, form_of(local), csrf=csrf_of(page))
    assert taken.status_code == 303, taken.text


# --- SAML metadata: the SSO URL it names is held to the same rule ------------------------------


def test_metadata_naming_a_plain_http_sso_url_is_refused(cert_pem: str) -> None:
    """A `metadata_url` stands for `sso_target_url` (SPEC 10): the one its document names must
    be https too, else the browser would be sent to sign in over plain http."""

    def metadata_naming(sso_url: str) -> str:
        config = SamlConfig(
            issuer_url="http://www.okta.com/exk1",
            sso_target_url=sso_url,
            idp_public_certs=(cert_pem,),
        )
        return idp_metadata(config).xml

    with pytest.raises(ValueError, match="SingleSignOnService must be an https URL"):
        parse_idp_metadata(metadata_naming("http://idp.example.com/sso"))
    for origin in LOOPBACK_OR_HTTPS:
        assert parse_idp_metadata(metadata_naming(f"{origin}/sso")).sso_url == f"{origin}/sso"
