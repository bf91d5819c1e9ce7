"""The `gateway` command: serve, check-config, demo.

`serve` runs the gateway under uvicorn (uvloop + httptools). `check-config` prints every
problem of a config file with its key path. `demo` runs everything on localhost with no Okta
tenant and no Redis: the gateway, the development IdP (`devidp.py`, reachable only from here),
the echo upstream and the memory store.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn

from gateway.app import Gateway, create_app
from gateway.config import load_config, parse_settings
from gateway.errors import ConfigError

CONFIG_ENV = "GATEWAY_CONFIG"


def app_from_env() -> Gateway:
    """uvicorn factory for `serve` (each worker process loads the config itself)."""
    return create_app(load_config(os.environ[CONFIG_ENV]))


def _serve(args: argparse.Namespace) -> int:
    try:
        load_config(args.config)  # fail before forking workers, with every problem listed
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    uvicorn.run(
        "gateway.cli:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        timeout_graceful_shutdown=20,
        loop="uvloop",
        http="httptools",
        proxy_headers=False,  # X-Forwarded-* are judged by trusted_proxies, not by uvicorn
        server_header=False,
        date_header=False,
        access_log=False,
    )
    return 0


def _print_problems(exc: ConfigError) -> None:
    for problem in exc.problems:
        print(problem, file=sys.stderr)


def _check_config(args: argparse.Namespace) -> int:
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    print(
        f"{args.config}: ok ({len(settings.identity_providers)} identity provider(s), "
        f"{len(settings.apps)} app(s))"
    )
    return 0


def demo_settings(
    port: int, idp_port: int, upstream_port: int, client_secret: str, api_token: str
) -> dict[str, Any]:
    """The embedded demo configuration, as the same document a config file holds."""
    return {
        "gateway": {
            "public_url": f"http://localhost:{port}",
            "cookie_secret": secrets.token_urlsafe(32),
            "store": "memory",
            "cookie_secure": False,
            "session_duration": "8h",
        },
        "identity_providers": [
            {
                "id": "dev-okta",
                "name": "Development Okta",
                "type": "okta",
                "config": {
                    "client_id": "0oademo",
                    "client_secret": client_secret,
                    "okta_account": f"http://localhost:{idp_port}",
                    "api_token": api_token,
                    "pkce_enabled": True,
                },
            }
        ],
        "apps": [
            {
                "id": "demo",
                "name": "Demo app",
                "domain": "localhost",
                "upstream": f"http://127.0.0.1:{upstream_port}",
                "custom_deny_message": "The demo app is for the Engineering group only.",
                "policies": [
                    {
                        "name": "Engineering",
                        "decision": "allow",
                        "include": [{"okta": {"name": "Engineering"}}],
                    }
                ],
            }
        ],
    }


async def _run_demo(port: int) -> None:
    from gateway.devidp import create_dev_idp, demo_users
    from gateway.echo import create_echo_app

    idp_port, upstream_port = port + 1, port + 2
    client_secret, api_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    settings = parse_settings(
        demo_settings(port, idp_port, upstream_port, client_secret, api_token)
    )
    users = demo_users()
    idp_config = settings.identity_providers[0].config
    dev_idp = create_dev_idp(
        issuer=idp_config.okta_account,
        client_id=idp_config.client_id,
        client_secret=client_secret,
        redirect_uris=[f"{settings.gateway.public_url}/cdn-cgi/access/callback"],
        users=users,
        api_token=api_token,
    )
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=p,
                log_level="warning",
                access_log=False,
                proxy_headers=False,
                server_header=False,
            )
        )
        for app, p in (
            (create_app(settings), port),
            (dev_idp, idp_port),
            (create_echo_app(), upstream_port),
        )
    ]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            for s in servers:
                s.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            raise SystemExit(f"demo: could not listen on ports {port}-{upstream_port}")
        await asyncio.sleep(0.05)
    lines = [
        "",
        f"Gateway demo running: open {settings.gateway.public_url}/",
        f"  development IdP (Okta-like): http://localhost:{idp_port}",
        f"  demo upstream (echoes the identity it receives): http://127.0.0.1:{upstream_port}",
        "Demo users (the app allows the Engineering group only):",
    ]
    lines += [
        f"  {u.email:<20} password: {u.password}  groups: {', '.join(u.groups)}" for u in users
    ]
    print("\n".join(lines), flush=True)
    await asyncio.gather(*tasks)


def _demo(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_run_demo(args.port))
    except KeyboardInterrupt:
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=_serve)

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("config")
    check.set_defaults(handler=_check_config)

    demo = commands.add_parser("demo", help="everything on localhost, no Okta, no Redis")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    code: int = args.handler(args)
    return code
