"""`/api/openapi.json`: it describes every admin route, and the API keeps to it.

The property-based part runs schemathesis over the document, in process against the ASGI app
with the admin token, a bounded number of examples per operation: no 500, no status, header,
content type or body the document does not announce, schema-valid bodies accepted, the token
enforced, deleted objects gone.

Checks left out, and why: `negative_data_rejection` (a schema-invalid body must be refused): the
request schemas are deliberately conservative about string formats (URLs, durations, CIDRs) and
the config validator, the authority, accepts somewhat more. `positive_data_acceptance` also
allows 422: an `allowed_idps` entry naming no IdP is well-formed, valid per the schema, and
refused with a 422, which no schema can foresee.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from admin_harness import AUTH, TOKEN
from harness import TEAM, running, settings_doc

from gateway.admin import OPERATIONS
from gateway.admin.openapi import build
from gateway.app import create_app
from gateway.config import parse_app, parse_settings
from gateway.errors import ConfigError


def admin_doc() -> dict[str, Any]:
    doc = settings_doc("http://127.0.0.1:9")
    doc["gateway"].update(admin_token=TOKEN, store="memory")
    return doc


# One gateway for the whole run; schemathesis starts its lifespan on first use, in process.
# The schema is the document `/api/openapi.json` serves (a test below holds the two together),
# built here so that collecting this module starts nothing.
APP = create_app(parse_settings(admin_doc()))
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"max-examples": 20},
        "checks": {
            "negative_data_rejection": {"enabled": False},
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
            },
        },
        # Each rotation makes an RSA key: a few suffice to check the answer's shape.
        "operations": [
            {
                "include-operation-id": "rotateKeys",
                "generation": {"max-examples": 3},
                "phases": {"coverage": {"enabled": False}},
            }
        ],
    }
)
schema = schemathesis.openapi.from_dict(build(TEAM), config=CONFIG)
schema.app = APP


@schema.parametrize()
@hypothesis.settings(
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_the_api_keeps_to_its_document(case: schemathesis.Case) -> None:
    case.call_and_validate(base_url=TEAM, headers=AUTH)


# --- the document itself --------------------------------------------------------------------


async def test_the_served_document_is_the_one_tested() -> None:
    async with running(create_app(parse_settings(admin_doc()))) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEAM) as client:
            served = await client.get("/api/openapi.json")
    assert served.status_code == 200
    assert served.json() == build(TEAM)


def test_the_document_describes_exactly_the_routes() -> None:
    document = build(TEAM)
    described = {
        (method.upper(), path.removeprefix("/api"))
        for path, item in document["paths"].items()
        for method in item
    }
    assert described == {(op.method, op.path) for op in OPERATIONS}


def test_every_protected_operation_names_its_token_and_its_failures() -> None:
    document = build(TEAM)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": TEAM}]
    assert document["components"]["securitySchemes"]["adminToken"] == {
        "type": "http",
        "scheme": "bearer",
    }
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path == "/api/openapi.json":
                assert operation["security"] == []
                continue
            assert "security" not in operation  # the document's default: the admin token
            assert {"401", "503"} <= set(operation["responses"]), (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= set(operation["responses"]), (method, path)
            if "{" in path:
                assert "404" in operation["responses"], (method, path)


def test_deleting_an_idp_in_use_is_documented_as_a_409() -> None:
    delete = build(TEAM)["paths"]["/api/identity_providers/{idp_id}"]["delete"]
    conflict = delete["responses"]["409"]
    assert conflict["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Failure"
    }
    for use in ("allowed_idps", "policy rules", "risk sharing integration's reference_id"):
        assert use in conflict["description"]


class AdminStateMachine(schema.as_state_machine()):  # type: ignore[misc]
    """Sequences that follow the document's links: create, then read, replace, revoke, delete."""

    def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
        return {"base_url": TEAM, "headers": AUTH}


TestAdminSequences = AdminStateMachine.TestCase
TestAdminSequences.settings = hypothesis.settings(
    max_examples=10,
    stateful_step_count=6,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)


@pytest.mark.parametrize(
    "port", ["", ":0", ":80", ":00080", ":8443", ":65535", ":65536", ":78602", ":99999", ":x"]
)
def test_the_documented_url_pattern_takes_the_ports_the_config_takes(port: str) -> None:
    # The stateful test above sends what the pattern allows and expects it accepted: a port the
    # document allowed but the config refused (78602) failed it.
    url = f"https://app.example.com{port}/x"
    schemas = build(TEAM)["components"]["schemas"]
    documented = re.fullmatch(schemas["AppInput"]["properties"]["upstream"]["pattern"], url)
    app = {"id": "a", "name": "A", "domain": "a.example.com", "upstream": url, "policies": []}
    try:
        parse_app(app, default_duration=3600)
        accepted = True
    except ConfigError:
        accepted = False
    assert (documented is not None) == accepted
