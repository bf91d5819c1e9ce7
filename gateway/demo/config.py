"""The configuration `gateway demo` runs, as the TOML text `gateway demo --print-config` prints.

The demo parses this very text (with its secrets in a private environment of fresh random
values, never the caller's), so what `--print-config` shows is exactly what runs, and a newcomer
can start a real config from it. Where the demo listens decides its names: the team host (also
the demo app's host: a single-host deployment) and the development IdP's URL are the address a
browser uses, which for a wildcard bind (`--host 0.0.0.0`) is the machine's own address.
Only the demo takes its development IdP's plain-http URL on such an address: any other config
needs https to an IdP off this machine, and the printed text says so next to it.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config.reader import is_loopback_host

IDP_ID = "dev-okta"
CLIENT_ID = "0oademo"
SECRET_VARIABLES = (
    "GATEWAY_COOKIE_SECRET",
    "GATEWAY_ADMIN_TOKEN",
    "OKTA_CLIENT_SECRET",
    "OKTA_API_TOKEN",
)
_WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104 - the addresses that mean "every interface"
# Connecting a UDP socket sends nothing; it only asks the kernel which local address its route
# to this (documentation) address leaves from: the machine's address on its main network.
_ROUTE_PROBE = ("198.51.100.1", 9)
# Plain http to an IdP off this machine is refused in any config but the demo's own (Reader).
_PLAIN_HTTP_NOTE = "   # plain http off this machine: only the demo takes it (a config: https)"

_TEMPLATE = """\
# The configuration `gateway demo` runs (`gateway demo --print-config` prints it).
# The demo fills these variables with fresh random values each time it starts:
#   {variables}
# For a real deployment (docs/production.md): your Okta org instead of the development IdP
# (docs/okta-setup.md), store = "redis://...", an https:// public_url with cookie_secure = true,
# and each secret from your own environment (docs/admin-api.md says how to make them).

[gateway]
public_url = "{public_url}"
cookie_secret = "${{GATEWAY_COOKIE_SECRET}}"
admin_token = "${{GATEWAY_ADMIN_TOKEN}}"   # the admin API: {public_url}/api/
store = "memory"
session_duration = "8h"
cookie_secure = false   # plain http: a browser would not send a Secure cookie back

[console.policy]   # who may use the console at {public_url}/console/: alice
include = [{{ email = {{ email = "alice@example.com" }} }}]

[[identity_providers]]   # the development IdP, an Okta-like OIDC provider run by the demo
id = "{idp_id}"
name = "Development Okta"
type = "okta"
[identity_providers.config]
client_id = "{client_id}"
client_secret = "${{OKTA_CLIENT_SECRET}}"
okta_account = "{idp_url}"{idp_url_note}
api_token = "${{OKTA_API_TOKEN}}"
pkce_enabled = true
[identity_providers.scim_config]   # the SCIM secret is generated at start and printed once
enabled = true
user_deprovision = true
seat_deprovision = false
identity_update_behavior = "automatic"

[[apps]]
id = "demo"
name = "Demo app"
domain = "{app_domain}"   # on the team host itself
upstream = "{upstream_url}"
custom_deny_message = "The demo app is for the Engineering group only."

[[apps.policies]]
name = "Engineering"
decision = "allow"
include = [{{ okta = {{ name = "Engineering" }} }}]
"""


@dataclass(frozen=True, slots=True)
class DemoAddresses:
    """Where the demo's three servers listen and the names a browser reaches them by."""

    bind_host: str  # the gateway and the development IdP listen here
    url_host: str  # the host of every URL a browser follows (public_url, the IdP's URL)
    port: int  # the gateway's; the IdP has port + 1, the echo upstream port + 2

    @property
    def idp_port(self) -> int:
        return self.port + 1

    @property
    def upstream_port(self) -> int:
        return self.port + 2

    def url(self, port: int) -> str:
        return f"http://{self.url_host}:{port}"

    @property
    def public_url(self) -> str:
        return self.url(self.port)

    @property
    def idp_url(self) -> str:
        return self.url(self.idp_port)

    @property
    def upstream_url(self) -> str:
        # Only the gateway calls the echo upstream, so it never leaves the loopback interface.
        return f"http://127.0.0.1:{self.upstream_port}"

    @property
    def exposed(self) -> bool:
        """Whether other machines can reach the gateway and the development IdP."""
        try:
            return not ipaddress.ip_address(self.bind_host).is_loopback
        except ValueError:
            return self.bind_host != "localhost"


def demo_addresses(host: str | None, port: int) -> DemoAddresses:
    """The demo's addresses for `--host` (None: localhost only, as before `--host` existed).
    A named or literal host is used as given; a wildcard listens everywhere and is named by the
    machine's own address (localhost when the machine has no network)."""
    if host is None:
        return DemoAddresses("127.0.0.1", "localhost", port)
    bare = host.strip("[]")
    if bare in _WILDCARDS:
        return DemoAddresses(bare or "0.0.0.0", primary_address(), port)  # noqa: S104
    if ":" in bare:
        # An app's domain (and so the demo's single host) is a name or an IPv4 address.
        raise ValueError(f"--host {host}: give a host name, an IPv4 address, 0.0.0.0 or ::")
    return DemoAddresses(bare, bare.lower(), port)


def primary_address() -> str:
    """This machine's address on its main network (its default route's), else "localhost"."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(_ROUTE_PROBE)
        except OSError:  # no route at all: nothing but loopback
            return "localhost"
        address = str(probe.getsockname()[0])
    return "localhost" if ipaddress.ip_address(address).is_unspecified else address


def demo_config_text(addresses: DemoAddresses) -> str:
    """The demo's configuration file for these addresses; secrets are `${VAR}` references."""
    return _TEMPLATE.format(
        variables=", ".join(SECRET_VARIABLES),
        public_url=addresses.public_url,
        idp_id=IDP_ID,
        client_id=CLIENT_ID,
        idp_url=addresses.idp_url,
        idp_url_note="" if is_loopback_host(addresses.url_host) else _PLAIN_HTTP_NOTE,
        app_domain=addresses.url_host,
        upstream_url=addresses.upstream_url,
    )


def demo_environment() -> Mapping[str, str]:
    """Fresh random values for the variables the demo's configuration names."""
    return {name: secrets.token_urlsafe(32) for name in SECRET_VARIABLES}
