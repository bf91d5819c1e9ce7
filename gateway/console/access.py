"""Who may use the console (SPEC 9 "Access"), as pure functions over settings and identities.

A signed-in user is admitted when the `[console.policy]` allow policy matches their team
session's identity, judged by the same engine as any app's policy (`authz/policy.py`), and their
sign-in still counts (their IdP is still served). A `gateway console-link` holder has a session
whose identity comes from no IdP: its `idp_id` is `CONSOLE_LINK_IDP`, which no identity
provider can have (an IdP id never contains "@"), so no sign-in can pass for one, and no app
accepts it (`Runtime.accepts_sign_in`). No policy and no link: nobody.
"""

from __future__ import annotations

from gateway.authz.policy import RequestFacts, policy_matches
from gateway.config import Settings
from gateway.identity import Identity

CONSOLE_LINK_IDP = "@console-link"  # not an IdP id: those are [A-Za-z0-9._-]
CONSOLE_LINK_ACTOR = "console-link"  # how the audit log names a console-link session


def is_console_link(identity: Identity) -> bool:
    """The identity of a `gateway console-link` session (break-glass administrator)."""
    return identity.idp_id == CONSOLE_LINK_IDP


def admits(settings: Settings, identity: Identity, facts: RequestFacts, idp_served: bool) -> bool:
    """Whether `identity` may use the console. `idp_served`: its IdP still exists (a deleted
    IdP's sessions count for nothing, as everywhere)."""
    if is_console_link(identity):
        return True
    policy = settings.console.policy
    return policy is not None and idp_served and policy_matches(policy, identity, facts)


def actor_of(identity: Identity) -> str:
    """Who the audit log says made a change from the console."""
    return CONSOLE_LINK_ACTOR if is_console_link(identity) else identity.email
