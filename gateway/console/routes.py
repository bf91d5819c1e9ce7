"""The console's pages: one line per method and path below `/console` (SPEC 9 fixes the paths).

`PUBLIC` pages are served to anyone (static files, starting a sign-in, the console-link page);
every page of `PAGES` only to a user the console admits, and its POSTs only with the CSRF token
and from the gateway's origin (`app.py` sees to both before a handler runs). A new page is one
line in `PAGES`: the access tests walk this list, so they cover it at once.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path

from gateway.console import (
    apps,
    identity_providers,
    logs,
    overview,
    risk,
    settings,
    signin,
    static,
    users,
)
from gateway.console.context import Console
from gateway.runtime import Runtime

PREFIX = "/console"

Handler = Callable[[Console], Awaitable[Response]]
PublicHandler = Callable[[Request, Runtime], Awaitable[Response]]
H = TypeVar("H", Handler, PublicHandler)


@dataclass(frozen=True, slots=True)
class Page(Generic[H]):
    """One method on one path below `/console` (Starlette path syntax: "/apps/{app_id}")."""

    method: str
    path: str
    handler: H
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", compile_path(self.path)[0])

    def params(self, path: str) -> dict[str, str]:
        found = self.pattern.fullmatch(path)
        return found.groupdict() if found is not None else {}


def match(pages: Sequence[Page[H]], method: str, path: str) -> tuple[Page[H] | None, list[str]]:
    """The page for this method and path, else the methods the path allows."""
    allowed: list[str] = []
    for page in pages:
        if page.pattern.fullmatch(path) is None:
            continue
        if page.method == method:
            return page, allowed
        allowed.append(page.method)
    return None, allowed


PUBLIC: list[Page[PublicHandler]] = [
    Page("GET", "/static/{name}", static.serve),
    Page("GET", "/login", signin.start),
    Page("GET", "/link", signin.link_page),
    Page("POST", "/link", signin.redeem_link),
]

PAGES: list[Page[Handler]] = [
    Page("GET", "/", overview.show),
    Page("GET", "/identity-providers", identity_providers.list_page),
    Page("GET", "/identity-providers/new", identity_providers.new_page),
    Page("POST", "/identity-providers/new", identity_providers.create),
    Page("GET", "/identity-providers/{idp_id}", identity_providers.edit_page),
    Page("POST", "/identity-providers/{idp_id}", identity_providers.update),
    Page("POST", "/identity-providers/{idp_id}/scim-secret", identity_providers.regenerate_secret),
    Page("POST", "/identity-providers/{idp_id}/delete", identity_providers.delete),
    Page("GET", "/apps", apps.list_page),
    Page("GET", "/apps/new", apps.new_page),  # before "/apps/{app_id}": "new" is no app's page
    Page("POST", "/apps/new", apps.create),
    Page("GET", "/apps/{app_id}", apps.edit_page),
    Page("POST", "/apps/{app_id}", apps.update),
    Page("POST", "/apps/{app_id}/delete", apps.delete),
    Page("GET", "/users", users.list_page),
    Page("GET", "/users/{user_id}", users.show),
    Page("POST", "/users/{user_id}/revoke", users.revoke),
    Page("POST", "/users/{user_id}/reset-risk", users.reset_risk),
    Page("GET", "/logs", logs.show),
    Page("GET", "/risk", risk.show),
    Page("POST", "/risk/behaviors", risk.save_behaviors),
    Page("POST", "/risk/integrations", risk.add_integration),
    Page("POST", "/risk/integrations/{integration_id}", risk.change_integration),
    Page("POST", "/risk/integrations/{integration_id}/delete", risk.delete_integration),
    Page("GET", "/settings", settings.show),
    Page("POST", "/settings/keys/rotate", settings.rotate_keys),
    Page("POST", "/settings/service-tokens", settings.create_service_token),
    Page("POST", "/settings/service-tokens/{token_id}/delete", settings.delete_service_token),
]
