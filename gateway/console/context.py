"""What a console page handler gets (`Console`) and how it answers: pages, redirects, forms.

`Console.render` renders a template of `templates/console/` with the console's context (who is
signed in, the nav, the CSRF token for forms) and the console's headers; `render_message` is the
page for an error or a refusal. `Console.form` is the POSTed form (urlencoded, bounded in
size), read once. `field_errors` turns a `ConfigError`'s key-path problems into the messages a
form shows next to each field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from gateway.console import security
from gateway.errors import ConfigError, GatewayError
from gateway.runtime import Runtime
from gateway.state.sessions import Session
from gateway.web import bodies

MAX_FORM_BYTES = 64 * 1024

# The nav, in the order it shows (SPEC 9's pages).
NAV = (
    ("Overview", "/console/"),
    ("Login methods", "/console/identity-providers"),
    ("Applications", "/console/apps"),
    ("Users", "/console/users"),
    ("Logs", "/console/logs"),
    ("Risk", "/console/risk"),
    ("Settings", "/console/settings"),
)


@dataclass
class Console:
    """One admitted request: the request, the runtime, the console session and its actor (the
    name the audit log gives changes made with it)."""

    request: Request
    rt: Runtime
    session: Session
    actor: str
    _form: dict[str, list[str]] | None = field(default=None, repr=False)

    @property
    def csrf(self) -> str:
        return security.csrf_token(self.rt.settings.gateway.cookie_secret, self.session.id)

    async def read_form(self) -> dict[str, str]:
        """The POSTed form's fields (the first value of each), read and kept once."""
        if self._form is None:
            body = await bodies.read_bounded(self.request, MAX_FORM_BYTES)
            if body is None:
                raise GatewayError("The form is too large.", status=413)
            text = body.decode("utf-8", errors="replace")
            self._form = {}
            for key, value in parse_qsl(text, keep_blank_values=True):
                self._form.setdefault(key, []).append(value)
        return {key: values[0] for key, values in self._form.items()}

    async def form_list(self, key: str) -> list[str]:
        """Every value of a repeated field (checkboxes, multi-selects)."""
        await self.read_form()
        assert self._form is not None  # noqa: S101 - read_form set it
        return list(self._form.get(key, []))

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A console page: `templates/console/<template>` with the nav and the CSRF token."""
        return self.rt.pages.render(
            f"console/{template}",
            status,
            headers=security.HEADERS,
            nav=NAV,
            here=self.request.url.path,
            actor=self.actor,
            csrf=self.csrf,
            **context,
        )

    def confirm(
        self, *, title: str, question: str, consequence: str, button: str, back: str
    ) -> HTMLResponse:
        """The confirmation page of a destructive action: its button POSTs the same path again
        with `confirm=yes`, which the action's handler waits for before it changes anything."""
        return self.render(
            "confirm.html",
            title=title,
            question=question,
            consequence=consequence,
            action=self.request.url.path,
            button=button,
            back=back,
        )

    def redirect(self, path: str) -> RedirectResponse:
        """After a change: to the page that shows it (303: the browser GETs it)."""
        return RedirectResponse(path, status_code=303)


def render_message(rt: Runtime, status: int, message: str, title: str = "") -> HTMLResponse:
    """A console page with just a message: a refusal, an error (no nav: the reader may not be
    admitted)."""
    titles = {403: "Access denied", 404: "Not found", 405: "Method not allowed"}
    return rt.pages.render(
        "console/message.html",
        status,
        headers=security.HEADERS,
        title=title or titles.get(status, "Error"),
        message=message,
        nav=False,
    )


def field_errors(exc: GatewayError) -> dict[str, str]:
    """A validation error's problems by key path (`config.client_id`), for the form to show
    next to each field; problems without a key path go under "" (shown above the form)."""
    problems = exc.problems if isinstance(exc, ConfigError) else exc.description.split("; ")
    errors: dict[str, str] = {}
    for problem in problems:
        key, sep, message = problem.partition(": ")
        if not sep or " " in key:
            key, message = "", problem
        errors[key] = f"{errors[key]}; {message}" if key in errors else message
    return errors
