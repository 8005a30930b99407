"""The ``kiroku`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence

from kiroku.bootstrap import StoreUnavailable, build_ledger
from kiroku.demo import run_demo
from kiroku.ingest_cli import register as register_ingest_commands
from kiroku.projections_cli import register as register_projection_commands
from kiroku.settings import Settings, SettingsError

log = logging.getLogger("kiroku")


def _run(args: argparse.Namespace) -> int:
    """The service's main job; until ingest and the API land, the lifecycle demonstration."""
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiroku", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the service's main job (for now: the lifecycle demonstration)")
    run.add_argument(
        "--database-url",
        help="record into this store instead of a fresh embedded one (postgresql://… or sqlite:///…)",
    )
    run.add_argument(
        "--keep",
        action="store_true",
        help="with no database configured, record into the embedded store in KIROKU_DATA_DIR (.kiroku)",
    )
    run.set_defaults(func=_run)
    register_ingest_commands(sub)
    register_projection_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"kiroku: bad setting: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"kiroku: {exc}", file=sys.stderr)
        return 3
    return code


if __name__ == "__main__":
    raise SystemExit(main())
