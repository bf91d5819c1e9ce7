"""The documentation stays true to the code: the configuration reference names exactly the keys
of `config.example.toml`, every relative link in `docs/*.md` and `README.md` leads somewhere, and
what `docs/scaling.md` says about store URLs is what the config loader accepts.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_settings
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "configuration.md"
EXAMPLE = ROOT / "config.example.toml"

RULE_LISTS = ("include", "require", "exclude")  # in a policy, these hold rules, not sub-tables

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


# --- the configuration reference --------------------------------------------------------------


def example_keys() -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """(tables, keys, rules) of the example: table paths such as `identity_providers.config`,
    every key path (tables included), and (rule name, field) pairs, field "" for none."""
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    tables: set[str] = set()
    keys: set[str] = set()
    rules: set[tuple[str, str]] = set()

    def walk(table: dict[str, Any], path: str) -> None:
        for key, value in table.items():
            full = f"{path}.{key}" if path else key
            keys.add(full)
            items = value if isinstance(value, list) else [value]
            if key in RULE_LISTS and path in ("apps.policies", "console.policy"):
                for rule in items:
                    for name, fields in rule.items():
                        rules.update({(name, f) for f in fields} or {(name, "")})
            elif items and all(isinstance(item, dict) for item in items):
                tables.add(full)
                for item in items:
                    walk(item, full)

    walk(data, "")
    return tables, keys, rules


def documented_keys() -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """The same three sets, read from docs/configuration.md.

    A heading that names a table in backticks (`[gateway]`, `[[apps.policies]]`) starts that
    table's section, whose rows `| \\`key\\` | ...` document its keys; the "Rules" heading's rows
    are `| \\`rule\\` | \\`field\\`, ... |`.
    """
    tables: set[str] = set()
    keys: set[str] = set()
    rules: set[tuple[str, str]] = set()
    section: str | None = None
    for line in _FENCE.sub("", REFERENCE.read_text(encoding="utf-8")).splitlines():
        heading = _HEADING.match(line)
        if heading:
            named = re.search(r"`\[{1,2}([\w.]+)\]{1,2}`", heading.group(2))
            section = named.group(1) if named else None
            if section:
                tables.add(section)
                keys.add(section)
            elif heading.group(2).strip() == "Rules":
                section = "rules"
            continue
        row = _ROW.match(line)
        if row is None or section is None:
            continue
        name, rest = row.group(1), row.group(2)
        if section == "rules":
            fields_cell = rest.split("|")[0]
            fields = re.findall(r"`([a-z_]+)`", fields_cell)
            rules.update({(name, f) for f in fields} or {(name, "")})
        else:
            keys.add(f"{section}.{name}")
    return tables, keys, rules


def test_every_example_key_is_documented() -> None:
    tables, keys, rules = example_keys()
    doc_tables, doc_keys, doc_rules = documented_keys()
    assert sorted(tables - doc_tables) == [], "tables without a section in docs/configuration.md"
    assert sorted(keys - doc_keys) == [], "keys of config.example.toml missing from the reference"
    assert sorted(rules - doc_rules) == [], "policy rules missing from the reference's Rules table"


def test_every_documented_key_is_in_the_example() -> None:
    tables, keys, rules = example_keys()
    doc_tables, doc_keys, doc_rules = documented_keys()
    assert sorted(doc_tables - tables) == [], "documented tables that config.example.toml lacks"
    assert sorted(doc_keys - keys) == [], "documented keys that config.example.toml does not show"
    assert sorted(doc_rules - rules) == [], "documented rules that config.example.toml does not use"


def test_the_reference_is_read_at_all() -> None:
    """Guards the two tests above against a parser that silently finds nothing."""
    _, doc_keys, doc_rules = documented_keys()
    expected = {
        "gateway.public_url",
        "apps.policies.include",
        "identity_providers.config.api_token",
    }
    assert expected <= doc_keys
    assert len(doc_keys) > 40
    assert ("okta", "identity_provider_id") in doc_rules
    assert ("everyone", "") in doc_rules


# --- links -------------------------------------------------------------------------------------


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def github_anchors(path: Path) -> set[str]:
    """The fragment ids GitHub gives a file's headings (lower case, punctuation dropped,
    spaces to hyphens, "-1", "-2"... for repeats)."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    for line in _FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        heading = _HEADING.match(line)
        if not heading:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(2)).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def relative_links(path: Path) -> list[str]:
    """Link targets in a Markdown file that are not URLs (code blocks and spans skipped)."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))
    targets = _INLINE_LINK.findall(text) + _REFERENCE_LINK.findall(text)
    return [t for t in targets if not _SCHEME.match(t)]


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_existing_files(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        file_part, _, fragment = target.partition("#")
        resolved = (page.parent / file_part).resolve() if file_part else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in github_anchors(resolved):
            broken.append(f"{target}: no heading #{fragment} in {resolved.name}")
    assert broken == [], f"broken links in {page.relative_to(ROOT)}"


def test_the_link_checker_sees_links() -> None:
    links = relative_links(DOCS / "configuration.md")
    assert "../config.example.toml" in links
    assert "okta-setup.md#2-the-scim-20-app-provisioning" in links
    assert not any(_SCHEME.match(t) for t in links)


# --- what scaling.md says the store supports ----------------------------------------------------


def store_support() -> dict[str, bool]:
    """docs/scaling.md's table: store URL -> supported ("yes") or not."""
    text = (DOCS / "scaling.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*`([a-z+]+://[^`]*)`[^|]*\|\s*([^|]+?)\s*\|$", text, re.MULTILINE)
    return {url: verdict.lower().startswith("yes") for url, verdict in rows}


def loader_accepts(store: str) -> bool:
    document = {"gateway": {"public_url": "https://access.example.com", "cookie_secret": "k" * 32}}
    document["gateway"]["store"] = store
    try:
        parse_settings(document, env={})
    except ConfigError as exc:
        assert all(p.startswith("gateway.store:") for p in exc.problems), exc.problems
        return False
    return True


def test_scaling_doc_says_which_store_urls_work() -> None:
    table = store_support()
    assert {"redis", "rediss", "unix", "redis+sentinel", "redis+cluster"} == {
        url.split("://")[0] for url in table
    }
    wrong = {url: said for url, said in table.items() if loader_accepts(url) != said}
    assert wrong == {}, "docs/scaling.md says these store URLs work (True) or not, wrongly"
