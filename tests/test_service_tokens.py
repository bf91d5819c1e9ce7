"""Service tokens on both stores: the secret is shown once, stored hashed, checked exactly."""

from __future__ import annotations

from clock import FakeClock

from gateway.authz.service_tokens import ServiceTokens
from gateway.state.store import Store


async def test_a_token_authenticates_with_its_own_secret_only(store: Store) -> None:
    tokens = ServiceTokens(store)
    token, secret = await tokens.create("ci")
    assert (await tokens.authenticate(token.client_id, secret)) == token
    wrong = secret[:-1] + ("0" if secret[-1] != "0" else "1")
    assert await tokens.authenticate(token.client_id, wrong) is None
    assert await tokens.authenticate(token.client_id, "") is None
    assert await tokens.authenticate("unknown.access", secret) is None
    _, other_secret = await tokens.create("other")
    assert await tokens.authenticate(token.client_id, other_secret) is None


async def test_the_secret_is_never_stored_or_listed(store: Store) -> None:
    tokens = ServiceTokens(store)
    token, secret = await tokens.create("ci")
    assert secret not in token.secret_hash
    listed = [t.public() for t in await tokens.all()]
    assert listed == [token.public()]
    assert "secret" not in str(listed) and token.secret_hash not in str(listed)


async def test_an_expired_token_no_longer_authenticates(store: Store, clock: FakeClock) -> None:
    tokens = ServiceTokens(store, clock)
    token, secret = await tokens.create("short", duration=3600)
    assert await tokens.authenticate(token.client_id, secret) is not None
    clock.advance(3600)
    assert await tokens.authenticate(token.client_id, secret) is None


async def test_a_deleted_token_stops_working_at_once(store: Store) -> None:
    tokens = ServiceTokens(store)
    token, secret = await tokens.create("ci")
    assert await tokens.delete(token.id) is True
    assert await tokens.authenticate(token.client_id, secret) is None
    assert await tokens.all() == []
    assert await tokens.delete(token.id) is False
