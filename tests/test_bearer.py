"""Bearer tokens: what counts as `Authorization: Bearer <token>`, and the comparison."""

from __future__ import annotations

import pytest

from gateway.web.bearer import bearer_matches, bearer_token, same_token

TOKEN = "admin-token-0123456789"


@pytest.mark.parametrize(
    ("authorization", "token"),
    [
        (f"Bearer {TOKEN}", TOKEN),
        (f"bearer {TOKEN}", TOKEN),  # RFC 9110 11.1: the scheme is case-insensitive
        (f"Bearer   {TOKEN}  ", TOKEN),
        ("", None),
        ("Bearer", None),
        ("Bearer    ", None),
        (TOKEN, None),  # no scheme
        (f"Basic {TOKEN}", None),
        (f"Token {TOKEN}", None),
    ],
)
def test_only_the_bearer_scheme_carries_a_token(authorization: str, token: str | None) -> None:
    assert bearer_token(authorization) == token


@pytest.mark.parametrize(
    ("given", "same"),
    [(TOKEN, True), (TOKEN + "x", False), (TOKEN[:-1], False), ("", False), (TOKEN.upper(), False)],
)
def test_a_token_matches_only_itself(given: str, same: bool) -> None:
    assert same_token(given, TOKEN) is same
    assert bearer_matches(f"Bearer {given}", TOKEN) is same
