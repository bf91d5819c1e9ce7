"""The app token (`Cf-Access-Jwt-Assertion`) and the keys that sign it.

Origins verify the token against `/cdn-cgi/access/certs`, as they do with Cloudflare Access. The
RS256 signing keys live in the store, shared by every gateway instance: the newest signs, a key
is replaced after six weeks, and the one it replaced is still published for seven days so tokens
already handed out keep verifying. Rotation takes a short lock in the store, so two instances
never rotate at once.

The same machinery, under another store key, keeps the keys that sign the Security Event Tokens
sent to Okta (`gateway/ssf/`): `SigningKeys(store, clock, name=..., purpose=...)`.

Tokens are minted off the hot path: once per session and app, kept in the session record, and
minted again only when near expiry (`AppTokens.cached` and `AppTokens.mint`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import NameOID
from joserfc import jwt
from joserfc.jwk import RSAKey

from gateway.authz.service_tokens import ServiceToken
from gateway.config import App
from gateway.identity import Identity, thaw
from gateway.state.sessions import Session, SessionManager
from gateway.state.store import Clock, Store
from gateway.state.store.lock import held

ROTATE_AFTER = 6 * 7 * 86400.0  # SPEC 4: keys rotate every 6 weeks
KEEP_PREVIOUS = 7 * 86400.0  # the previous key is served 7 days after it stops signing
TOKEN_LIFETIME = 3600.0  # an app token lives at most an hour, then is minted again
REMINT_BEFORE = 60.0  # a token this close to expiry is replaced before it is sent

_KEYS = "signing_keys"


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    jwk: dict[str, Any]  # the private JWK
    cert: str  # PEM, self-signed, for `public_cert(s)`
    created: float
    retired: float | None = None  # when a newer key took over

    def public_jwk(self) -> dict[str, Any]:
        public = RSAKey.import_key(self.jwk).as_dict(private=False)
        return {**public, "kid": self.kid, "alg": "RS256", "use": "sig"}


def _new_key(now: float, purpose: str) -> SigningKey:
    kid = secrets.token_hex(16)
    key = RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)
    private = key.private_key
    assert isinstance(private, RSAPrivateKey)  # noqa: S101 - generate_key(private=True)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"gateway {purpose} {kid}")])
    start = datetime.datetime.fromtimestamp(now, datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - datetime.timedelta(minutes=5))
        .not_valid_after(start + datetime.timedelta(seconds=ROTATE_AFTER + KEEP_PREVIOUS + 86400))
        .sign(private, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return SigningKey(kid, key.as_dict(private=True), pem, now)


class SigningKeys:
    """The signing keys in the store: current, previous, rotation. `name` is their store key
    (the app-token keys by default), `purpose` names them in their certificates."""

    def __init__(
        self, store: Store, clock: Clock, *, name: str = _KEYS, purpose: str = "app token"
    ):
        self.store = store
        self.clock = clock
        self.name = name
        self.purpose = purpose

    async def _load(self) -> list[SigningKey]:
        raw = await self.store.get(self.name)
        if raw is None:
            return []
        return [SigningKey(**k) for k in json.loads(raw)]

    async def current(self) -> SigningKey:
        """The key that signs now; the first one is made, and an old one replaced, on demand."""
        keys = await self._load()
        if keys and self.clock() - keys[0].created < ROTATE_AFTER:
            return keys[0]
        return (await self.rotate(only_if_stale=True))[0]

    async def published(self) -> list[SigningKey]:
        """The keys origins must accept: the current one and any retired < 7 days ago."""
        keys = await self._load()
        if not keys:
            keys = [await self.current()]
        now = self.clock()
        return [k for k in keys if k.retired is None or now - k.retired < KEEP_PREVIOUS]

    async def rotate(self, *, only_if_stale: bool = False) -> list[SigningKey]:
        """Start signing with a new key; the old one is kept for KEEP_PREVIOUS. Returns the
        keys, newest first. With `only_if_stale`, several instances finding the key old at
        once make one new key between them (checked again under the lock)."""
        busy = "Could not take the signing-key lock."
        async with held(self.store, f"{self.name}:lock", ttl=10, attempts=50, pause=0.1, busy=busy):
            now = self.clock()
            keys = await self._load()
            if only_if_stale and keys and now - keys[0].created < ROTATE_AFTER:
                return keys
            retired = [
                SigningKey(k.kid, k.jwk, k.cert, k.created, k.retired or now)
                for k in keys
                if k.retired is None or now - k.retired < KEEP_PREVIOUS
            ]
            keys = [_new_key(now, self.purpose), *retired]
            await self.store.set(self.name, json.dumps([_as_dict(k) for k in keys]).encode())
            return keys


def _as_dict(key: SigningKey) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "jwk": key.jwk,
        "cert": key.cert,
        "created": key.created,
        "retired": key.retired,
    }


def mint_app_token(
    key: SigningKey, *, app: App, identity: Identity, issuer: str, now: float, expires: float
) -> str:
    """The RS256 app token for one identity and app (SPEC 4 claims)."""
    claims = {
        "aud": [app.aud],
        "iss": issuer,
        "sub": identity.user_uuid,
        "email": identity.email,
        "type": "app",
        "iat": int(now),
        "nbf": int(now),
        "exp": int(expires),
        "identity_nonce": identity.id,
        "custom": thaw(identity.oidc_fields),
    }
    return sign_jwt(key, claims)


def sign_jwt(key: SigningKey, claims: dict[str, Any], *, typ: str = "JWT") -> str:
    """The compact RS256 JWS of `claims`, header `kid` and `typ`."""
    header = {"alg": "RS256", "kid": key.kid, "typ": typ}
    return jwt.encode(header, claims, _private_key(key.kid, json.dumps(key.jwk, sort_keys=True)))


@functools.lru_cache(maxsize=16)
def _private_key(kid: str, jwk: str) -> RSAKey:
    """The imported signing key. Importing checks the RSA key and costs more than signing with
    it, so each key is imported once per process (keyed by its content, not only its kid)."""
    return RSAKey.import_key(json.loads(jwk))


def mint_service_token_jwt(
    key: SigningKey, *, app: App, client_id: str, issuer: str, now: float, expires: float
) -> str:
    """The app token for a request authenticated by a service token: Cloudflare's shape, with
    the token's client id as `common_name` and no user (`sub` empty)."""
    claims = {
        "aud": [app.aud],
        "iss": issuer,
        "sub": "",
        "common_name": client_id,
        "type": "app",
        "iat": int(now),
        "nbf": int(now),
        "exp": int(expires),
    }
    return sign_jwt(key, claims)


def certs_document(keys: list[SigningKey]) -> dict[str, Any]:
    """`/cdn-cgi/access/certs`: Cloudflare's shape, current key first."""
    certs = [{"kid": k.kid, "cert": k.cert} for k in keys]
    return {"keys": [k.public_jwk() for k in keys], "public_cert": certs[0], "public_certs": certs}


class AppTokens:
    """Mints app tokens for sessions, keeping them in the session record for reuse."""

    def __init__(self, keys: SigningKeys, sessions: SessionManager, issuer: str, clock: Clock):
        self.keys = keys
        self.sessions = sessions
        self.issuer = issuer
        self.clock = clock
        # One mint at a time per (session, app): requests that arrive while it runs wait for it
        # instead of each signing a token of their own (a page's burst of requests, at sign-in
        # and at every renewal).
        self._minting: dict[tuple[str, str], asyncio.Future[str]] = {}
        self._service: dict[tuple[str, str], tuple[str, float]] = {}

    async def for_service_token(self, service_token: ServiceToken, app: App) -> str:
        """The app token for a service token's requests to one app: minted once per process
        and reused until near expiry (service tokens have no session to keep it in); never
        valid past the service token's own expiry."""
        client_id = service_token.client_id
        key = (client_id, app.id)
        token, expires = self._service.get(key, ("", 0.0))
        now = self.clock()
        if expires - now > REMINT_BEFORE:
            return token
        if len(self._service) >= 4096:  # bounded: drop them all, they are cheap to mint again
            self._service.clear()
        expires = now + TOKEN_LIFETIME
        if service_token.expires_at is not None:
            expires = min(expires, service_token.expires_at)
        token = mint_service_token_jwt(
            await self.keys.current(),
            app=app,
            client_id=client_id,
            issuer=self.issuer,
            now=now,
            expires=expires,
        )
        self._service[key] = (token, expires)
        return token

    def cached(self, session: Session, app: App) -> str | None:
        """The session's token for this app if it is not near expiry (no I/O: the hot path)."""
        token, expires = session.tokens.get(app.id, ("", 0.0))
        return token if expires - self.clock() > REMINT_BEFORE else None

    async def mint(self, session: Session, app: App) -> str:
        """A new token for this session and app, stored in the session record."""
        key = (session.id, app.id)
        running = self._minting.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._minting[key] = future
        try:
            token = await self._mint(session, app)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited failure is not reported
            raise
        else:
            future.set_result(token)
            return token
        finally:
            del self._minting[key]

    async def _mint(self, session: Session, app: App) -> str:
        now = self.clock()
        expires = min(session.expires, now + TOKEN_LIFETIME)
        token = mint_app_token(
            await self.keys.current(),
            app=app,
            identity=session.identity,
            issuer=self.issuer,
            now=now,
            expires=expires,
        )
        tokens = {**session.tokens, app.id: (token, expires)}
        await self.sessions.save(dataclasses.replace(session, tokens=tokens))
        return token
