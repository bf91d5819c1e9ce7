"""Identity providers behind one interface: `Provider`, and the values it hands the sign-in flow.

A provider turns a sign-in into two legs. `begin` says where to send the browser and what to
keep, server side, until the answer comes back; `finish` takes the parameters of that answer
(the callback's query or form) with what was kept, and says who signed in, or that the browser
must go to the IdP once more. Nothing in the interface is OpenID Connect: `oidc.py` is the core
that the `okta` and `generic` (type "oidc") providers share, and `saml.py` (type "saml") is a
third provider beside them. The runtime builds one provider per configured IdP, chosen by its type
(`gateway.runtime`); `gateway.authn.signin` keeps what `begin` asks for under the state. A value
an IdP sent reaches a message or the log only through `shorten`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gateway.config import IdentityProvider

GroupsSource = Literal["claim", "userinfo", "api", "attribute", "none"]


@dataclass(frozen=True, slots=True)
class SignInRequest:
    """Where to send the browser, and what to keep until its answer comes back.

    `state` is the value the answer carries back (OAuth `state`, SAML `RelayState`); `pending`
    holds the single-use values the provider needs to check that answer. Both stay on the
    server, bound to the browser, for one answer.
    """

    url: str
    state: str
    pending: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class SignInResult:
    """Who signed in, as the provider established it (validated token, userinfo, Groups API).

    `restarted`: the provider sent the browser back to the IdP once before this answer.
    For SAML, `id_token_claims` holds the assertion's attributes (all of them, for the test
    page), `saml_attributes` the ones kept, and `email_source` where the email came from.
    """

    sub: str
    email: str
    name: str
    groups: tuple[str, ...]
    groups_source: GroupsSource
    groups_api_pages: int
    groups_note: str
    oidc_fields: dict[str, Any]
    amr: tuple[str, ...]
    id_token_claims: dict[str, Any]
    restarted: bool = False
    saml_attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    email_source: str = ""


class Provider(Protocol):
    """One configured identity provider, for its whole life in the process."""

    @property
    def idp(self) -> IdentityProvider:
        """The settings it was built from; an unchanged IdP keeps its provider and caches."""
        ...

    async def begin(self) -> SignInRequest:
        """A new sign-in: where to send the browser. Raises SignInError (e.g. discovery)."""
        ...

    async def finish(
        self, answer: Mapping[str, str], pending: Mapping[str, str]
    ) -> SignInResult | SignInRequest:
        """The IdP's answer (the callback's parameters) and what `begin` kept for it: who
        signed in, or a request to send the browser to the IdP again. Raises SignInError."""
        ...

    def checks(self, step: str, redirect_uri: str) -> list[str]:
        """What an operator should check at the IdP when sign-in step `step` failed."""
        ...


def shorten(value: object, *, quoted: bool = True, limit: int = 120) -> str:
    """A value from the provider, made safe to show: bounded length, repr-quoted by default."""
    text = repr(value) if quoted else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
