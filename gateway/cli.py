"""The `gateway` command: serve, check-config, demo, explain, scim-secret, console-link.

`serve` runs the gateway under uvicorn (uvloop + httptools; `web/serverprotocol.py` drops
trailer fields and tells the proxy when a client hangs up; `web/balance.py` spreads connections
evenly over the workers).
`check-config` prints every problem of a config file with its key path, then what the
configuration checks (`checks.py`) find: errors (exit 1) and warnings; `--online` also
reaches the store and each IdP. `demo` runs everything on one machine with no Okta tenant and
no Redis: the gateway with its admin API, the development IdP (`demo/devidp.py`) with SCIM on,
the echo upstream and the memory store, from the TOML `--print-config` shows
(`demo/config.py`). `explain` says whether a user would get into an app, and why, from the
registry in the configured store. `scim-secret` makes a new SCIM secret for an identity
provider, stores its hash in the configured store and prints it once. `console-link` prints a
one-time URL, valid 10 minutes, that signs the operator in to the console (`console/link.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import logging.config
import os
import signal
import sys
import time
import tomllib
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import httpx
import uvicorn

from gateway.admin.explain import explain_email, parse_ip
from gateway.app import Gateway, create_app
from gateway.authz.policy import Explanation
from gateway.checks import check_settings, errors_in, known_groups, warnings_in
from gateway.config import OktaConfig, Settings, load_config, parse_settings
from gateway.errors import ConfigError, GatewayError
from gateway.ops.logs import logging_config
from gateway.web.balance import balance_file
from gateway.web.serverprotocol import GatewayHttpToolsProtocol

if TYPE_CHECKING:  # the demo is imported only when it runs
    from gateway.demo.config import DemoAddresses
    from gateway.demo.devidp import DevUser

CONFIG_ENV = "GATEWAY_CONFIG"
SHUTDOWN_TIMEOUT = 20  # seconds in-flight requests get to finish after SIGTERM


def app_from_env() -> Gateway:
    """uvicorn factory for `serve` (each worker process loads the config itself)."""
    gateway = create_app(load_config(os.environ[CONFIG_ENV]))
    # What start-up made (modules, settings, the app; some 56,000 objects) lives as long as the
    # worker. Frozen, the collector no longer walks it: a full collection, which stalls every
    # request in flight on the worker, drops from 15-80 ms to under one (the p99, not the mean).
    gc.freeze()
    return gateway


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = load_config(args.config)  # fail before forking workers, every problem listed
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    workers = args.workers
    if workers is None:
        # The memory store lives in one process: workers would each keep their own sessions
        # and sign-in states, and a sign-in begun on one would fail on another.
        workers = 1 if settings.gateway.store == "memory" else available_cpus()
    elif workers > 1 and settings.gateway.store == "memory":
        print(
            f'warning: {workers} workers with store = "memory": each keeps its own sessions, '
            "so sign-ins fail at random; use a Redis store or --workers 1",
            file=sys.stderr,
        )
    os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    # On SIGTERM uvicorn stops accepting, lets in-flight requests finish (for at most
    # SHUTDOWN_TIMEOUT), runs the lifespan shutdown (store and clients closed), then raises the
    # signal again with the handler it found: this one, so a clean stop exits with status 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    # Several workers share the listening socket and balance what they accept (web/balance.py).
    with balance_file(workers) if workers > 1 else contextlib.nullcontext():
        _run_uvicorn(args, workers)
    return 0


def _run_uvicorn(args: argparse.Namespace, workers: int) -> None:
    uvicorn.run(
        "gateway.cli:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=workers,
        log_level=args.log_level,
        log_config=logging_config(args.log_level),  # JSON lines, applied in every worker
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT,
        loop="gateway.web.balance:new_loop",  # uvloop, with the balanced accept
        http=GatewayHttpToolsProtocol,  # httptools: trailers never headers, hang-ups told
        proxy_headers=False,  # X-Forwarded-* are judged by trusted_proxies, not by uvicorn
        server_header=False,
        date_header=False,
        access_log=False,
    )


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which `taskset` and container CPU
    sets narrow), else the machine's count: `serve` runs one worker per CPU by default (SPEC 1)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux: no affinity mask to read
        return os.cpu_count() or 1


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _print_problems(exc: ConfigError) -> None:
    for problem in exc.problems:
        print(problem, file=sys.stderr)


def _check_config(args: argparse.Namespace) -> int:
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    groups: frozenset[str] | None = None
    reached_all = True
    if args.online:
        groups, reached_all = asyncio.run(_check_online(settings))
    findings = check_settings(settings, groups)
    # Errors fail the file, on stderr like the loader's problems; warnings are part of the
    # report of a file that passes, on stdout.
    for problem in errors_in(findings):
        print(problem, file=sys.stderr)
    for warning in warnings_in(findings):
        print(f"warning: {warning}")
    if errors_in(findings) or not reached_all:
        return 1
    print(
        f"{args.config}: ok ({len(settings.identity_providers)} identity provider(s), "
        f"{len(settings.apps)} app(s), {len(warnings_in(findings))} warning(s))"
    )
    return 0


async def _check_online(settings: Settings) -> tuple[frozenset[str] | None, bool]:
    """`check-config --online`: reach the store and each IdP's discovery document and keys,
    saying on stdout what answered (and on stderr what did not). Returns the groups the store
    knows (None with the memory store, which only a running gateway holds) and whether
    everything answered."""
    from gateway.authn.providers.generic import GenericOIDCProvider
    from gateway.authn.providers.okta import OktaProvider
    from gateway.runtime import CALLBACK_PATH
    from gateway.state.store import open_store

    reached_all = True
    groups: frozenset[str] | None = None
    where = _without_password(settings.gateway.store)
    if settings.gateway.store == "memory":
        print("online: store memory: nothing to reach; group names are not checked")
    else:
        store = open_store(settings.gateway.store)
        try:
            await store.ping()
            groups = await known_groups(store, (idp.id for idp in settings.identity_providers))
            print(f"online: store {where} answered; it knows {len(groups)} group name(s)")
        except GatewayError as exc:
            print(f"gateway.store: {where} did not answer: {exc}", file=sys.stderr)
            reached_all = False
        finally:
            await store.close()
    timeout = settings.gateway.idp_timeout
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
        redirect_uri = settings.gateway.public_url + CALLBACK_PATH
        for i, idp in enumerate(settings.identity_providers):
            provider: OktaProvider | GenericOIDCProvider
            match idp.type:  # as the runtime picks them
                case "okta":
                    provider = OktaProvider(idp, http, redirect_uri=redirect_uri)
                case "oidc":
                    provider = GenericOIDCProvider(idp, http, redirect_uri=redirect_uri)
            path = f"identity_providers[{i}]"
            try:
                meta = await provider.metadata()
                keys = await http.get(meta.jwks_uri)
                keys.raise_for_status()
                count = len(keys.json()["keys"])
            except GatewayError as exc:
                print(f"{path}: {idp.id}: {exc.description}", file=sys.stderr)
                reached_all = False
                continue
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                print(f"{path}: {idp.id}: keys at {meta.jwks_uri}: {problem}", file=sys.stderr)
                reached_all = False
                continue
            print(f"online: {path} ({idp.id}): issuer {meta.issuer} answered, {count} key(s)")
    return groups, reached_all


def _without_password(url: str) -> str:
    """A store URL fit to print: its password (if any) replaced by "***"."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def _run_demo(addresses: DemoAddresses) -> None:
    from gateway.demo.config import IDP_ID, demo_config_text, demo_environment
    from gateway.demo.devidp import create_dev_idp, demo_users
    from gateway.demo.echo import create_echo_app
    from gateway.scim.secret import ScimSecrets
    from gateway.state.store import open_store

    env = demo_environment()
    # The very text --print-config shows, its secrets from `env` (never the caller's environment).
    # Its development IdP speaks plain http, to the network when the demo listens there.
    settings = parse_settings(
        tomllib.loads(demo_config_text(addresses)),
        env,
        plain_http_hosts=frozenset({addresses.url_host}),
    )
    users = demo_users()
    idp = settings.idp(IDP_ID)
    if idp is None or not isinstance(idp.config, OktaConfig):  # the demo's config makes one
        raise TypeError("the demo's identity provider must be of type okta")
    dev_idp = create_dev_idp(
        issuer=idp.config.okta_account,
        client_id=idp.config.client_id,
        client_secret=idp.config.client_secret,
        redirect_uris=[f"{settings.gateway.public_url}/cdn-cgi/access/callback"],
        users=users,
        api_token=idp.config.api_token,
    )
    store = open_store(settings.gateway.store)
    scim_secret = await ScimSecrets(store).ensure(idp)  # a fresh memory store: always made
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=p,
                log_level="warning",
                log_config=None,  # keep the JSON logging set up by `main`
                access_log=False,
                proxy_headers=False,
                server_header=False,
                http=GatewayHttpToolsProtocol,
            )
        )
        for app, host, p in (
            (create_app(settings, store=store), addresses.bind_host, addresses.port),
            (dev_idp, addresses.bind_host, addresses.idp_port),
            (create_echo_app(), "127.0.0.1", addresses.upstream_port),
        )
    ]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    try:
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                for s in servers:
                    s.should_exit = True
                await asyncio.gather(*tasks, return_exceptions=True)
                raise SystemExit(
                    f"demo: could not listen on ports {addresses.port}-{addresses.upstream_port}"
                )
            await asyncio.sleep(0.05)
        print(_demo_banner(settings, addresses, users, scim_secret or ""), flush=True)
        await asyncio.gather(*tasks)
    finally:
        await store.close()


def _demo_banner(
    settings: Settings, addresses: DemoAddresses, users: Sequence[DevUser], scim_secret: str
) -> str:
    """What the demo prints once it listens: where everything is and every credential."""
    from gateway.demo.config import IDP_ID

    public_url = settings.gateway.public_url
    token = settings.gateway.admin_token
    lines = [
        "",
        f"Gateway demo running: open {public_url}/",
        f"  development IdP (Okta-like): {addresses.idp_url}",
        f"  demo upstream (echoes the identity it receives): {addresses.upstream_url}",
        "Demo users (the app allows the Engineering group only):",
    ]
    lines += [
        f"  {u.email:<20} password: {u.password}  groups: {', '.join(u.groups)}" for u in users
    ]
    lines += [
        f"Console: {public_url}/console/ (sign in as alice@example.com)",
        f"Admin API: {public_url}/api/ (described at {public_url}/api/openapi.json)",
        f"  admin token: {token}",
        f'  try: curl -H "Authorization: Bearer {token}" {public_url}/api/users',
        f"SCIM for the development IdP ({IDP_ID}): {public_url}/populations/{IDP_ID}/scim/v2",
        f"  SCIM secret: {scim_secret}",
        "The configuration this runs: gateway demo --print-config",
    ]
    if addresses.exposed:
        lines.append(
            f"Listening on {addresses.bind_host}: anyone who can reach this machine can use the "
            "demo, and signs in with the passwords above (plain http, development IdP)."
        )
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo.config import demo_addresses, demo_config_text

    try:
        addresses = demo_addresses(args.host, args.port)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.print_config:
        print(demo_config_text(addresses), end="")
        return 0
    try:
        asyncio.run(_run_demo(addresses))
    except KeyboardInterrupt:
        pass
    return 0


async def _new_scim_secret(config: str, idp_id: str) -> str:
    """A new SCIM secret for the IdP, its hash stored in the config's store (SPEC 1)."""
    from gateway.scim.secret import ScimSecrets
    from gateway.state.catalog import Catalog
    from gateway.state.store import open_store

    settings = load_config(config)
    if settings.gateway.store == "memory":
        raise GatewayError("The store is `memory`: a secret kept there ends with this command.")
    store = open_store(settings.gateway.store)
    try:
        # The IdP may come from the file or from the admin API (the catalog in the store).
        idp = (await Catalog(store, settings).load()).idp(idp_id)
        if idp is None:
            raise GatewayError(f"No identity provider {idp_id!r}.")
        if not idp.scim_config.enabled:
            print(f"note: SCIM is not enabled for {idp_id!r} yet", file=sys.stderr)
        return await ScimSecrets(store).regenerate(idp)
    finally:
        await store.close()


def _scim_secret(args: argparse.Namespace) -> int:
    try:
        secret = asyncio.run(_new_scim_secret(args.config, args.idp_id))
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    except GatewayError as exc:
        print(exc.description, file=sys.stderr)
        return 1
    print(secret)
    return 0


async def _new_console_link(config: str) -> str:
    """A one-time console URL, its hash stored in the config's store (SPEC 1)."""
    from gateway.console import link
    from gateway.state.store import open_store

    settings = load_config(config)
    if settings.gateway.store == "memory":
        raise GatewayError(
            "The store is `memory`: a link kept there ends with this command. "
            "Console links need the store the gateway runs with (Redis)."
        )
    store = open_store(settings.gateway.store)
    try:
        token = await link.issue(store, time.time)
    finally:
        await store.close()
    return link.link_url(settings.gateway.public_url, token)


def _console_link(args: argparse.Namespace) -> int:
    try:
        url = asyncio.run(_new_console_link(args.config))
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    except GatewayError as exc:
        print(exc.description, file=sys.stderr)
        return 1
    print(url)
    print("One use, within 10 minutes: it signs you in to the console.", file=sys.stderr)
    return 0


async def _explain_access(config: str, email: str, app_id: str, ip: str) -> list[Explanation]:
    """The explanations for `email` at `app_id`, from the registry in the config's store."""
    from gateway.state.catalog import Catalog
    from gateway.state.registry import Registry
    from gateway.state.store import open_store

    settings = load_config(config)
    if settings.gateway.store == "memory":
        raise GatewayError(
            "The store is `memory`: the registry lives in the gateway process, so there is no "
            "last-seen identity to read here. Ask the running gateway: "
            "GET /api/apps/<id>/explain?email=<email>."
        )
    client_ip = parse_ip(ip)
    store = open_store(settings.gateway.store)
    try:
        # The app may come from the file or from the admin API (the catalog in the store).
        settings = await Catalog(store, settings).load()
        app = next((a for a in settings.apps if a.id == app_id), None)
        if app is None:
            raise GatewayError(f"No app {app_id!r}.")
        return await explain_email(Registry(store), app, email, client_ip)
    finally:
        await store.close()


def render_explanation(explanation: Explanation) -> str:
    """An explanation as `gateway explain` prints it."""
    decision = explanation.decision
    identity = explanation.identity
    verdict = "would get in" if decision.allowed else "would NOT get in"
    lines = [
        f"{identity.email} (identity provider {identity.idp_id}, groups: "
        f"{', '.join(identity.groups) or 'none'}) {verdict} to {explanation.app.id}: "
        f"{decision.outcome}",
        f"  policy: {decision.policy_name}",
    ]
    if decision.rule:
        lines.append(f"  rule: {decision.rule}")
    lines.append("  every policy, in the order they are judged:")
    for check in explanation.checks:
        matched = "matches" if check.matched else "does not match"
        lines.append(
            f"    {check.policy.decision:<12} {check.policy.name!r} {matched}: {check.rule}"
        )
    return "\n".join(lines)


def _explain(args: argparse.Namespace) -> int:
    """Exit 0 if every identity with the email would get in, 1 if one would not, 2 if the
    question cannot be answered (no such user or app, a bad config)."""
    try:
        explanations = asyncio.run(_explain_access(args.config, args.email, args.app, args.ip))
    except ConfigError as exc:
        _print_problems(exc)
        return 2
    except GatewayError as exc:
        print(exc.description, file=sys.stderr)
        return 2
    print("\n\n".join(render_explanation(e) for e in explanations))
    return 0 if all(e.decision.allowed for e in explanations) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes (default: one per CPU it may use; one with the memory store)",
    )
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=_serve)

    check = commands.add_parser(
        "check-config", help="validate a config file: errors (exit 1) and warnings"
    )
    check.add_argument("config")
    check.add_argument(
        "--online",
        action="store_true",
        help="also reach the store and each IdP, and check group names against the store",
    )
    check.set_defaults(handler=_check_config)

    demo = commands.add_parser("demo", help="everything on one machine, no Okta, no Redis")
    demo.add_argument("--port", type=int, default=8000, help="the gateway's; the IdP's is +1")
    demo.add_argument(
        "--host",
        help="listen here (default: localhost only); 0.0.0.0 listens everywhere and names "
        "itself by this machine's address",
    )
    demo.add_argument(
        "--print-config", action="store_true", help="print the TOML the demo runs, and exit"
    )
    demo.set_defaults(handler=_demo)

    explain = commands.add_parser(
        "explain", help="would this user get into this app, and why (from the registry)"
    )
    explain.add_argument("--config", required=True)
    explain.add_argument("--email", required=True)
    explain.add_argument("--app", required=True, help="the app's id")
    explain.add_argument("--ip", default="", help="the client address to judge ip rules by")
    explain.set_defaults(handler=_explain)

    scim = commands.add_parser(
        "scim-secret", help="generate a new SCIM secret for an identity provider (shown once)"
    )
    scim.add_argument("--config", required=True)
    scim.add_argument("idp_id")
    scim.set_defaults(handler=_scim_secret)

    console_link = commands.add_parser(
        "console-link",
        help="print a one-time URL (10 minutes) that signs you in to the console (break-glass)",
    )
    console_link.add_argument("--config", required=True)
    console_link.set_defaults(handler=_console_link)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("serve", "demo"):
        # JSON lines on stdout (logs.py); `serve` hands the same config to uvicorn's workers.
        logging.config.dictConfig(logging_config(getattr(args, "log_level", "info")))
    else:  # one-shot commands print their result on stdout; their logs go to stderr
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    code: int = args.handler(args)
    return code
