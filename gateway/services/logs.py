"""The logs, for reading: the admin API's `/api/logs/*` and the console's Logs page show the
same entries (newest first, bounded: each log keeps its newest `LIMIT`)."""

from __future__ import annotations

from typing import Any

from gateway.runtime import Runtime


async def access_entries(rt: Runtime, limit: int) -> list[dict[str, Any]]:
    """Sign-ins (allowed, denied, failed) and refused requests (`state/access_log.py`)."""
    return await rt.access_log.entries(limit)


async def audit_entries(rt: Runtime, limit: int) -> list[dict[str, Any]]:
    """Every change made through the admin API or the console (`state/audit_log.py`)."""
    return await rt.audit_log.entries(limit)


async def provisioning_entries(
    rt: Runtime, idp_id: str | None, limit: int, *, auth_failures: bool = False
) -> list[dict[str, Any]]:
    """The SCIM provisioning log, of one IdP or all (None); with `auth_failures`, the record of
    SCIM requests refused before any SCIM work instead (`state/provisioning_log.py`)."""
    if auth_failures:
        return await rt.provisioning_log.auth_failures(idp_id, limit)
    return await rt.provisioning_log.entries(idp_id, limit)
