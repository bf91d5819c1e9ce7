"""What the admin API tests share: the token, a client that sends it, a settings document with
it, and the check of Cloudflare's failure envelope."""

from __future__ import annotations

from typing import Any

import httpx
from harness import TEAM

from gateway.admin.envelope import CODES
from gateway.app import Gateway

TOKEN = "admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def with_admin_token(doc: dict[str, Any]) -> dict[str, Any]:
    """A settings document (harness.settings_doc or scim_harness.scim_doc) with the token."""
    doc["gateway"]["admin_token"] = TOKEN
    return doc


def admin_client(app: Gateway) -> httpx.AsyncClient:
    """An in-process client of the team host that sends the admin token."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=TEAM, headers=AUTH)


def assert_failure(response: httpx.Response, status: int, error: str) -> list[str]:
    """The envelope of a failure with this status and code; returns the messages."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    assert body["result"] is None
    assert body["messages"] == []
    assert body["errors"], body
    assert {e["code"] for e in body["errors"]} == {CODES[error]}
    return [e["message"] for e in body["errors"]]
