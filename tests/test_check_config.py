"""`gateway check-config` on what loads but bites, each with its exact message.

Errors (exit 1): a rule naming an identity provider that does not exist, an `okta` rule naming a
non-Okta IdP, an Okta Admin Console URL, secure cookies with a plain-http public URL, a `${VAR}`
that is set but empty. Warnings (exit 0): a group no SCIM push or sign-in has shown, an app with
no policies, secure cookies on http://localhost. `--online` reaches the store (reading the groups
it knows from there) and each IdP's discovery document and keys, and says what answered.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import respx
from fake_okta import FakeOkta
from redis_server import free_port

from gateway.cli import main
from gateway.identity import Identity, user_uuid_for
from gateway.scim.repository import ScimRepository
from gateway.scim.schema import GROUPS
from gateway.state.registry import Registry
from gateway.state.store.redis import RedisStore

SECRET = "k" * 40
NOT_CHECKED = (
    "is not checked: run `gateway check-config --online` to compare it with the groups SCIM "
    "pushed and sign-ins saw"
)
NOT_KNOWN = (
    "is not known: no SCIM push and no sign-in has shown it, and a rule on a group nobody is in "
    "lets nobody in"
)


def config(
    *,
    gateway: str = 'public_url = "https://access.example.com"',
    okta_account: str = "https://dev-123.okta.com",
    app: str = "",
    rules: str = '{ okta = { name = "Engineering" } }',
    extra_idp: str = "",
) -> str:
    return f"""
[gateway]
{gateway}
cookie_secret = "{SECRET}"
store = "memory"

[[identity_providers]]
id = "okta"
name = "Okta"
type = "okta"
[identity_providers.config]
client_id = "0oaclient"
client_secret = "${{OKTA_CLIENT_SECRET}}"
okta_account = "{okta_account}"
{extra_idp}
[[apps]]
id = "wiki"
domain = "wiki.example.com"
upstream = "http://127.0.0.1:9000"
{app}
[[apps.policies]]
name = "Engineering"
decision = "allow"
include = [{rules}]
"""


@pytest.fixture(autouse=True)
def client_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKTA_CLIENT_SECRET", "s3cret")


def check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *options: str
) -> tuple[int, list[str], list[str]]:
    """Run `gateway check-config` on `text`: (exit code, stderr lines: the errors, stdout: the
    report with the warnings)."""
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    code = main(["check-config", str(path), *options])
    out, err = capsys.readouterr()
    return code, err.splitlines(), out.splitlines()


def test_a_sound_config_passes_with_the_groups_left_unchecked_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, out = check(tmp_path, capsys, config())
    assert code == 0
    assert err == []
    assert out[0] == (
        f"warning: apps[0].policies[0].include[0].okta.name: group 'Engineering' {NOT_CHECKED}"
    )
    assert out[-1].endswith("ok (1 identity provider(s), 1 app(s), 1 warning(s))")


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (
            '{ okta = { name = "Engineering", identity_provider_id = "okta-prod" } }',
            "apps[0].policies[0].include[0].okta.identity_provider_id: "
            "no identity provider 'okta-prod': the rule would never match",
        ),
        (
            '{ login_method = { id = "okta-prod" } }',
            "apps[0].policies[0].include[0].login_method.id: "
            "no identity provider 'okta-prod': the rule would never match",
        ),
        (
            '{ okta = { name = "Engineering", identity_provider_id = "corp" } }',
            "apps[0].policies[0].include[0].okta.identity_provider_id: 'corp' is an oidc "
            "identity provider; an okta rule matches only Okta groups (use group_name)",
        ),
    ],
)
def test_a_rule_naming_a_missing_or_wrong_idp_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rule: str, problem: str
) -> None:
    corp = """
[[identity_providers]]
id = "corp"
name = "Corp"
type = "oidc"
[identity_providers.config]
client_id = "c"
client_secret = "s"
issuer = "https://sso.example.com"
auth_url = "https://sso.example.com/authorize"
token_url = "https://sso.example.com/token"
certs_url = "https://sso.example.com/keys"
"""
    code, err, out = check(tmp_path, capsys, config(rules=rule, extra_idp=corp))
    assert code == 1
    assert problem in err
    assert not any("ok (" in line for line in out)


def test_an_okta_admin_url_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err, _ = check(tmp_path, capsys, config(okta_account="https://dev-123-admin.okta.com"))
    assert code == 1
    assert err[0] == (
        "identity_providers[0].config.okta_account: is the Okta Admin Console's URL; use the "
        "org URL 'https://dev-123.okta.com': sign-in is not served on the -admin host"
    )


def test_a_plain_http_okta_account_off_this_machine_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Codes and tokens would cross the network in clear (tests/test_idp_https.py: every field)."""
    code, err, _ = check(tmp_path, capsys, config(okta_account="http://dev-123.okta.com"))
    assert code == 1
    assert err == ["identity_providers[0].config.okta_account: must be an https URL"]
    code, err, _ = check(tmp_path, capsys, config(okta_account="http://127.0.0.1:8001"))
    assert (code, err) == (0, [])


def test_an_empty_variable_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKTA_CLIENT_SECRET", "")
    code, err, _ = check(tmp_path, capsys, config())
    assert code == 1
    assert err == [
        "identity_providers[0].config.client_secret: environment variable OKTA_CLIENT_SECRET "
        "is empty"
    ]


def test_an_app_without_policies_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = config().split("[[apps.policies]]")[0]
    code, err, out = check(tmp_path, capsys, text)
    assert code == 0
    assert err == []
    assert out[0] == "warning: apps[0].policies: none: nobody can reach this app (deny by default)"
    assert out[-1].endswith("1 warning(s))")


def test_secure_cookies_over_http_are_an_error_and_a_warning_on_localhost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, _ = check(
        tmp_path, capsys, config(gateway='public_url = "http://access.example.com"')
    )
    assert code == 1
    assert err[0] == (
        "gateway.cookie_secure: is true but public_url is http://: browsers never send a Secure "
        "cookie over plain http, so every sign-in loops; serve https:// (TLS in front, "
        "docs/production.md) or set cookie_secure = false"
    )
    code, _, out = check(tmp_path, capsys, config(gateway='public_url = "http://localhost:8000"'))
    assert code == 0
    assert out[0] == (
        "warning: gateway.cookie_secure: is true with a plain-http localhost public_url: Chrome "
        "and Firefox keep Secure cookies on localhost, Safari does not (set it to false for a "
        "local test)"
    )
    plain = 'public_url = "http://access.example.com"\ncookie_secure = false'
    assert check(tmp_path, capsys, config(gateway=plain))[0] == 0


# --- --online ---------------------------------------------------------------------------------


async def remember_groups(redis_url: str) -> None:
    """What a running gateway would have stored: Engineering seen at a sign-in, Platform pushed
    over SCIM."""
    store = RedisStore.from_url(redis_url)
    try:
        await Registry(store).record_sign_in(
            Identity(
                id="nonce",
                user_uuid=user_uuid_for("okta", "00ualice"),
                sub="00ualice",
                name="Alice Example",
                email="alice@example.com",
                groups=("Engineering", "Everyone"),
                idp_id="okta",
                idp_type="okta",
                iat=1_764_460_800,
            )
        )
        await ScimRepository(store, "okta", lambda: 1_764_460_800.0).create(
            GROUPS, {"displayName": "Platform"}
        )
    finally:
        await store.close()


def online_config(redis_url: str, rules: str) -> str:
    return config(rules=rules).replace('store = "memory"', f'store = "{redis_url}"')


def test_online_reads_the_known_groups_and_reaches_the_store_and_the_idp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    asyncio.run(remember_groups(redis_url))
    rules = (
        '{ okta = { name = "Enginering" } }, { group_name = { name = "Platform" } }, '
        '{ group_name = { name = "Engineering" } }'
        ']\nexclude = [{ group_name = { name = "Contractors" } }'
    )
    with respx.mock(assert_all_called=False) as router:
        FakeOkta(router)
        code, err, out = check(tmp_path, capsys, online_config(redis_url, rules), "--online")
    assert code == 0, err
    assert err == []
    assert (
        f"warning: apps[0].policies[0].include[0].okta.name: group 'Enginering' {NOT_KNOWN} "
        "(did you mean 'Engineering'?)"
    ) in out
    assert (
        "warning: apps[0].policies[0].exclude[0].group_name.name: group 'Contractors' is not "
        "known: no SCIM push and no sign-in has shown it, and a rule on a group nobody is in "
        "keeps nobody out"
    ) in out
    assert sum(line.startswith("warning: ") for line in out) == 2  # Platform, Engineering known
    assert f"online: store {redis_url} answered; it knows 3 group name(s)" in out
    assert (
        "online: identity_providers[0] (okta): issuer https://dev-123.okta.com answered, 1 key(s)"
    ) in out


def test_online_says_what_did_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    with respx.mock(assert_all_called=False) as router:
        router.get("https://dev-123.okta.com/.well-known/openid-configuration").respond(404)
        code, err, out = check(
            tmp_path, capsys, online_config(closed, "{ everyone = {} }"), "--online"
        )
    assert code == 1
    assert any(
        line.startswith("gateway.store: redis://:***@127.0.0.1:") and "did not answer" in line
        for line in err
    ), err
    assert "hunter2" not in "".join(err + out)
    assert any(
        line.startswith("identity_providers[0]: okta: ") and "discovery" in line for line in err
    ), err
    assert not any("ok (" in line for line in out)
