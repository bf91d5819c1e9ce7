"""The SCIM secret: how the Authorization header is read, and `gateway scim-secret` (SPEC 1),
which stores the hash in the configured Redis for every instance to verify against."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import redis

from gateway.cli import main
from gateway.scim.secret import presented_secret


@pytest.mark.parametrize(
    ("header", "secret"),
    [
        ("Bearer s3cr3t", "s3cr3t"),
        ("bearer s3cr3t", "s3cr3t"),
        ("s3cr3t", "s3cr3t"),
        ("Bearer Bearer s3cr3t", "s3cr3t"),
        ("  Bearer   s3cr3t  ", "s3cr3t"),
        ("Bearer", "Bearer"),
        ("", ""),
        ("Basic dXNlcjpwdw==", "Basic dXNlcjpwdw=="),
    ],
)
def test_the_secret_is_read_leniently(header: str, secret: str) -> None:
    assert presented_secret(header) == secret


def _config(tmp_path: Path, store: str, scim: str = "enabled = true") -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[gateway]
public_url = "https://access.example.com"
cookie_secret = "test-cookie-secret-0123456789abcdef"
store = "{store}"

[[identity_providers]]
id = "okta-test"
name = "Okta"
type = "okta"
[identity_providers.config]
client_id = "0oaclient"
client_secret = "s3cret"
okta_account = "https://dev-123.okta.com"
[identity_providers.scim_config]
{scim}
"""
    )
    return path


def test_scim_secret_prints_a_new_secret_once_and_stores_its_hash(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, redis_url)

    assert main(["scim-secret", "--config", str(config), "okta-test"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["scim-secret", "--config", str(config), "okta-test"]) == 0
    second = capsys.readouterr().out.strip()

    assert len(first) >= 40 and first != second
    with redis.Redis.from_url(redis_url) as client:
        stored = client.get("scim_secret:okta-test")
    assert stored == hashlib.sha256(second.encode()).hexdigest().encode()


@pytest.mark.parametrize(
    ("store", "scim", "idp", "message"),
    [
        ("memory", "enabled = true", "okta-test", "memory"),
        ("REDIS", "enabled = true", "nope", "No identity provider 'nope'"),
        ("REDIS", 'enabled = true\nsecret = "pinned-0123456789"', "okta-test", "pinned"),
    ],
)
def test_scim_secret_refuses_what_it_cannot_do(
    tmp_path: Path,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
    store: str,
    scim: str,
    idp: str,
    message: str,
) -> None:
    config = _config(tmp_path, redis_url if store == "REDIS" else store, scim)

    assert main(["scim-secret", "--config", str(config), idp]) == 1

    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


def test_scim_secret_reports_config_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[gateway]\n")

    assert main(["scim-secret", "--config", str(path), "okta-test"]) == 1
    assert "public_url" in capsys.readouterr().err
