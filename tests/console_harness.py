"""What the console tests share: a settings document whose `[console.policy]` admits alice (the
Engineering group) and not bob, signing a browser in through the console, reading a page's CSRF
token, and POSTing a console form as the browser would (from the team origin)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from admin_harness import with_admin_token
from fake_okta import FakeOkta
from harness import IDP_ID, TEAM, settings_doc

ADMINS = {"include": [{"group_name": {"name": "Engineering"}}]}
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def console_doc(upstream: str, policy: dict[str, Any] | None = ADMINS) -> dict[str, Any]:
    """The harness settings, the admin token, and (unless None) `[console.policy]`."""
    doc = with_admin_token(settings_doc(upstream))
    if policy is not None:
        doc["console"] = {"policy": policy}
    return doc


async def console_sign_in(
    client: httpx.AsyncClient, okta: FakeOkta, sub: str, idp_id: str = IDP_ID
) -> httpx.Response:
    """Sign `sub` in from the console's sign-in page; the answer of the console page it
    returns to."""
    to_okta = await client.get(f"/console/login?idp={idp_id}&next=/console/")
    assert to_okta.status_code == 302, to_okta.text
    back = await client.get(okta.authorize(to_okta.headers["location"], sub))
    assert back.status_code == 302, back.text
    assert back.headers["location"] == "/console/"
    return await client.get("/console/")


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token in a console page's forms."""
    found = _CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


async def post_form(
    client: httpx.AsyncClient,
    path: str,
    data: dict[str, Any],
    *,
    csrf: str | None,
    origin: str | None = TEAM,
) -> httpx.Response:
    """POST a console form; `csrf` None leaves the token out, `origin` None the Origin."""
    fields = dict(data)
    if csrf is not None:
        fields["csrf_token"] = csrf
    headers = {"Origin": origin} if origin is not None else {}
    return await client.post(path, data=fields, headers=headers)
