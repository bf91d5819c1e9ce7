"""The SCIM bearer secret of each identity provider (SPEC 6).

A secret is 256 random bits, shown once (by `gateway scim-secret` or the admin API) and stored
only as its SHA-256 under `scim_secret:<idp id>`; it never expires. Regenerating overwrites
the hash, so the old secret stops working on every instance at the next request. A secret
pinned in the config (`scim_config.secret = "${ENV}"`) is then the only one accepted (pinning is
how an operator replaces a generated secret that leaked) and cannot be regenerated. Comparison
is on digests, in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from gateway.config import IdentityProvider
from gateway.errors import GatewayError
from gateway.state.store import Store

_KEY = "scim_secret:"  # the value is the secret's hash
_MAX_LENGTH = 512  # longer "secrets" are not ours: refused before hashing


def presented_secret(authorization: str) -> str:
    """The secret in an Authorization header: `Bearer <secret>`, the bare secret (some Okta
    setups), or `Bearer Bearer <secret>` (another Okta quirk)."""
    value = authorization.strip()
    for _ in range(2):
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            value = rest.strip()
    return value


def _digest(secret: str) -> bytes:
    # 256 random bits cannot be brute-forced: a plain hash suffices, no slow KDF needed.
    return hashlib.sha256(secret.encode()).hexdigest().encode()


class ScimSecrets:
    def __init__(self, store: Store):
        self.store = store

    async def verify(self, idp: IdentityProvider, presented: str) -> bool:
        """Whether `presented` is this IdP's SCIM secret: the pinned one if the config pins
        one, else the generated one."""
        if not presented or len(presented) > _MAX_LENGTH:
            return False
        digest = _digest(presented)
        pinned = idp.scim_config.secret
        if pinned:
            return hmac.compare_digest(digest, _digest(pinned))
        stored = await self.store.get(_KEY + idp.id)
        return stored is not None and hmac.compare_digest(digest, stored)

    async def regenerate(self, idp: IdentityProvider) -> str:
        """A new secret, returned this once; the previous one stops working at once."""
        if idp.scim_config.secret:
            raise GatewayError(
                "This identity provider's SCIM secret is pinned in the config file.",
                error="scim_secret_pinned",
                status=409,
            )
        secret = secrets.token_urlsafe(32)
        await self.store.set(_KEY + idp.id, _digest(secret))
        return secret

    async def forget(self, idp_id: str) -> None:
        """SCIM was turned off, or the IdP deleted: its secret stops working for good (turning
        SCIM on again makes a new one)."""
        await self.store.delete(_KEY + idp_id)

    async def ensure(self, idp: IdentityProvider) -> str | None:
        """When SCIM gets enabled: a first secret (returned this once), unless there is one
        already or the config pins one (None then)."""
        if idp.scim_config.secret:
            return None
        secret = secrets.token_urlsafe(32)
        if await self.store.set_if_absent(_KEY + idp.id, _digest(secret)):
            return secret
        return None
