"""Login methods: `/console/identity-providers` (list, add) and `/console/identity-providers/<id>`
(edit, the redirect URL to paste into Okta, Test, SCIM, delete), SPEC 9.

Every change goes through `services.identity_providers`, as the admin API's do. A SCIM secret is
shown once: on the page that answers the change which made it (enabling SCIM, or regenerating
behind a confirmation step), never again. Deleting asks for confirmation too; a login method an
app or a risk sharing integration still names is not deleted: its page says what names it. IdPs
defined in the config file are shown read-only, with a note; their SCIM secret can still be
regenerated (unless the file pins it), as through the admin API.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from gateway.console.context import Console, field_errors
from gateway.console.idp_form import (
    FIELDS,
    SCIM_BEHAVIORS,
    TYPES,
    body_from_form,
    editable,
    form_values,
    scim_from_form,
)
from gateway.errors import ConflictError, GatewayError
from gateway.runtime import CALLBACK_PATH
from gateway.services import identity_providers as service

BASE = "/console/identity-providers"


async def list_page(console: Console) -> Response:
    rt = console.rt
    rows = [
        {"idp": idp, "read_only": service.read_only(rt, idp.id)}
        for idp in rt.settings.identity_providers
    ]
    return console.render("identity_providers.html", title="Login methods", rows=rows)


def _type_of(console: Console) -> str:
    chosen = console.request.query_params.get("type", "okta")
    return chosen if chosen in FIELDS else "okta"


async def new_page(console: Console) -> Response:
    idp_type = _type_of(console)
    return _form(console, None, {"type": idp_type, "config": {}}, {})


async def create(console: Console) -> Response:
    form = await console.read_form()
    idp_type = form.get("type", "okta")
    body = body_from_form(form, idp_type, None)
    try:
        saved = await service.create(console.rt, body, console.actor)
    except GatewayError as exc:
        return _form(console, None, body, field_errors(exc), status=exc.status)
    if "secret" in saved.result["scim_config"]:
        return _edit(console, saved.result["id"], secret=saved.result["scim_config"]["secret"])
    return console.redirect(f"{BASE}/{saved.result['id']}?saved=1")


async def edit_page(console: Console) -> Response:
    return _edit(console, console.request.path_params["idp_id"])


async def update(console: Console) -> Response:
    """The settings form, or (`form=scim`) the SCIM panel; both replace the whole object,
    starting from the stored one (so what the form does not show is kept)."""
    rt = console.rt
    idp_id = console.request.path_params["idp_id"]
    current = service.as_json(rt, service.find(rt, idp_id))
    service.writable(rt, idp_id)  # a file-defined IdP: the read-only page, nothing read
    stored = await rt.catalog.document(service.KIND, idp_id)
    form = await console.read_form()
    if form.get("form") == "scim":
        body = {**editable(stored), "scim_config": scim_from_form(form)}
    else:
        body = body_from_form(form, current["type"], stored)
    try:
        saved = await service.replace(rt, idp_id, body, console.actor)
    except GatewayError as exc:
        return _form(console, current, body, field_errors(exc), status=exc.status)
    if "secret" in saved.result["scim_config"]:
        return _edit(console, idp_id, secret=saved.result["scim_config"]["secret"])
    return console.redirect(f"{BASE}/{idp_id}?saved=1")


async def regenerate_secret(console: Console) -> Response:
    """Regenerate the SCIM secret: first a confirmation page, then (confirmed) the new secret,
    shown this once."""
    rt = console.rt
    idp = service.find(rt, console.request.path_params["idp_id"])
    form = await console.read_form()
    if form.get("confirm") != "yes":
        return console.confirm(
            title="Regenerate the SCIM secret?",
            question=f"Regenerate the SCIM secret of {idp.name}?",
            consequence="The current secret stops working at once: Okta's provisioning fails "
            "until you paste the new one into the Okta app's SCIM connection.",
            button="Regenerate the secret",
            back=f"{BASE}/{idp.id}#scim",
        )
    result = await service.refresh_scim_secret(rt, idp.id, console.actor)
    return _edit(console, idp.id, secret=result["scim_config"]["secret"])


async def delete(console: Console) -> Response:
    """First a confirmation page, then (confirmed) the login method is deleted. One still in
    use is refused on its own page (409), before the question and again when confirmed."""
    rt = console.rt
    idp = service.find(rt, console.request.path_params["idp_id"])
    form = await console.read_form()
    try:
        if form.get("confirm") != "yes":
            await service.refuse_if_used(rt, idp.id)
            return console.confirm(
                title="Delete this login method?",
                question=f"Delete the login method {idp.name}?",
                consequence="Everyone signed in with it is signed out, and nobody can sign in "
                "with it any more. Its SCIM secret stops working.",
                button="Delete",
                back=f"{BASE}/{idp.id}",
            )
        await service.delete(rt, idp.id, console.actor)
    except ConflictError as exc:
        current = service.as_json(rt, idp)
        return _form(console, current, current, {"": exc.description}, status=exc.status)
    return console.redirect(f"{BASE}?deleted=1")


def _edit(console: Console, idp_id: str, secret: str = "") -> Response:
    current = service.as_json(console.rt, service.find(console.rt, idp_id))
    return _form(console, current, current, {}, secret=secret)


def _form(
    console: Console,
    current: dict[str, Any] | None,
    body: dict[str, Any],
    errors: dict[str, str],
    *,
    status: int = 200,
    secret: str = "",
) -> Response:
    """The page of one login method (`current` None: a new one) showing `body`'s values."""
    idp_type = str(body.get("type", "okta"))
    scim = body.get("scim_config", {})
    return console.render(
        "identity_provider.html",
        status,
        title=current["name"] if current else "Add a login method",
        idp=current,
        idp_type=idp_type,
        types=TYPES,
        fields=FIELDS.get(idp_type, ()),
        values=form_values(body),
        errors=errors,
        scim=scim,
        behaviors=SCIM_BEHAVIORS,
        secret=secret,
        saved=console.request.query_params.get("saved") == "1",
        redirect_url=console.rt.settings.gateway.public_url + CALLBACK_PATH,
    )
