"""`gateway serve` processes for tests of several instances on one Redis (SPEC 5).

`serve(config)` starts the production entry point on free loopback ports and stops it with
SIGTERM. The browser is httpx with its cookies handled by hand (`Browser`), so each request can
go to either instance while naming the same public host (`on`), as behind a load balancer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from harness import free_port

PUBLIC_HOST = "gw.test"
PUBLIC_URL = f"http://{PUBLIC_HOST}"


@dataclass
class Instance:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def wait_ready(instance: Instance, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if instance.process.poll() is not None:
            raise RuntimeError(f"gateway on {instance.port} exited {instance.process.returncode}")
        try:
            answer = httpx.get(f"{instance.url}/healthz", headers={"Host": PUBLIC_HOST}, timeout=1)
            if answer.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gateway on {instance.port} did not start")


@contextlib.contextmanager
def serve(config: Path, count: int = 2) -> Iterator[list[Instance]]:
    """`count` gateway processes on `config`, ready; stopped (SIGTERM) after the block."""
    started = []
    for _ in range(count):
        port = free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--workers",
                "1",
                "--log-level",
                "warning",
            ],
            env={**os.environ},
        )
        started.append(Instance(port, process))
    try:
        for instance in started:
            wait_ready(instance)
        yield started
    finally:
        for instance in started:
            instance.process.send_signal(signal.SIGTERM)
        for instance in started:
            try:
                instance.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                instance.process.kill()


@dataclass
class Browser:
    """A browser whose every request may go to either instance, as behind a load balancer."""

    cookies: dict[str, str] = field(default_factory=dict)

    async def get(self, client: httpx.AsyncClient, url: str, **kwargs: object) -> httpx.Response:
        return await self.request(client, "GET", url, **kwargs)

    async def post(self, client: httpx.AsyncClient, url: str, **kwargs: object) -> httpx.Response:
        return await self.request(client, "POST", url, **kwargs)

    async def request(
        self, client: httpx.AsyncClient, method: str, url: str, **kwargs: object
    ) -> httpx.Response:
        headers = {"Accept": "text/html"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = await client.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]
        self.remember(response)
        return response

    def remember(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in header or value in ("", '""'):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value


def on(instance: Instance, url: str) -> str:
    """The same public URL, sent to one particular instance (the Host header stays public)."""
    parts = urlsplit(url)
    return f"{instance.url}{parts.path}" + (f"?{parts.query}" if parts.query else "")
