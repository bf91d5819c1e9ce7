"""Identity providers: create, replace, delete; the SCIM secret (SPEC 2, 7, 9).

The input is the Cloudflare object `{"name", "type", "config", "scim_config"}`, validated by the
config file's rules and the configuration checks (`gateway/checks.py`: an Okta Admin Console URL
is a 422); the id of a new one is generated. File-defined IdPs are read-only. An IdP that an app
still names in `allowed_idps` or in a policy rule, or that a risk sharing integration names as
its `reference_id`, cannot be deleted (409, naming each use: `refuse_if_used`).

SCIM: when a create or replace turns SCIM on, the result carries the first SCIM secret in
`scim_config.secret`, that once; `refresh_scim_secret` makes a new one (the old one stops
working at once), also on file-defined IdPs unless the file pins the secret. With SCIM off, no
secret is kept.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from gateway.admin.serialize import idp_document, idp_json
from gateway.checks import check_idp, errors_in, named_idps, warnings_in
from gateway.config import IdentityProvider, Settings
from gateway.errors import ConflictError, GatewayError, NotFoundError, ReadOnlyError
from gateway.runtime import Runtime
from gateway.services import commit
from gateway.state.catalog import Kind

KIND: Kind = "identity_providers"


@dataclass(frozen=True, slots=True)
class Saved:
    """A stored IdP as JSON (with a first SCIM secret, when one was made: shown once) and the
    configuration checks' warnings."""

    result: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def read_only(rt: Runtime, idp_id: str) -> bool:
    """Defined in the config file: shown, never changed through the API or the console."""
    return rt.catalog.read_only(KIND, idp_id)


def as_json(rt: Runtime, idp: IdentityProvider) -> dict[str, Any]:
    return idp_json(idp, read_only=read_only(rt, idp.id), public_url=rt.settings.gateway.public_url)


def find(rt: Runtime, idp_id: str) -> IdentityProvider:
    idp = rt.settings.idp(idp_id)
    if idp is None:
        raise NotFoundError(f"No identity provider with id {idp_id!r}.")
    return idp


def writable(rt: Runtime, idp_id: str) -> None:
    if read_only(rt, idp_id):
        raise ReadOnlyError(
            f"Identity provider {idp_id!r} is defined in the config file and is read-only here."
        )


def _check(idp: IdentityProvider) -> list[str]:
    """The configuration checks (as `check-config` runs them): an error is a 422; the
    warnings are returned."""
    findings = check_idp(idp)
    if errors_in(findings):
        raise GatewayError("; ".join(errors_in(findings)), error="unprocessable", status=422)
    return warnings_in(findings)


async def _with_first_secret(rt: Runtime, idp: IdentityProvider) -> dict[str, Any]:
    """The IdP's JSON; with SCIM on and no secret yet, a first one (shown this once). With SCIM
    off, no secret is kept: one that leaked cannot come back by turning SCIM on again."""
    result = as_json(rt, idp)
    if not idp.scim_config.enabled:
        await rt.scim_secrets.forget(idp.id)
        return result
    secret = await rt.scim_secrets.ensure(idp)
    if secret is not None:
        result["scim_config"]["secret"] = secret
    return result


async def create(rt: Runtime, body: dict[str, Any], actor: str) -> Saved:
    document, idp = idp_document(body, str(uuid.uuid4()), stored=None)
    warnings = _check(idp)
    await commit(rt, rt.catalog.put(KIND, document))
    await rt.audit_log.record(actor, "create", "identity_provider", idp.id, idp.name)
    return Saved(await _with_first_secret(rt, idp), warnings)


async def replace(rt: Runtime, idp_id: str, body: dict[str, Any], actor: str) -> Saved:
    """Replace an API-made IdP. Secrets left out of `body.config` keep their stored values
    (`idp_document`), so a form need not show them."""
    writable(rt, idp_id)
    stored = await rt.catalog.document(KIND, idp_id)  # 404 before the body is looked at
    document, idp = idp_document(body, idp_id, stored=stored)
    warnings = _check(idp)
    await commit(rt, rt.catalog.put(KIND, document, idp_id))
    await rt.audit_log.record(actor, "update", "identity_provider", idp.id, idp.name)
    return Saved(await _with_first_secret(rt, idp), warnings)


async def refuse_if_used(rt: Runtime, idp_id: str, settings: Settings | None = None) -> None:
    """409 naming everything that still names the IdP, when anything does: apps'
    `allowed_idps` and policy rules (in `settings`: by default those this instance serves) and
    risk sharing integrations' `reference_id` (as stored)."""
    apps = (settings or rt.settings).apps
    uses = []
    if allowing := [app.id for app in apps if idp_id in app.allowed_idps]:
        uses.append(
            f"Identity provider {idp_id!r} is in allowed_idps of app(s) {_listed(allowing)}; "
            "remove it there first."
        )
    if ruled := [app.id for app in apps if idp_id in named_idps(app)]:
        uses.append(
            f"Identity provider {idp_id!r} is named by policy rules of app(s) {_listed(ruled)}; "
            "change those rules first."
        )
    if sharing := [i for i in await rt.risk_integrations.all() if i.reference_id == idp_id]:
        integrations = ", ".join(f"{i.id!r} ({i.tenant_url})" for i in sharing)
        uses.append(
            f"Identity provider {idp_id!r} is the reference_id of risk sharing integration(s) "
            f"{integrations}; delete them or point them at another identity provider first."
        )
    if uses:
        raise ConflictError(" ".join(uses))


def _listed(ids: list[str]) -> str:
    return ", ".join(repr(i) for i in ids)


async def delete(rt: Runtime, idp_id: str, actor: str) -> None:
    """Delete an API-made IdP that nothing names (`refuse_if_used`, checked under the catalog's
    lock against the catalog as stored, so an app or an integration made at the same time on
    any instance cannot be left naming a deleted IdP)."""
    writable(rt, idp_id)
    name = idp.name if (idp := rt.settings.idp(idp_id)) is not None else ""
    await commit(
        rt, rt.catalog.delete(KIND, idp_id, lambda stored: refuse_if_used(rt, idp_id, stored))
    )
    await rt.scim_secrets.forget(idp_id)
    await rt.audit_log.record(actor, "delete", "identity_provider", idp_id, name)


async def refresh_scim_secret(rt: Runtime, idp_id: str, actor: str) -> dict[str, Any]:
    """A new SCIM secret (the old one stops working at once); the IdP's JSON with it."""
    idp = find(rt, idp_id)
    secret = await rt.scim_secrets.regenerate(idp)  # 409 when the file pins it
    await rt.audit_log.record(
        actor, "regenerate_scim_secret", "identity_provider", idp.id, idp.name
    )
    result = as_json(rt, idp)
    result["scim_config"]["secret"] = secret
    return result
