"""`/console/apps` and `/console/apps/<id>`: the applications, each with its policies.

The list shows every app (file-defined ones marked read-only) and leads to the form for a new
one. An app's page is one form: the app's fields and its policies, built with the rule builder
(`rule_forms.py`: its buttons post the form and draw it again, nothing is stored until "Save").
Saving sends the app's JSON body through the same service as `POST/PUT /api/apps`, so a problem
comes back with the key path of its field and is shown next to it. "Who would get in" judges a
user of the registry against the app as stored (`admin/explain.py`, as `gateway explain`).
"""

from __future__ import annotations

import typing
from typing import Any

from starlette.responses import Response

from gateway.admin.explain import explain_email
from gateway.checks import check_app, warnings_in
from gateway.config import App, SameSite
from gateway.console import rule_forms
from gateway.console.context import Console, field_errors
from gateway.console.rule_forms import PolicyForm
from gateway.errors import GatewayError, NotFoundError
from gateway.services import apps as app_service

SAME_SITE: tuple[str, ...] = typing.get_args(SameSite)
DECISION_LABELS = {
    "allow": "Allow",
    "deny": "Deny",
    "bypass": "Bypass (no sign-in, no identity)",
    "non_identity": "Service auth (service tokens, no sign-in)",
}
WHO_CHOICES = 500  # emails the "who would get in" field offers; any other can be typed
_FLAGS = ("auto_redirect_to_identity", "http_only_cookie_attribute")
_TEXTS = ("name", "domain", "upstream", "session_duration", "custom_deny_message")


def _find(console: Console) -> App:
    return app_service.find(console.rt, console.request.path_params["app_id"])


async def list_page(console: Console) -> Response:
    rt = console.rt
    apps = [app_service.as_json(rt, a) for a in rt.settings.apps]
    deleted = console.request.query_params.get("deleted") == "1"
    return console.render("apps.html", title="Applications", apps=apps, deleted=deleted)


def _blank() -> dict[str, Any]:
    """A new app's fields: the config's defaults."""
    return {
        "name": "",
        "domain": "",
        "upstream": "",
        "session_duration": "",
        "allowed_idps": [],
        "auto_redirect_to_identity": True,
        "same_site_cookie_attribute": "lax",
        "http_only_cookie_attribute": True,
        "custom_deny_message": "",
        "read_only": False,
    }


async def new_page(console: Console) -> Response:
    # One allow policy with no rule yet: saved as it is, it is refused ("include: needs at
    # least one rule"), so nobody is let in by a default the operator did not choose.
    return await _form(console, None, _blank(), (PolicyForm(),))


async def edit_page(console: Console) -> Response:
    app = _find(console)
    values = app_service.as_json(console.rt, app)
    policies = tuple(PolicyForm.from_json(p) for p in values["policies"])
    return await _form(console, app, values, policies)


async def _form(
    console: Console,
    app: App | None,
    values: dict[str, Any],
    policies: tuple[PolicyForm, ...],
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    rt = console.rt
    idps = rt.settings.identity_providers
    kinds = rule_forms.rule_kinds()
    groups = await rule_forms.group_choices(rt.store, [idp.id for idp in idps])
    warnings: list[str] = []
    if app is not None and not errors:
        warnings = warnings_in(check_app(app, idps, frozenset(groups)))
    explanations = None
    who = console.request.query_params.get("who", "").strip()
    if app is not None and who:
        try:
            explanations = [e.to_json() for e in await explain_email(rt.registry, app, who)]
        except NotFoundError as exc:
            errors = {**(errors or {}), "who": exc.description}
    return console.render(
        "app.html",
        status,
        title="New application" if app is None else app.name,
        app=app,
        values=values,
        policies=policies,
        errors=errors or {},
        idps=idps,
        same_site_options=[(v, v) for v in SAME_SITE],
        decision_options=[(d, DECISION_LABELS.get(d, d)) for d in rule_forms.DECISIONS],
        kinds=kinds,
        kind_of={k.kind: k for k in kinds},
        rule_lists=rule_forms.RULE_LISTS,
        request_saved=console.request.query_params.get("saved") == "1",
        choices=await _choices(console, groups),
        user_emails=sorted({r.email for r in await rt.registry.all()})[:WHO_CHOICES],
        who=who,
        explanations=explanations,
        warnings=warnings,
    )


async def _choices(console: Console, groups: list[str]) -> dict[str, list[tuple[str, str]]]:
    """What the builder offers for a field, by what the field names (`Field.names`): the
    group picker's groups, the IdPs and the service tokens, as (value, label)."""
    rt = console.rt
    idps = rt.settings.identity_providers
    return {
        "group": [(name, name) for name in groups],
        "identity_provider": [(idp.id, idp.name) for idp in idps],
        "service_token": [(t.id, t.name) for t in await rt.service_tokens.all()],
    }


async def _posted(console: Console) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The app's fields as posted, every value as typed, and the whole form with every value
    of each field (the rule builder's checkboxes repeat a name)."""
    form = await console.read_form()
    values: dict[str, Any] = {key: form.get(key, "") for key in _TEXTS}
    values |= {key: form.get(key) == "true" for key in _FLAGS}
    values["same_site_cookie_attribute"] = form.get("same_site_cookie_attribute", "")
    values["allowed_idps"] = await console.form_list("allowed_idps")
    values["read_only"] = False
    return values, {key: await console.form_list(key) for key in form}


def body_of(values: dict[str, Any], policies: tuple[PolicyForm, ...]) -> dict[str, Any]:
    """The app's JSON body, as `POST/PUT /api/apps` takes it. An empty session duration is
    left out: the app then takes the gateway's."""
    body = {key: value for key, value in values.items() if key != "read_only"}
    body["name"] = body["name"].strip()
    body["domain"] = body["domain"].strip()
    body["upstream"] = body["upstream"].strip()
    if not body["session_duration"].strip():
        del body["session_duration"]
    body["policies"] = rule_forms.policy_documents(policies)
    return body


async def _save(console: Console, app: App | None) -> Response:
    values, form = await _posted(console)
    policies = rule_forms.policy_forms(form)
    edit = rule_forms.apply_action(policies, (form.get("action") or [""])[0], form)
    if edit is not None:  # a builder button: draw the form again, store nothing
        errors = {edit.field: edit.problem} if edit.problem else None
        return await _form(console, app, values, edit.policies, errors)
    try:
        if app is None:
            saved = await app_service.create(console.rt, body_of(values, policies), console.actor)
        else:
            saved = await app_service.replace(
                console.rt, app.id, body_of(values, policies), console.actor
            )
    except GatewayError as exc:
        if exc.status >= 500:
            raise
        return await _form(console, app, values, policies, field_errors(exc), exc.status)
    return console.redirect(f"/console/apps/{saved.app.id}?saved=1")


async def create(console: Console) -> Response:
    return await _save(console, None)


async def update(console: Console) -> Response:
    app = _find(console)
    app_service.writable(console.rt, app.id)
    return await _save(console, app)


async def delete(console: Console) -> Response:
    """Delete the app (its sessions end with it): first a confirmation page, then (confirmed)
    the same service as `DELETE /api/apps/{id}`."""
    app = _find(console)
    app_service.writable(console.rt, app.id)
    form = await console.read_form()
    if form.get("confirm") != "yes":
        return console.confirm(
            title=f"Delete {app.name}?",
            question=f"Delete the application {app.name} ({app.domain})?",
            consequence="Its policies go with it, its users' sessions on it end, and the gateway "
            "no longer serves its domain.",
            button="Delete the application",
            back=f"/console/apps/{app.id}",
        )
    await app_service.delete(console.rt, app.id, console.actor)
    return console.redirect("/console/apps?deleted=1")
