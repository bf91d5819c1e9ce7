"""The catalog: identity providers and apps from the config file plus those made through the API.

File objects are read-only. API objects live in the store as the validated JSON they were
created from, under one key with a version counter beside it, so every gateway instance sees a
change: each polls the version (one small GET every half second, never per request) and, when it
moved, reloads and swaps in new settings (`Runtime.apply`). The instance that made the change
applies it at once. Writes take a short lock, validate the merged result with the config file's
rules (same messages, same key paths), and store nothing when anything is wrong. What names a
catalog object from outside it (a risk sharing integration names an IdP) is checked and written
under the same lock (`locked`, `delete(refuse_if_used=...)`), so a reference never dangles.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Literal

from gateway.config import (
    Settings,
    check_references,
    parse_app,
    parse_identity_provider,
)
from gateway.errors import ConflictError, NotFoundError, ReadOnlyError, StoreUnavailableError
from gateway.state.store import Store
from gateway.state.store.lock import held

log = logging.getLogger("gateway.catalog")

Kind = Literal["identity_providers", "apps"]

_OBJECTS = "catalog:objects"
_VERSION = "catalog:version"
_LOCK = "catalog:lock"
POLL_INTERVAL = 0.5


class Catalog:
    """Reads and changes the API-made objects; merges them with the file's."""

    def __init__(self, store: Store, file_settings: Settings):
        self.store = store
        self.file_settings = file_settings
        self._file_ids = {
            "identity_providers": {i.id for i in file_settings.identity_providers},
            "apps": {a.id for a in file_settings.apps},
        }

    def read_only(self, kind: Kind, object_id: str) -> bool:
        return object_id in self._file_ids[kind]

    async def version(self) -> int:
        raw = await self.store.get(_VERSION)
        return int(raw) if raw else 0

    async def _documents(self) -> dict[str, list[dict[str, Any]]]:
        raw = await self.store.get(_OBJECTS)
        documents: dict[str, list[dict[str, Any]]] = json.loads(raw) if raw else {}
        return {"identity_providers": [], "apps": [], **documents}

    def _merge(self, documents: dict[str, list[dict[str, Any]]]) -> Settings:
        base = self.file_settings
        return replace(
            base,
            identity_providers=base.identity_providers
            + tuple(parse_identity_provider(d) for d in documents["identity_providers"]),
            apps=base.apps
            + tuple(parse_app(d, base.gateway.session_duration) for d in documents["apps"]),
        )

    async def load(self) -> Settings:
        """The file's objects and the API's, merged."""
        return self._merge(await self._documents())

    async def document(self, kind: Kind, object_id: str) -> dict[str, Any]:
        """The stored JSON of an API-made object (secrets included: callers redact)."""
        for document in (await self._documents())[kind]:
            if document["id"] == object_id:
                return document
        raise NotFoundError(f"No {kind[:-1].replace('_', ' ')} with id {object_id!r}.")

    async def put(
        self,
        kind: Kind,
        data: dict[str, Any],
        object_id: str | None = None,
        refuse_if_invalid: Callable[[Settings], None] | None = None,
    ) -> Settings:
        """Create (no id) or replace an object; returns the new merged settings.

        The body is validated exactly like the config file, with the same messages and key
        paths; the merged result must pass the cross-object checks too, and `refuse_if_invalid`
        (called under the lock with the merged result: it raises to refuse, e.g. a policy rule
        naming an IdP another instance just deleted). Nothing is stored on any problem
        (ConfigError) or for a read-only or unknown id.
        """
        if object_id is not None and self.read_only(kind, object_id):
            raise ReadOnlyError("This object is defined in the config file and is read-only.")
        async with self.locked():
            documents = await self._documents()
            existing = [d for d in documents[kind] if d["id"] == object_id]
            if object_id is not None and not existing:
                raise NotFoundError(f"No {kind[:-1].replace('_', ' ')} with id {object_id!r}.")
            new_id = object_id or data.get("id") or str(uuid.uuid4())
            if object_id is None and (
                self.read_only(kind, new_id) or any(d["id"] == new_id for d in documents[kind])
            ):
                raise ConflictError(f"An object with id {new_id!r} exists already.")
            document = {**data, "id": new_id}
            documents[kind] = [d for d in documents[kind] if d["id"] != new_id] + [document]
            settings = self._merge(documents)  # ConfigError: nothing stored
            if refuse_if_invalid is not None:
                refuse_if_invalid(settings)
            check_references(settings)
            await self._save(documents)
            return settings

    async def delete(
        self,
        kind: Kind,
        object_id: str,
        refuse_if_used: Callable[[Settings], Awaitable[None]] | None = None,
    ) -> Settings:
        """Delete an API-made object; returns the new merged settings. `refuse_if_used` is
        awaited under the lock with the settings as stored before the change: it raises to
        refuse (something outside the catalog still names the object)."""
        if self.read_only(kind, object_id):
            raise ReadOnlyError("This object is defined in the config file and is read-only.")
        async with self.locked():
            documents = await self._documents()
            remaining = [d for d in documents[kind] if d["id"] != object_id]
            if len(remaining) == len(documents[kind]):
                raise NotFoundError(f"No {kind[:-1].replace('_', ' ')} with id {object_id!r}.")
            if refuse_if_used is not None:
                await refuse_if_used(self._merge(documents))
            documents[kind] = remaining
            settings = self._merge(documents)
            check_references(settings)  # e.g. an app still allows the IdP being deleted
            await self._save(documents)
            return settings

    async def _save(self, documents: dict[str, list[dict[str, Any]]]) -> None:
        version = await self.version() + 1
        await self.store.set(_OBJECTS, json.dumps(documents).encode())
        await self.store.set(_VERSION, str(version).encode())

    async def has(self, kind: Kind, object_id: str) -> bool:
        """Whether the object exists as stored now (this instance's settings may be a poll
        behind): hold `locked()` for the answer to stay true."""
        documents = await self._documents()
        return self.read_only(kind, object_id) or any(d["id"] == object_id for d in documents[kind])

    def locked(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the catalog's lock: no object is created, replaced or deleted, on any instance,
        during the block. Every catalog change takes it; so does a change outside the catalog
        that names a catalog object (a risk sharing integration naming an IdP), so that the
        object cannot be deleted between the check and the write."""
        busy = "The catalog is locked by another change; try again."
        return held(self.store, _LOCK, ttl=10, attempts=100, pause=0.05, busy=busy)


async def watch(catalog: Catalog, apply: Callable[[Settings], None], stop: asyncio.Event) -> None:
    """Poll the catalog's version and apply each change, until `stop` is set."""
    seen = -1
    while not stop.is_set():
        try:
            version = await catalog.version()
            if version != seen:
                apply(await catalog.load())
                seen = version
        except StoreUnavailableError as exc:
            log.warning("catalog refresh failed: %s", exc.description)
        except Exception:  # a bad stored object must not stop every later refresh
            log.exception("catalog refresh failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_INTERVAL)
