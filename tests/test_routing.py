"""Which app a request is for (SPEC 2 `domain`): Cloudflare's host and path rules."""

from __future__ import annotations

import pytest

from gateway.authz.policy import RequestFacts, evaluate
from gateway.authz.routing import AppDirectory, is_ambiguous_path, split_host
from gateway.authz.rules import EveryoneRule
from gateway.config import App, Policy, app_aud
from gateway.identity import Identity


def app(domain: str, *policies: Policy) -> App:
    """An app whose id is its domain, so a test names the app it expects by its domain."""
    return App(
        id=domain,
        name=domain,
        domain=domain,
        upstream="http://127.0.0.1:9000",
        aud=app_aud(domain),
        session_duration=3600,
        policies=policies,
    )


def matched(domains: list[str], host: str, path: str) -> str | None:
    found = AppDirectory(app(d) for d in domains).match(host, path)
    return found.domain if found else None


@pytest.mark.parametrize(
    ("host_header", "host"),
    [
        ("wiki.example.com", "wiki.example.com"),
        ("wiki.example.com:8443", "wiki.example.com"),
        ("Wiki.Example.COM:443", "wiki.example.com"),
        (" wiki.example.com ", "wiki.example.com"),
        ("localhost:8000", "localhost"),
        ("192.0.2.10:8080", "192.0.2.10"),
        ("[::1]:8000", "[::1]"),
        ("[2001:DB8::1]", "[2001:db8::1]"),
        ("[2001:db8::1]:443", "[2001:db8::1]"),
        ("wiki.example.com.", "wiki.example.com"),
        ("", ""),
        # not a host[:port]: refused ("") rather than routed one way and forwarded another
        ("2001:db8::1", ""),
        ("wiki.example.com:@evil.com", ""),
        ("evil%2ecom?.apps.example.com", ""),
        ("wiki.example.com/x", ""),
        ("wiki.example.com:99999999", ""),
        ("a b.example.com", ""),
    ],
)
def test_split_host_drops_the_port_and_lowercases(host_header: str, host: str) -> None:
    assert split_host(host_header) == host


@pytest.mark.parametrize(
    ("domains", "host", "path", "expected"),
    [
        # exact host, any path
        (["wiki.example.com"], "wiki.example.com", "/", "wiki.example.com"),
        (["wiki.example.com"], "wiki.example.com", "/a/b?c", "wiki.example.com"),
        (["wiki.example.com"], "docs.example.com", "/", None),
        (["wiki.example.com"], "example.com", "/", None),
        (["wiki.example.com"], "a.wiki.example.com", "/", None),
        (["wiki.example.com"], "wiki.example.com.evil.org", "/", None),
        (["wiki.example.com"], "", "/", None),
        # a port in the Host header is ignored (split_host), IPv6 literals too
        (["wiki.example.com"], split_host("wiki.example.com:8443"), "/", "wiki.example.com"),
        (["localhost"], split_host("localhost:8000"), "/", "localhost"),
        (["[::1]"], split_host("[::1]:8000"), "/x", "[::1]"),
        # hosts compare case-insensitively
        (["wiki.example.com"], split_host("WIKI.Example.COM"), "/", "wiki.example.com"),
        (["wiki.example.com"], "WIKI.Example.COM", "/", "wiki.example.com"),
        (["Wiki.Example.com"], "wiki.example.com", "/", "Wiki.Example.com"),
        # "*.example.com": exactly one subdomain level, not the apex
        (["*.example.com"], "a.example.com", "/", "*.example.com"),
        (["*.example.com"], "beta.example.com", "/x/y", "*.example.com"),
        (["*.example.com"], "example.com", "/", None),
        (["*.example.com"], "a.b.example.com", "/", None),
        (["*.example.com"], "a.example.org", "/", None),
        # "app-*.example.com": part of one label
        (["app-*.example.com"], "app-1.example.com", "/", "app-*.example.com"),
        (["app-*.example.com"], "app-blue.example.com", "/", "app-*.example.com"),
        (["app-*.example.com"], "web.example.com", "/", None),
        (["app-*.example.com"], "myapp-1.example.com", "/", None),
        (["app-*.example.com"], "app-1.b.example.com", "/", None),
        # "example.com/alpha/*": every path below /alpha, not /alpha itself
        (["example.com/alpha/*"], "example.com", "/alpha/x", "example.com/alpha/*"),
        (["example.com/alpha/*"], "example.com", "/alpha/x/y", "example.com/alpha/*"),
        (["example.com/alpha/*"], "example.com", "/alpha", None),
        # ...but its index page is below it, not the parent app's (found by a security review)
        (["example.com/alpha/*", "example.com"], "example.com", "/alpha/", "example.com/alpha/*"),
        (["example.com/alpha/*", "example.com"], "example.com", "/alpha//", "example.com/alpha/*"),
        (["example.com/alpha/*", "example.com"], "example.com", "/alpha;x/", "example.com/alpha/*"),
        (["example.com/alpha/*", "example.com"], "example.com", "/alpha", "example.com"),
        (["example.com/alpha/*"], "example.com", "/alphabet", None),
        (["example.com/alpha/*"], "example.com", "/alphabet/x", None),
        (["example.com/alpha/*"], "example.com", "/", None),
        (["example.com/alpha/*"], "www.example.com", "/alpha/x", None),
        # "example.com/alpha": /alpha and everything below
        (["example.com/alpha"], "example.com", "/alpha", "example.com/alpha"),
        (["example.com/alpha"], "example.com", "/alpha/", "example.com/alpha"),
        (["example.com/alpha"], "example.com", "/alpha/x", "example.com/alpha"),
        (["example.com/alpha"], "example.com", "/alpha/x/y", "example.com/alpha"),
        (["example.com/alpha"], "example.com", "/alphabet", None),
        (["example.com/alpha"], "example.com", "/beta/alpha", None),
        (["example.com/alpha"], "example.com", "/", None),
        # "example.com/*": every path below the apex, not the apex itself
        (["example.com/*"], "example.com", "/x", "example.com/*"),
        (["example.com/*"], "example.com", "/", None),
        # a wildcard path segment
        (["example.com/*/admin"], "example.com", "/eu/admin/users", "example.com/*/admin"),
        (["example.com/*/admin"], "example.com", "/eu/users", None),
        # path matching is case-insensitive, like the config's domain
        (["example.com/alpha"], "example.com", "/Alpha/X", "example.com/alpha"),
        # "." and ".." are resolved before matching, as the upstream will resolve them
        (["example.com/alpha"], "example.com", "/beta/../alpha/x", "example.com/alpha"),
        (["example.com/alpha"], "example.com", "/./alpha", "example.com/alpha"),
        (["example.com/alpha"], "example.com", "/alpha/../beta", None),
        (["example.com/alpha"], "example.com", "/../../alpha", "example.com/alpha"),
    ],
)
def test_one_app_covers(domains: list[str], host: str, path: str, expected: str | None) -> None:
    assert matched(domains, host, path) == expected


SITE = [
    "example.com",
    "example.com/alpha",
    "example.com/alpha/beta",
    "example.com/docs/*",
    "*.example.com",
    "app-*.example.com",
    "admin.example.com",
    "admin.example.com/billing",
]


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        # exact host over wildcard
        ("admin.example.com", "/", "admin.example.com"),
        ("admin.example.com", "/billing/invoices", "admin.example.com/billing"),
        ("admin.example.com", "/billingx", "admin.example.com"),
        ("www.example.com", "/", "*.example.com"),
        # a partly literal label over a bare "*"
        ("app-7.example.com", "/", "app-*.example.com"),
        # longer path over shorter
        ("example.com", "/", "example.com"),
        ("example.com", "/alpha", "example.com/alpha"),
        ("example.com", "/alpha/x", "example.com/alpha"),
        ("example.com", "/alpha/beta", "example.com/alpha/beta"),
        ("example.com", "/alpha/beta/gamma", "example.com/alpha/beta"),
        ("example.com", "/alpha/betamax", "example.com/alpha"),
        ("example.com", "/alphabet", "example.com"),
        ("example.com", "/docs", "example.com"),
        ("example.com", "/docs/guide", "example.com/docs/*"),
        ("example.com", "/ALPHA/Beta", "example.com/alpha/beta"),
        ("example.com", "/alpha/x/../beta", "example.com/alpha/beta"),
        # nothing covers it
        ("a.b.example.com", "/", None),
        ("example.org", "/alpha", None),
    ],
)
def test_most_specific_app_wins(host: str, path: str, expected: str | None) -> None:
    assert matched(SITE, host, path) == expected
    # The order of the apps in the file does not matter.
    assert matched(list(reversed(SITE)), host, path) == expected


def test_no_inheritance_from_a_shorter_path() -> None:
    everyone = Policy("Everyone", "allow", (EveryoneRule(),))
    alpha = app("example.com/alpha", everyone)
    beta = app("example.com/alpha/beta")  # no policies of its own
    directory = AppDirectory([alpha, beta])
    alice = Identity(
        id="n",
        user_uuid="u",
        sub="s",
        name="Alice",
        email="alice@example.com",
        groups=(),
        idp_id="okta",
        idp_type="okta",
        iat=0,
    )

    assert directory.match("example.com", "/alpha/x") is alpha
    assert directory.match("example.com", "/alpha/beta/x") is beta
    assert evaluate(alpha, alice, RequestFacts()).allowed is True
    # /alpha's "Everyone" does not carry over to /alpha/beta: deny by default.
    assert evaluate(beta, alice, RequestFacts()).allowed is False


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("evil.example.org", "/"),
        ("example.com", "/beta"),  # the apex has only a path-scoped app
        ("example.com", "/"),
        ("internal.example.com", "/"),  # "*.internal.example.com" does not cover its parent
        ("a.b.internal.example.com", "/"),  # nor two levels below
        ("docs.example.com", "/"),  # and "*.example.com" is not configured
        ("wiki.example.com.evil.org", "/"),
        ("wiki", "/"),
        ("", "/alpha"),
    ],
)
def test_a_host_no_app_covers_never_falls_through(host: str, path: str) -> None:
    apps = ["wiki.example.com", "example.com/alpha", "*.internal.example.com", "app-*.example.com"]
    assert matched(apps, host, path) is None


def test_no_apps_match_nothing() -> None:
    assert AppDirectory([]).match("wiki.example.com", "/") is None


def test_hosts_lists_literal_app_hosts_and_find_by_aud() -> None:
    wiki, wild, alpha = app("wiki.example.com"), app("*.example.com"), app("example.com/alpha")
    directory = AppDirectory([wiki, wild, alpha])
    assert directory.hosts() == {"wiki.example.com", "example.com"}
    assert directory.find_by_aud(app_aud("*.example.com")) is wild
    assert directory.find_by_aud("0" * 64) is None


@pytest.mark.parametrize(
    "host",
    ["evil%2ecom?.apps.example.com", "evil.com#.apps.example.com", "u@evil.com.apps.example.com"],
)
def test_a_host_wildcard_stands_for_a_dns_label_only(host: str) -> None:
    directory = AppDirectory([app("*.apps.example.com")])
    assert directory.match(host, "/") is None


@pytest.mark.parametrize("path", ["/admin;jsessionid=x", "/ADMIN;x/users", "/admin;/users"])
def test_path_parameters_do_not_dodge_a_path_app(path: str) -> None:
    directory = AppDirectory([app("wiki.example.com"), app("wiki.example.com/admin")])
    found = directory.match("wiki.example.com", path)
    assert found is not None and found.domain == "wiki.example.com/admin"


@pytest.mark.parametrize(
    ("path", "ambiguous"),
    [
        ("/admin/../public", True),
        ("/admin/./x", True),
        ("/admin/..", True),
        ("/a\\..\\b", True),
        ("/secret/..;/public/x", True),  # ".." to Tomcat, a name to most other servers
        ("/secret/..;jsessionid=1/public", True),
        ("/secret/.;x/y", True),
        ("/files;v=1/a", False),
        ("/public/x", False),
        ("/files/a..b", False),
        ("/", False),
    ],
)
def test_dot_segments_and_backslashes_are_ambiguous(path: str, ambiguous: bool) -> None:
    assert is_ambiguous_path(path) is ambiguous
