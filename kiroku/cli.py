"""The ``kiroku`` command."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence

from kiroku.bootstrap import StoreUnavailable, build_ledger
from kiroku.demo import demo_clock, run_demo
from kiroku.settings import Settings, SettingsError

log = logging.getLogger("kiroku")


def _run(args: argparse.Namespace) -> int:
    """The service's main job; until ingest and the API land, the lifecycle demonstration."""
    if args.database_url:
        environ = {"KIROKU_DATABASE_URL": args.database_url}
        settings = Settings.from_env({**_environ(), **environ})
        workdir = None
    else:
        # A fresh embedded store each run, so the story always starts from the beginning.
        workdir = tempfile.TemporaryDirectory(prefix="kiroku-demo-")
        settings = Settings.from_env({"KIROKU_DATA_DIR": workdir.name})
    clock = demo_clock()
    print(f"kiroku: lifecycle demonstration on {settings.database.describe()}\n")
    ledger = build_ledger(settings, clock=clock)
    try:
        run_demo(ledger, clock, sys.stdout)
    finally:
        ledger.close()
        if workdir is not None:
            workdir.cleanup()
    return 0


def _environ() -> dict[str, str]:
    import os  # noqa: PLC0415 - only this path reads the process environment directly

    return dict(os.environ)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiroku", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the service's main job (for now: the lifecycle demonstration)")
    run.add_argument(
        "--database-url",
        help="record into this store instead of a fresh embedded one (postgresql://… or sqlite:///…)",
    )
    run.set_defaults(func=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
