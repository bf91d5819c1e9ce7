"""Sessions: the signed `CF_Authorization` cookie <-> a session record in the store.

The cookie holds only an opaque random session id, signed with itsdangerous (the first
`cookie_secret` signs, all of them verify, so keys rotate without signing anyone out). The
record lives in the store under `session:<id>` with a TTL equal to the session's duration, and
every user has an index `user_sessions:<user uuid>` of their session ids so one call revokes them
all; every app likewise has `app_sessions:<app id>` of its app sessions, and every IdP session
(the ID token's `sid`) `idp_session:<idp id>:<sha-256 of the sid>` of the sessions made from it,
for OpenID Connect Back-Channel Logout. Each index lives as long as its longest session.
Revocation deletes the records, so it takes effect on the next request on every instance.

A record also carries its user's risk schedule (`gateway/risk/levels.py`): when the user's
level can change, the risk engine rewrites it in each of their records (`set_risk`), and a new
session starts with the user's current one, so the proxy judges `user_risk_score` rules from
the record it reads anyway. Records are rewritten by compare-and-set, so writing the app tokens
back (`save`) and writing the risk never undo each other.

A cookie that is tampered with, signed by an unknown key, malformed, expired or revoked is "no
session", never an error. Reading a session is the hot path: one signature check, one store GET.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

from itsdangerous import BadData, Signer
from itsdangerous.encoding import base64_decode, base64_encode

from gateway.identity import Identity
from gateway.risk.levels import NO_RISK, RiskSchedule
from gateway.state.store import Clock, Store

SessionKind = Literal["global", "app"]

_SESSION_KEY = "session:"
_DECODED_CACHE_SIZE = 4096
_SIGNED_VALUE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_USER_INDEX_KEY = "user_sessions:"
_APP_INDEX_KEY = "app_sessions:"
_IDP_SESSION_INDEX_KEY = "idp_session:"
_NO_TOKENS: Mapping[str, tuple[str, float]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    kind: SessionKind  # "global": the team-domain session; "app": one application's session
    app_id: str  # "" for a global session
    identity: Identity
    created: float
    expires: float
    # app id -> (app token, its expiry): minted once, reused until near expiry
    # (authz/app_tokens.py). Read-only: a session is shared through the decode cache, so a new
    # token makes a new Session (`dataclasses.replace`), never a change to this one.
    tokens: Mapping[str, tuple[str, float]] = field(default_factory=lambda: _NO_TOKENS)
    risk: RiskSchedule = NO_RISK  # the user's risk level over time, as the engine last wrote it

    def __post_init__(self) -> None:
        if not isinstance(self.tokens, MappingProxyType):
            object.__setattr__(self, "tokens", MappingProxyType(dict(self.tokens)))

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "kind": self.kind,
                "app_id": self.app_id,
                "identity": self.identity.to_record(),
                "created": self.created,
                "expires": self.expires,
                "tokens": dict(self.tokens),
                **({"risk": self.risk.to_json()} if self.risk != NO_RISK else {}),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, session_id: str, raw: bytes) -> Session:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            id=session_id,
            kind=data["kind"],
            app_id=data["app_id"],
            identity=Identity.from_record(data["identity"]),
            created=data["created"],
            expires=data["expires"],
            tokens={app: (t[0], t[1]) for app, t in data.get("tokens", {}).items()},
            risk=RiskSchedule.from_json(data.get("risk")),
        )


def _with_risk(schedule: RiskSchedule) -> Callable[[Session], Session]:
    """The change to a session record that gives it `schedule`, unless it holds a newer one."""

    def change(current: Session) -> Session:
        if schedule.newer_than(current.risk):
            return dataclasses.replace(current, risk=schedule)
        return current

    return change


def _idp_session_index(idp_id: str, sid: str) -> str:
    # The sid is the IdP's string, of any length: its digest keeps the key bounded.
    return f"{_IDP_SESSION_INDEX_KEY}{idp_id}:{hashlib.sha256(sid.encode()).hexdigest()}"


class _KeyCachingSigner(Signer):
    """itsdangerous' Signer, deriving each key once instead of on every call (the cookie is
    checked on every request; the derivation is a hash of salt and secret that never changes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._derived: dict[bytes | None, bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        cache_key = secret_key.encode() if isinstance(secret_key, str) else secret_key
        derived = self._derived.get(cache_key)
        if derived is None:
            derived = self._derived[cache_key] = super().derive_key(secret_key)
        return derived


class CookieSigner:
    """Signs and verifies opaque cookie values; the first key signs, every key verifies.

    A value that verified is remembered (up to VERIFIED_KEPT of them), so the cookie a browser
    sends on every request is checked once per process, not once per request: verifying is
    deterministic for the keys the process was given, and only what verified is kept, so a
    forged or altered value is checked in full each time."""

    VERIFIED_KEPT = 4096

    def __init__(self, keys: tuple[str, ...], salt: str):
        if not keys:
            raise ValueError("at least one cookie key is needed")
        # itsdangerous signs with the *last* key of the list; our contract is "first signs".
        self._signer = _KeyCachingSigner(
            list(reversed(keys)), salt=salt, digest_method=hashlib.sha256
        )
        self._verified: dict[str, str] = {}

    def sign(self, value: str) -> str:
        return self._signer.sign(value).decode()

    def unsign(self, signed: str) -> str | None:
        """The value, or None for anything not signed by one of our keys."""
        value = self._verified.get(signed)
        if value is None:
            value = self._verify(signed)
            if value is not None:
                if len(self._verified) >= self.VERIFIED_KEPT:
                    self._verified.clear()  # a new set of cookies is soon checked again
                self._verified[signed] = value
        return value

    def _verify(self, signed: str) -> str | None:
        # itsdangerous decodes base64 leniently (stray characters are skipped); our values are
        # url-safe tokens, so anything else is refused before it is looked at.
        if not _SIGNED_VALUE.fullmatch(signed):
            return None
        # ...and only the canonical spelling of a signature: the last base64 character carries
        # spare bits, so several spellings decode to the same bytes.
        # A signature part that is no base64 at all (a truncated cookie: `a.b`) is no session
        # either: BadData covers the decoding as well as the signature check.
        signature = signed.rsplit(".", 1)[1]
        try:
            if base64_encode(base64_decode(signature)).decode() != signature:
                return None
            return self._signer.unsign(signed).decode()
        except (BadData, UnicodeError):
            return None


class SessionObserver(Protocol):
    """Told about sessions made and ended (the metrics), whichever code path did it."""

    def session_created(self, kind: str, session_id: str, expires: float) -> None: ...

    def sessions_revoked(self, count: int, session_ids: Iterable[str]) -> None: ...


class RiskSource(Protocol):
    """Where a new session learns its user's current risk schedule (the risk engine)."""

    async def schedule(self, user_uuid: str) -> RiskSchedule: ...


class SessionManager:
    """Creates, reads and revokes sessions in the store."""

    def __init__(
        self,
        store: Store,
        signer: CookieSigner,
        clock: Clock = time.time,
        observer: SessionObserver | None = None,
    ):
        self.store = store
        self.signer = signer
        self.clock = clock
        self._recent: dict[tuple[str, bytes], Session] = {}
        self.observer = observer
        self.risk: RiskSource | None = None  # set by the runtime once the engine exists

    async def create(
        self, identity: Identity, *, kind: SessionKind, duration: float, app_id: str = ""
    ) -> tuple[Session, str]:
        """A new session and the signed cookie value that names it."""
        now = self.clock()
        user = identity.user_uuid
        session = Session(
            id=secrets.token_urlsafe(32),
            kind=kind,
            app_id=app_id,
            identity=identity,
            created=now,
            expires=now + duration,
            risk=await self.risk.schedule(user) if self.risk is not None else NO_RISK,
        )
        # Every index first, the record last: a session exists only once each revocation that
        # must reach it (the user's, the app's, the IdP session's) can find it.
        await self.store.add_to_set(_USER_INDEX_KEY + user, session.id, ttl=duration)
        if app_id:
            await self.store.add_to_set(_APP_INDEX_KEY + app_id, session.id, ttl=duration)
        if identity.sid:
            index = _idp_session_index(identity.idp_id, identity.sid)
            await self.store.add_to_set(index, session.id, ttl=duration)
        await self.store.set(_SESSION_KEY + session.id, session.to_bytes(), ttl=duration)
        if self.risk is not None:
            # The engine writes the user's schedule first, then into the sessions it finds in
            # the index: read again now that this record is there, or a change made in between
            # would pass it by.
            latest = await self.risk.schedule(user)
            if latest.newer_than(session.risk):
                session = dataclasses.replace(session, risk=latest)
                await self._rewrite(session.id, _with_risk(latest))
        if self.observer is not None:
            self.observer.session_created(kind, session.id, session.expires)
        return session, self.signer.sign(session.id)

    async def load(self, cookie_value: str | None) -> Session | None:
        """The live session a cookie names, or None (bad signature, unknown, expired, revoked)."""
        if not cookie_value:
            return None
        session_id = self.signer.unsign(cookie_value)
        if session_id is None:
            return None
        return await self.by_id(session_id)

    async def by_id(self, session_id: str) -> Session | None:
        """The live session with this id, or None."""
        raw = await self.store.get(_SESSION_KEY + session_id)
        if raw is None:
            return None
        session = self._decoded(session_id, raw)
        # The store's TTL expires records; this guards a store whose clock lags ours.
        return session if session.expires > self.clock() else None

    def _decoded(self, session_id: str, raw: bytes) -> Session:
        """Decode a record, reusing the decoding of identical bytes (hot path: the same session
        is read on every request). Keyed by id and the exact bytes, so a changed or revoked
        record is never served from here: the store is still asked every time."""
        key = (session_id, raw)
        session = self._recent.get(key)
        if session is None:
            if len(self._recent) >= _DECODED_CACHE_SIZE:
                self._recent.clear()
            session = self._recent[key] = Session.from_bytes(session_id, raw)
        return session

    async def save(self, session: Session) -> bool:
        """Write back a session's app tokens (with those the record gained meanwhile); never
        brings back one that was revoked or expired meanwhile (False then), and keeps the risk
        schedule the record holds."""
        return await self._rewrite(
            session.id,
            lambda current: dataclasses.replace(
                current, tokens={**current.tokens, **session.tokens}
            ),
        )

    async def set_risk(self, user_uuid: str, schedule: RiskSchedule) -> None:
        """Write the user's risk schedule into each of their live sessions that holds an
        older one."""
        for session_id in await self.store.set_members(_USER_INDEX_KEY + user_uuid):
            await self._rewrite(session_id, _with_risk(schedule))

    async def _rewrite(self, session_id: str, change: Callable[[Session], Session]) -> bool:
        """Apply `change` to a live record by compare-and-set, again if another writer came
        first; False when there is no live record (revoked, expired)."""
        key = _SESSION_KEY + session_id
        while True:
            raw = await self.store.get(key)
            if raw is None:
                return False
            current = Session.from_bytes(session_id, raw)
            remaining = current.expires - self.clock()
            if remaining <= 0:
                return False
            new = change(current)
            if new == current:
                return True
            if await self.store.compare_and_set(key, raw, new.to_bytes(), remaining):
                return True

    async def end(self, session: Session) -> None:
        """Delete one session. Its id stays in the user's index until that is next revoked."""
        ended = await self.store.delete(_SESSION_KEY + session.id)
        if self.observer is not None:
            self.observer.sessions_revoked(ended, (session.id,))

    async def revoke_user(self, user_uuid: str) -> int:
        """Delete every session of a user; returns how many were live."""
        index = _USER_INDEX_KEY + user_uuid
        ids = await self.store.set_members(index)
        revoked = await self.store.delete(*(_SESSION_KEY + i for i in ids)) if ids else 0
        await self.store.delete(index)
        if self.observer is not None:
            self.observer.sessions_revoked(revoked, ids)
        return revoked

    async def revoke_idp_session(self, idp_id: str, sid: str, *, sub: str = "") -> int:
        """Delete every session made from one session at an IdP (its `sid`): the global
        session of that sign-in and the app sessions it handed out; with `sub`, only those of
        that user. Returns how many were live; their ids stay in the user's index until that is
        next read or revoked."""
        index = _idp_session_index(idp_id, sid)
        ids = await self.store.set_members(index)
        if sub:
            ids = {i for i in ids if (s := await self.by_id(i)) is None or s.identity.sub == sub}
        if not ids:
            return 0
        revoked = await self.store.delete(*(_SESSION_KEY + i for i in ids))
        await self.store.remove_from_set(index, *ids)
        if self.observer is not None:
            self.observer.sessions_revoked(revoked, ids)
        return revoked

    async def revoke_app(self, app_id: str) -> int:
        """Delete every app session of one app (admin `revoke_tokens`); returns how many were
        live. Their ids stay in the users' indexes until those are next read or revoked."""
        index = _APP_INDEX_KEY + app_id
        ids = await self.store.set_members(index)
        revoked = await self.store.delete(*(_SESSION_KEY + i for i in ids)) if ids else 0
        await self.store.delete(index)
        if self.observer is not None:
            self.observer.sessions_revoked(revoked, ids)
        return revoked

    async def active_sessions(self, user_uuid: str) -> list[Session]:
        """The user's live sessions (expired ids are pruned from the index)."""
        index = _USER_INDEX_KEY + user_uuid
        live: list[Session] = []
        stale: list[str] = []
        for session_id in sorted(await self.store.set_members(index)):
            raw = await self.store.get(_SESSION_KEY + session_id)
            if raw is None:
                stale.append(session_id)
            else:
                live.append(Session.from_bytes(session_id, raw))
        if stale:
            await self.store.remove_from_set(index, *stale)
        return live
