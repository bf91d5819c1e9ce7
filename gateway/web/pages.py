"""HTML pages shown to browsers: errors, access denied, the IdP picker, signed out.

Rendered from `templates/` with autoescaping. Only off the hot path: an allowed, authenticated
request never renders a template.
"""

from __future__ import annotations

from typing import Any

import jinja2
from starlette.responses import HTMLResponse

from gateway.errors import GatewayError

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

# Pages must never be cached or framed: they can carry a signed-in user's details.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


class Pages:
    """The template environment and the pages built from it."""

    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("gateway", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

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
