"""Service tokens: machine credentials sent as `CF-Access-Client-Id` / `CF-Access-Client-Secret`.

A token is a public client id and a random secret. Only a hash of the secret is stored, and it
is compared in constant time. The secret is shown once, when the token is created. A request
carrying the two headers is authenticated with one store GET (the same budget as a session
lookup); `service_token` and `any_valid_service_token` policy rules then decide.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass

from gateway.state.store import Clock, Store

_TOKEN_KEY = "service_token:"  # noqa: S105 - a key prefix; records are looked up by client id
_INDEX_KEY = "service_tokens"  # every client id, for listing


@dataclass(frozen=True, slots=True)
class ServiceToken:
    id: str
    name: str
    client_id: str
    secret_hash: str
    created: float
    expires_at: float | None = None  # None: never

    def public(self) -> dict[str, object]:
        """What the admin API shows (never the secret or its hash)."""
        return {
            "id": self.id,
            "name": self.name,
            "client_id": self.client_id,
            "created_at": self.created,
            "expires_at": self.expires_at,
        }


def _hash(secret: str) -> str:
    # The secret is 256 random bits: a plain hash cannot be brute-forced, no slow KDF needed.
    return hashlib.sha256(secret.encode()).hexdigest()


class ServiceTokens:
    def __init__(self, store: Store, clock: Clock = time.time):
        self.store = store
        self.clock = clock

    async def create(self, name: str, duration: float | None = None) -> tuple[ServiceToken, str]:
        """A new token and its secret (the only time the secret exists outside the caller)."""
        secret = secrets.token_hex(32)
        now = self.clock()
        token = ServiceToken(
            id=secrets.token_hex(16),
            name=name,
            client_id=f"{secrets.token_hex(16)}.access",
            secret_hash=_hash(secret),
            created=now,
            expires_at=now + duration if duration else None,
        )
        await self.store.set(_TOKEN_KEY + token.client_id, json.dumps(asdict(token)).encode())
        await self.store.add_to_set(_INDEX_KEY, token.client_id, ttl=10 * 365 * 86400)
        return token, secret

    async def authenticate(self, client_id: str, client_secret: str) -> ServiceToken | None:
        """The token these credentials belong to, or None (unknown, wrong secret, expired)."""
        if not client_id or not client_secret or len(client_id) > 128:
            return None
        raw = await self.store.get(_TOKEN_KEY + client_id)
        if raw is None:
            return None
        token = ServiceToken(**json.loads(raw))
        if not hmac.compare_digest(token.secret_hash, _hash(client_secret)):
            return None
        if token.expires_at is not None and token.expires_at <= self.clock():
            return None
        return token

    async def all(self) -> list[ServiceToken]:
        tokens = []
        for client_id in sorted(await self.store.set_members(_INDEX_KEY)):
            raw = await self.store.get(_TOKEN_KEY + client_id)
            if raw is not None:
                tokens.append(ServiceToken(**json.loads(raw)))
        return tokens

    async def delete(self, token_id: str) -> bool:
        for token in await self.all():
            if token.id == token_id:
                await self.store.delete(_TOKEN_KEY + token.client_id)
                await self.store.remove_from_set(_INDEX_KEY, token.client_id)
                return True
        return False
