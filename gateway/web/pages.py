"""HTML pages shown to browsers: errors, access denied, the IdP picker, signed out, the IdP test,
with the operator's branding, and the result pages kept for a reload.

Rendered from `templates/` with autoescaping; a `[gateway] templates_dir` holds templates of
the same names that replace the packaged ones (the rest are still found). Every page gets the
branding (`[gateway] name`, `logo`, `footer`) from `base.html`. Only off the hot path: an
allowed, authenticated request never renders a template.

A page that ends a sign-in (access denied after the callback, the IdP test's outcome) is kept in
the store for `RESULT_TTL` under a short random id, and the browser is sent to a GET page that
shows it (`keep` and `kept`): reloading it shows the same page, where reloading the callback URL
could only say its sign-in link was used. What is kept is what the page shows, never a token.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
from starlette.responses import HTMLResponse

from gateway.config import GatewaySettings
from gateway.errors import GatewayError
from gateway.state.store import Store

_TITLES = {
    400: "Sign-in failed",
    401: "Sign-in required",
    403: "Access denied",
    404: "Not found",
    413: "Request too large",
    429: "Too many sign-ins",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}

# Pages must never be cached or framed: they can carry a signed-in user's details. The logo is
# inlined as a data: URL, so nothing is fetched from anywhere.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'"
    ),
}

RESULT_TTL = 300.0  # a result page can be reloaded, or shared, for 5 minutes
_RESULT_KEY = "result_page:"
ResultKind = Literal["denied", "test"]


@dataclass(frozen=True, slots=True)
class Branding:
    """What every page shows of the operator: a name, a logo and a footer line."""

    name: str = ""
    logo: str = ""  # a data: URL
    footer: str = ""

    @classmethod
    def from_settings(cls, gateway: GatewaySettings) -> Branding:
        """The branding the settings name; the logo file is read once, here (config
        validation made sure it is there)."""
        logo = ""
        if gateway.logo:
            path = Path(gateway.logo)
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            logo = f"data:{media_type};base64,{base64.b64encode(path.read_bytes()).decode()}"
        return cls(gateway.name, logo, gateway.footer)


class Pages:
    """The template environment and the pages built from it."""

    def __init__(self, branding: Branding | None = None, templates_dir: str = "") -> None:
        packaged = jinja2.PackageLoader("gateway", "templates")
        loader: jinja2.BaseLoader = (
            jinja2.ChoiceLoader([jinja2.FileSystemLoader(templates_dir), packaged])
            if templates_dir
            else packaged
        )
        self._env = jinja2.Environment(
            loader=loader, autoescape=True, undefined=jinja2.StrictUndefined
        )
        self._env.globals["brand"] = branding or Branding()

    @classmethod
    def for_settings(cls, gateway: GatewaySettings) -> Pages:
        return cls(Branding.from_settings(gateway), gateway.templates_dir)

    def render(
        self,
        template: str,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        html = self._env.get_template(template).render(**context)
        return HTMLResponse(
            html, status_code=status_code, headers={**PAGE_HEADERS, **(headers or {})}
        )

    def error(
        self,
        status: int,
        reason: str,
        *,
        reference: str = "",
        hint: str = "",
        title: str = "",
        retry_url: str = "",
    ) -> HTMLResponse:
        return self.render(
            "error.html",
            status,
            title=title or _TITLES.get(status, "Error"),
            status=status,
            reason=reason,
            hint=hint,
            reference=reference,
            retry_url=retry_url,
        )

    def gateway_error(self, exc: GatewayError, reference: str) -> HTMLResponse:
        hint = getattr(exc, "hint", "")
        return self.error(exc.status, exc.description, reference=reference, hint=hint)

    def show(self, page: Kept) -> HTMLResponse:
        return self.render(page.template, page.status, **page.context)


@dataclass(frozen=True, slots=True)
class Kept:
    """A page to show again: its template, status and context (plain JSON values)."""

    template: str
    status: int
    context: dict[str, Any]


async def keep(store: Store, kind: ResultKind, page: Kept) -> str:
    """Keep `page` for `RESULT_TTL`; the random id its GET page takes."""
    result_id = secrets.token_urlsafe(16)
    record = {"template": page.template, "status": page.status, "context": page.context}
    await store.set(f"{_RESULT_KEY}{kind}:{result_id}", json.dumps(record).encode(), RESULT_TTL)
    return result_id


async def kept(store: Store, kind: ResultKind, result_id: str) -> Kept | None:
    """The page kept under `result_id`, or None once it has expired (or never was)."""
    raw = await store.get(f"{_RESULT_KEY}{kind}:{result_id}")
    if raw is None:
        return None
    record = json.loads(raw)
    return Kept(record["template"], record["status"], record["context"])
