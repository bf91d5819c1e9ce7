"""App tokens and their keys: what an origin verifies, with only /certs and a JWT library."""

from __future__ import annotations

import asyncio
import base64

import pytest
from clock import FakeClock
from cryptography import x509
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet

from gateway.authz.app_tokens import (
    _KEYS,
    KEEP_PREVIOUS,
    REMINT_BEFORE,
    ROTATE_AFTER,
    TOKEN_LIFETIME,
    AppTokens,
    SigningKey,
    SigningKeys,
    certs_document,
)
from gateway.config import App, app_aud
from gateway.identity import Identity
from gateway.state.sessions import CookieSigner, SessionManager
from gateway.state.store import Store

LOCK = f"{_KEYS}:lock"  # what SigningKeys takes while it rotates
ISSUER = "https://access.example.com"
WIKI = App(
    id="wiki",
    name="Wiki",
    domain="wiki.example.com",
    upstream="http://u",
    aud=app_aud("wiki"),
    session_duration=86400,
)
ALICE = Identity(
    id="nonce-1",
    user_uuid="uuid-alice",
    sub="00ualice",
    name="Alice",
    email="alice@example.com",
    groups=("Engineering",),
    idp_id="okta",
    idp_type="okta",
    iat=1,
    oidc_fields={"dept": ["R&D"]},
)


def verify(token: str, certs: dict[str, object]) -> dict[str, object]:
    """What an origin does: the JWKS from /certs, RS256 only, then the claims it relies on."""
    keys = KeySet.import_key_set(certs)  # type: ignore[arg-type]
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    return dict(decoded.claims)


@pytest.fixture
def keys(store: Store, clock: FakeClock) -> SigningKeys:
    return SigningKeys(store, clock)


@pytest.fixture
def tokens(store: Store, clock: FakeClock, keys: SigningKeys) -> AppTokens:
    sessions = SessionManager(store, CookieSigner(("k" * 32,), "gateway.session"), clock)
    return AppTokens(keys, sessions, ISSUER, clock)


async def test_a_minted_token_verifies_against_certs_with_every_claim(
    tokens: AppTokens, keys: SigningKeys, clock: FakeClock
) -> None:
    session, _ = await tokens.sessions.create(ALICE, kind="app", duration=7200, app_id="wiki")
    token = await tokens.mint(session, WIKI)
    claims = verify(token, certs_document(await keys.published()))
    assert claims["aud"] == [WIKI.aud] and len(WIKI.aud) == 64
    assert claims["iss"] == ISSUER
    assert claims["sub"] == "uuid-alice"
    assert claims["email"] == "alice@example.com"
    assert claims["type"] == "app"
    assert claims["identity_nonce"] == "nonce-1"
    assert claims["custom"] == {"dept": ["R&D"]}
    assert claims["iat"] == claims["nbf"] == int(clock())
    assert claims["exp"] == int(clock() + TOKEN_LIFETIME)


async def test_a_token_is_minted_once_and_reused_until_near_expiry(
    tokens: AppTokens, clock: FakeClock
) -> None:
    session, cookie = await tokens.sessions.create(ALICE, kind="app", duration=7200, app_id="wiki")
    assert tokens.cached(session, WIKI) is None
    first = await tokens.mint(session, WIKI)
    reloaded = await tokens.sessions.load(cookie)
    assert reloaded is not None and tokens.cached(reloaded, WIKI) == first
    clock.advance(TOKEN_LIFETIME - REMINT_BEFORE + 1)
    assert tokens.cached(reloaded, WIKI) is None  # near expiry: the guard mints again


async def test_a_token_never_outlives_its_session(tokens: AppTokens, clock: FakeClock) -> None:
    session, _ = await tokens.sessions.create(ALICE, kind="app", duration=600, app_id="wiki")
    token = await tokens.mint(session, WIKI)
    claims = verify(token, certs_document(await tokens.keys.published()))
    assert claims["exp"] == int(session.expires)


async def test_minting_never_brings_back_a_revoked_session(tokens: AppTokens) -> None:
    session, cookie = await tokens.sessions.create(ALICE, kind="app", duration=600, app_id="wiki")
    await tokens.sessions.revoke_user("uuid-alice")
    await tokens.mint(session, WIKI)
    assert await tokens.sessions.load(cookie) is None


async def test_old_tokens_verify_while_the_previous_key_is_served_then_fail(
    tokens: AppTokens, keys: SigningKeys, clock: FakeClock
) -> None:
    session, _ = await tokens.sessions.create(ALICE, kind="app", duration=86400, app_id="wiki")
    old_token = await tokens.mint(session, WIKI)
    clock.advance(ROTATE_AFTER)  # six weeks: the next signature rotates the key
    new_key = await keys.current()
    published = await keys.published()
    assert published[0].kid == new_key.kid and len(published) == 2
    verify(old_token, certs_document(published))  # still accepted
    clock.advance(KEEP_PREVIOUS)
    dropped = certs_document(await keys.published())
    assert len(dropped["keys"]) == 1
    with pytest.raises((BadSignatureError, JoseError, ValueError)):
        verify(old_token, dropped)


async def test_certs_has_cloudflares_shape_and_real_certificates(keys: SigningKeys) -> None:
    await keys.rotate()
    await keys.rotate()
    document = certs_document(await keys.published())
    assert set(document) == {"keys", "public_cert", "public_certs"}
    assert document["public_cert"] == document["public_certs"][0]
    for jwk, cert in zip(document["keys"], document["public_certs"], strict=True):
        assert jwk["kid"] == cert["kid"] and jwk["alg"] == "RS256" and "d" not in jwk
        public = x509.load_pem_x509_certificate(cert["cert"].encode()).public_key()
        assert public.public_numbers().n == int.from_bytes(  # type: ignore[union-attr]
            base64.urlsafe_b64decode(jwk["n"] + "=="), "big"
        )


async def test_instances_rotating_at_once_make_one_new_key(store: Store, clock: FakeClock) -> None:
    instances = [SigningKeys(store, clock) for _ in range(5)]
    await instances[0].current()
    clock.advance(ROTATE_AFTER)
    current = await asyncio.gather(*(i.current() for i in instances))
    assert len({k.kid for k in current}) == 1
    assert len(await instances[0].published()) == 2


async def test_a_rotation_whose_lock_lapsed_leaves_the_next_holders_lock_alone(
    store: Store, clock: FakeClock
) -> None:
    """A rotation slower than the lock's life: another instance took the lock meanwhile, and
    the slow one must not release it for them."""
    keys = SigningKeys(store, clock)
    load = keys._load

    async def load_after_the_lock_lapsed() -> list[SigningKey]:
        await store.delete(LOCK)  # our lock's TTL ran out...
        await store.set(LOCK, b"next", ttl=10)  # ...and another instance took it
        return await load()

    keys._load = load_after_the_lock_lapsed  # type: ignore[method-assign]
    await keys.rotate()

    assert await store.get(LOCK) == b"next"


async def test_a_burst_of_requests_on_a_new_session_mints_one_token(tokens: AppTokens) -> None:
    session, cookie = await tokens.sessions.create(ALICE, kind="app", duration=7200, app_id="wiki")
    minted = await asyncio.gather(*(tokens.mint(session, WIKI) for _ in range(20)))
    assert len(set(minted)) == 1
    reloaded = await tokens.sessions.load(cookie)
    assert reloaded is not None and tokens.cached(reloaded, WIKI) == minted[0]
