"""The workers' shared connection counts (`web/balance.py`), in one process: how a worker claims
its slot, what it sees of the others, and serving on when no file can be made. How connections
really spread over `gateway serve` workers is tested in test_cli_workers.py."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile

import pytest

from gateway.web.balance import BALANCE_ENV, Counts, balance_file


def hold_slot(path: str, count: int) -> tuple[subprocess.Popen[str], int]:
    """Another worker (a process: slots are held per process) holding `count` connections,
    and the slot it claimed."""
    worker = subprocess.Popen(
        [sys.executable, "-c", _HOLD_SLOT, path, str(count)], stdout=subprocess.PIPE, text=True
    )
    assert worker.stdout is not None
    return worker, int(worker.stdout.readline())


def stop(worker: subprocess.Popen[str]) -> None:
    worker.kill()
    worker.wait()
    assert worker.stdout is not None
    worker.stdout.close()


_HOLD_SLOT = """
import sys, time
from gateway.web.balance import Counts
counts = Counts(sys.argv[1])
counts.publish(int(sys.argv[2]))
print(counts.slot, flush=True)
time.sleep(60)
"""


def test_a_worker_claims_a_free_slot_and_sees_the_others_serving() -> None:
    with balance_file(2) as path:
        assert path is not None
        assert os.environ[BALANCE_ENV] == path
        other, slot = hold_slot(path, 5)
        try:
            assert slot == 0
            counts = Counts(path)
            assert counts.slot == 1
            assert counts.least_of_others() == 5
        finally:
            stop(other)
        # Killed, it leaves its count until a worker starts: a high count only makes the
        # others accept more readily, never wait.
        assert counts.least_of_others() == 5
        replacement, slot = hold_slot(path, 2)
        try:
            assert slot == 0  # the killed worker's slot, its lock gone with it
            assert counts.least_of_others() == 2
        finally:
            stop(replacement)
    assert BALANCE_ENV not in os.environ
    assert not os.path.exists(path)


def test_a_worker_without_a_slot_does_not_balance() -> None:
    with balance_file(1) as path:  # two slots
        assert path is not None
        first, _ = hold_slot(path, 1)
        second, _ = hold_slot(path, 1)
        try:
            counts = Counts(path)
            assert counts.slot is None
            assert counts.least_of_others() is None  # it accepts whatever it finds
        finally:
            stop(first)
            stop(second)


def test_without_a_temporary_file_workers_serve_unbalanced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with caplog.at_level(logging.WARNING), balance_file(2) as path:
        assert path is None
        assert BALANCE_ENV not in os.environ
    assert "workers accept unbalanced" in caplog.text
