"""Protected applications with their policies: create, replace, delete; revoke their sessions.

The input is the config file's `[[apps]]` table as JSON (policies inline), validated by the same
rules; the id, and so the AUD tag, of a new one is generated. Against the other apps and IdPs: a
domain another app already serves is a conflict (409), an `allowed_idps` entry naming no IdP is
unprocessable (422), and so is an error of the configuration checks (`gateway/checks.py`: a rule
naming an IdP that does not exist); their warnings (a group nobody has been seen in, no
policies) are accepted and returned. The IdPs an app names are checked again under the catalog's
lock against the catalog as stored (`_still_valid`), so an IdP deleted on another instance a
moment ago is not named by an app this one stores. File-defined apps are read-only.

`revoke_tokens` deletes every app session of the app, and of the apps sharing its host (their
cookie is one and the same), so the next request on any instance signs in again through the
team domain, where the policies are evaluated afresh. The team-domain session itself survives;
`users.revoke_user` ends that. An app served on the team host itself has no app sessions (its
cookie is the team-domain session), so there it revokes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.admin.serialize import app_document, app_json
from gateway.checks import Finding, check_app, errors_in, known_groups, warnings_in
from gateway.config import App, IdentityProvider, Settings, same_domain
from gateway.errors import ConflictError, GatewayError, NotFoundError, ReadOnlyError
from gateway.runtime import Runtime
from gateway.services import commit
from gateway.state.catalog import Kind

KIND: Kind = "apps"


@dataclass(frozen=True, slots=True)
class Saved:
    """A stored app and the configuration checks' warnings about it."""

    app: App
    warnings: list[str] = field(default_factory=list)


def read_only(rt: Runtime, app_id: str) -> bool:
    """Defined in the config file: shown, never changed through the API or the console."""
    return rt.catalog.read_only(KIND, app_id)


def as_json(rt: Runtime, app: App) -> dict[str, Any]:
    return app_json(app, read_only=read_only(rt, app.id))


def find(rt: Runtime, app_id: str) -> App:
    app = rt.app_by_id(app_id)
    if app is None:
        raise NotFoundError(f"No app with id {app_id!r}.")
    return app


def writable(rt: Runtime, app_id: str) -> None:
    if read_only(rt, app_id):
        raise ReadOnlyError(f"App {app_id!r} is defined in the config file and is read-only here.")


async def _check(rt: Runtime, app: App) -> list[str]:
    """The checks that involve other objects, with messages that name them, and the
    configuration checks (as `check-config` runs them): a clash is a 409, an error a 422; the
    warnings are returned."""
    for other in rt.settings.apps:
        if other.id != app.id and same_domain(other.domain, app.domain):
            raise ConflictError(f"domain: {app.domain!r} is already served by app {other.id!r}.")
    idps = rt.settings.identity_providers
    findings = check_app(app, idps, await known_groups(rt.store, {idp.id for idp in idps}))
    _refuse_errors(app, idps, findings)
    return warnings_in(findings)


def _refuse_errors(app: App, idps: Sequence[IdentityProvider], findings: list[Finding]) -> None:
    """422 for an `allowed_idps` entry naming none of `idps`, or an error among `findings`."""
    known = {idp.id for idp in idps}
    problems = [
        f"allowed_idps[{i}]: no identity provider {idp_id!r}"
        for i, idp_id in enumerate(app.allowed_idps)
        if idp_id not in known
    ]
    problems += errors_in(findings)
    if problems:
        raise GatewayError("; ".join(problems), error="unprocessable", status=422)


def _still_valid(app: App) -> Callable[[Settings], None]:
    """The check the catalog makes under its lock, against the catalog as stored: the IdPs the
    app names still exist there (this instance's settings may be a poll behind a delete)."""

    def check(stored: Settings) -> None:
        idps = stored.identity_providers
        _refuse_errors(app, idps, check_app(app, idps, known_groups=None))

    return check


async def create(rt: Runtime, body: dict[str, Any], actor: str) -> Saved:
    document, app = app_document(body, str(uuid.uuid4()), rt.settings.gateway.session_duration)
    warnings = await _check(rt, app)
    await commit(rt, rt.catalog.put(KIND, document, refuse_if_invalid=_still_valid(app)))
    await rt.audit_log.record(actor, "create", "app", app.id, app.name)
    return Saved(app, warnings)


async def replace(rt: Runtime, app_id: str, body: dict[str, Any], actor: str) -> Saved:
    writable(rt, app_id)
    await rt.catalog.document(KIND, app_id)  # 404 before the body is looked at
    document, app = app_document(body, app_id, rt.settings.gateway.session_duration)
    warnings = await _check(rt, app)
    await commit(rt, rt.catalog.put(KIND, document, app_id, _still_valid(app)))
    await rt.audit_log.record(actor, "update", "app", app.id, app.name)
    return Saved(app, warnings)


async def delete(rt: Runtime, app_id: str, actor: str) -> None:
    writable(rt, app_id)
    name = app.name if (app := rt.app_by_id(app_id)) is not None else ""
    await commit(rt, rt.catalog.delete(KIND, app_id))
    await rt.sessions.revoke_app(app_id)  # nothing left for them to open; don't keep them
    await rt.audit_log.record(actor, "delete", "app", app_id, name)


async def revoke_tokens(rt: Runtime, app_id: str, actor: str) -> int:
    """End every app session of the app (and of the apps sharing its host); how many."""
    app = find(rt, app_id)
    revoked = 0
    for sharing in [a.id for a in rt.settings.apps if a.host == app.host]:
        revoked += await rt.sessions.revoke_app(sharing)
    await rt.audit_log.record(actor, "revoke_sessions", "app", app.id, app.name)
    return revoked
