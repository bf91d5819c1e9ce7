"""The access decision for one request to a protected app, as a value.

`guard.decide` computes a verdict once; the proxy, the WebSocket path and forward-auth each
render it in their own terms (a proxied exchange or a refusal page, a relayed or closed socket,
a tiny answer for the front proxy), and the request's log line and metrics take its `label` and
`user`, never a status code read back. The model is Pomerium's `authorize/evaluator`: a result
that says what was decided and why, turned into HTTP by a separate step. No web framework here.

Every verdict has a `label` (the log line's `decision`, the metrics' `decision` label), the
`user` behind the request and their `email` ("" if none is known), the `policy` that decided
("" when no policy was judged, `NO_POLICY` when none matched) and, for a deny, the `rule` that
settled it: the access log line says who, which app, what was decided and why.

    Forward    allow            a signed-in user the policies admit: the app JWT and the email
                                go upstream; also a service token a non_identity policy admits
                                (kind `service_token`: the app JWT names the token)
               bypass           a bypass policy: through with no identity
               non_identity     a non_identity policy on the request alone (its address): the
                                same, counted as what the policy said
    SignIn     unauthenticated  no usable session: a browser is sent to `login_url` holding
                                `binding` as its app-host binding; any other client gets a 401
    Deny       deny             a signed-in user the policies refuse, or a cross-site WebSocket
    Reject     unauthenticated  a service token that does not authenticate (401)
               deny             a valid service token that no policy admits (403)
    Undecided  error            the decision could not be made (the store did not answer)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from gateway.authz.policy import NO_POLICY
from gateway.config import App
from gateway.errors import GatewayError

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Forward:
    kind: Literal["allow", "bypass", "non_identity", "service_token"]
    policy: str  # the name of the policy that let the request through
    headers: Headers = ()
    user: str = ""  # the session's user_uuid; "" when no user is behind the request
    email: str = ""
    rule: ClassVar[str] = ""

    @property
    def label(self) -> str:
        # A service token's request carries an identity (its app JWT): counted as an allow, as
        # the logs and metrics always have.
        return "allow" if self.kind == "service_token" else self.kind


@dataclass(frozen=True, slots=True)
class SignIn:
    login_url: str = ""  # "" for a client that is not a browser
    binding: str = ""  # the CF_AppSession value the browser must hold when it comes back
    label: ClassVar[str] = "unauthenticated"
    user: ClassVar[str] = ""
    email: ClassVar[str] = ""
    policy: ClassVar[str] = ""
    rule: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Deny:
    app: App
    email: str
    user: str
    policy: str  # the deny policy that matched, or NO_POLICY
    rule: str  # the rule that settled it, in words
    label: ClassVar[str] = "deny"


@dataclass(frozen=True, slots=True)
class Reject:
    status: int
    text: str
    label: Literal["unauthenticated", "deny"]
    policy: str = ""
    rule: str = ""
    user: ClassVar[str] = ""
    email: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Undecided:
    error: GatewayError
    user: str = ""  # known when the store failed after the session was read
    email: str = ""
    label: ClassVar[str] = "error"
    policy: ClassVar[str] = ""
    rule: ClassVar[str] = ""


Verdict = Forward | SignIn | Deny | Reject | Undecided

# The verdicts that carry nothing of the request, made once.
SIGN_IN = SignIn()  # a client that is not a browser
INVALID_SERVICE_TOKEN = Reject(401, "Unauthorized: invalid service token.", "unauthenticated")
# A valid service token that no policy admits: no fallback to a browser sign-in.
SERVICE_TOKEN_NOT_ADMITTED = Reject(
    403,
    "Forbidden: this service token is not allowed here.",
    "deny",
    NO_POLICY,
    "no bypass or non_identity policy admits this service token",
)
