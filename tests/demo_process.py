"""`gateway demo` as a subprocess, and the HTML login form of its development IdP.

Shared by the tests that drive the demo from outside (scripted HTTP, a real browser) and by
the multi-instance tests that log in at the development IdP.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser


def three_free_ports() -> int:
    """A port P with P, P+1 and P+2 free (the demo's gateway, IdP and upstream)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + 2 > 65535:
            continue
        try:
            for port in (base + 1, base + 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no three consecutive free ports")


_LAST_LINE = "The configuration this runs:"  # the banner line after every credential


@contextlib.contextmanager
def running_demo(*args: str) -> Iterator[tuple[int, dict[str, str], list[str]]]:
    """`python -m gateway demo --port P [args]`: the port, the passwords it printed by email,
    and its output so far (kept being read, so a full pipe never stalls the demo)."""
    port = three_free_ports()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    passwords: dict[str, str] = {}
    output: list[str] = []
    drain: threading.Thread | None = None
    try:
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            found = re.search(r"(\S+@example\.com)\s+password: (\S+)", line)
            if found:
                passwords[found.group(1)] = found.group(2)
            if line.startswith(_LAST_LINE):
                break
        assert len(passwords) == 2, "demo did not start:\n" + "".join(output)
        drain = threading.Thread(target=output.extend, args=(proc.stdout,), daemon=True)
        drain.start()
        yield port, passwords, output
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if drain is not None:
            drain.join(timeout=5)  # reads to the end of the pipe, which the exit closed
        if proc.stdout is not None:
            proc.stdout.close()


def printed(output: list[str], label: str) -> str:
    """The value the demo printed after `label: ` (the admin token, the SCIM secret...)."""
    for line in output:
        found = re.match(rf"\s*{re.escape(label)}: (\S+)", line)
        if found:
            return found.group(1)
    raise AssertionError(f"the demo printed no {label!r}:\n" + "".join(output))


class LoginForm(HTMLParser):
    """The development IdP's login form: its action and its inputs."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = values.get("action", "")
        elif tag == "input" and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")
