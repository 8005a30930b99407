"""The ``kiroku`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence

from api.auth import ROLES, TokenFileError, TokenRegistry
from api.serve import serve as serve_api
from domain.errors import DomainError
from kiroku.bootstrap import StoreUnavailable, build_ledger
from kiroku.demo import run_demo
from kiroku.ingest_cli import register as register_ingest_commands
from kiroku.persistence.outage import UNREACHABLE
from kiroku.projections_cli import register as register_projection_commands
from kiroku.runtime import quiet_slow_network_steps
from kiroku.service import run_service
from kiroku.settings import Settings, SettingsError
from kiroku.team_cli import register as register_team_commands

log = logging.getLogger("kiroku")


def _run(args: argparse.Namespace) -> int:
    """The service's main job: ingest, views and the HTTP API."""
    return run_service(Settings.from_env(dict(os.environ)), demo=args.demo)


def _api(args: argparse.Namespace) -> int:
    """The HTTP API alone, in worker processes of its own."""
    if not 1 <= args.workers <= 64:
        raise SettingsError("--workers: must be 1-64")
    settings = Settings.from_env(dict(os.environ))
    build_ledger(settings).close()  # the store is reachable and its tables exist, before any worker starts
    try:
        TokenRegistry.load(settings.tokens_file)
    except TokenFileError as exc:
        raise SettingsError(f"KIROKU_TOKENS_FILE: {exc}") from None
    return serve_api(settings, args.workers)


def _demo(args: argparse.Namespace) -> int:
    """A printed walk through the lifecycle, on a fresh store unless told otherwise."""
    environ = dict(os.environ)
    if args.database_url:
        environ["KIROKU_DATABASE_URL"] = args.database_url
    workdir = None
    if not (environ.get("KIROKU_DATABASE_URL") or environ.get("DATABASE_URL")) and not args.keep:
        # A fresh embedded store each run, so the story starts from the beginning.
        workdir = tempfile.TemporaryDirectory(prefix="kiroku-demo-")
        environ["KIROKU_DATA_DIR"] = workdir.name
    settings = Settings.from_env(environ)
    print(f"kiroku: lifecycle demonstration on {settings.database.describe()}\n")
    ledger = build_ledger(settings)
    try:
        run_demo(ledger, sys.stdout)
    finally:
        ledger.close()
        if workdir is not None:
            workdir.cleanup()
    return 0


def _tokens_add(args: argparse.Namespace) -> int:
    settings = Settings.from_env(dict(os.environ))
    try:
        token = TokenRegistry.add(settings.tokens_file, args.name, args.role)
    except TokenFileError as exc:
        raise SettingsError(f"KIROKU_TOKENS_FILE: {exc}") from None
    print(f"token for {args.name} (role {args.role}), shown once; kiroku keeps only its hash:\n{token}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiroku", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="the service: ingest, views and the HTTP API (embedded broker if none is set)"
    )
    run.add_argument(
        "--demo", action="store_true", help="publish synthetic upstream traffic and print a token"
    )
    run.set_defaults(func=_run)
    api = sub.add_parser(
        "api", help="the HTTP API alone, in several worker processes (views kept by `kiroku projections run`)"
    )
    api.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    api.set_defaults(func=_api)
    demo = sub.add_parser("demo", help="a printed walk through the lifecycle the policy describes")
    demo.add_argument(
        "--database-url",
        help="record into this store instead of a fresh embedded one (postgresql://… or sqlite:///…)",
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="with no database configured, record into the embedded store in KIROKU_DATA_DIR (.kiroku)",
    )
    demo.set_defaults(func=_demo)
    tokens = sub.add_parser("tokens", help="API bearer tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    add = tokens_sub.add_parser("add", help="create a token for a person or system, with a role")
    add.add_argument("name")
    add.add_argument("role", choices=sorted(ROLES))
    add.set_defaults(func=_tokens_add)
    register_ingest_commands(sub)
    register_projection_commands(sub)
    register_team_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    quiet_slow_network_steps()
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"kiroku: bad setting: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"kiroku: {exc}", file=sys.stderr)
        return 3
    except UNREACHABLE as exc:
        # A command that lost the database half-way (its own retries gave up): what it
        # finished is committed, the rest not; the error's class only (its text may hold data).
        print(
            f"kiroku: the database became unreachable ({type(exc).__name__}); the command stopped",
            file=sys.stderr,
        )
        return 3
    except DomainError as exc:
        print(f"kiroku: refused: {exc}", file=sys.stderr)
        return 4
    return code


if __name__ == "__main__":
    raise SystemExit(main())
