"""``kiroku projections run | status | rebuild [VIEW…] | prune [VIEW…] | retry VIEW``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from dataclasses import asdict
from types import FrameType
from typing import Any

from kiroku.bootstrap import build_ledger
from kiroku.rebuild import RebuildStopped, rebuild_in_processes
from kiroku.runtime import tune_gc_for_batches
from kiroku.settings import Settings
from projections.runner import RebuildUnderWay
from projections.service import PRUNE_EVERY_S, RETIRED_FOR_S, Projections
from projections.store import ViewStopped

log = logging.getLogger("kiroku")


def _projections(args: argparse.Namespace) -> Projections:
    ledger = build_ledger(Settings.from_env(dict(os.environ)))
    return Projections(ledger, page_size=args.page_size, poll_interval=args.poll_interval)


def run(args: argparse.Namespace) -> int:
    projections = _projections(args)
    tune_gc_for_batches()  # pages of events, as ingest's batches

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: finishing the current page of each view, then stopping", signal.Signals(signum).name)
        projections.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "running views %s on %s", ", ".join(args.views or projections.views), projections.ledger.recorder
    )
    projections.run(args.views or None, prune_every=args.prune_every, retired_for=args.retired_for)
    projections.ledger.close()
    return 0


def status(args: argparse.Namespace) -> int:
    projections = _projections(args)
    rows = projections.status()
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(f"{'view':<18} {'gen':>4} {'state':<9} {'position':>9} {'lag':>7}  stopped at")
        for r in rows:
            stopped = (
                f"{r.stopped_at_notification} ({r.stopped_event_type})" if r.stopped_at_notification else ""
            )
            print(f"{r.name:<18} {r.generation or '-':>4} {r.state:<9} {r.position:>9} {r.lag:>7}  {stopped}")
    projections.ledger.close()
    return 1 if any(r.state == "stopped" for r in rows) else 0


def rebuild(args: argparse.Namespace) -> int:
    projections = _projections(args)
    tune_gc_for_batches()
    show = sys.stderr.isatty() or args.progress

    def progress(done: int, head: int, rate: float) -> None:
        if show:
            width = 30
            filled = int(width * done / max(head, 1))
            sys.stderr.write(
                f"\r{label}: [{'#' * filled}{'.' * (width - filled)}] {done}/{head} {rate:,.0f} events/s"
            )
            sys.stderr.flush()

    if not _known(projections, "rebuild", args.views):
        return 2
    names = args.views or list(projections.views)
    label = ", ".join(names) if args.views else "every view"
    try:
        if args.processes > 1:
            settings = Settings.from_env(dict(os.environ))
            generations = rebuild_in_processes(settings, projections, names, args.processes, progress)
        else:
            generations = projections.rebuild_views(names, progress)
    except (RebuildUnderWay, ViewStopped, RebuildStopped) as failed:
        if show:
            sys.stderr.write("\n")
        others = "" if isinstance(failed, RebuildUnderWay) else "; the other views were rebuilt"
        print(f"kiroku projections rebuild: {failed}{others}", file=sys.stderr)
        projections.ledger.close()
        return 1
    if show:
        sys.stderr.write("\n")
    for name, generation in generations.items():
        print(f"view {name}: generation {generation.generation} built and active")
    projections.ledger.close()
    return 0


def _known(projections: Projections, command: str, names: list[str]) -> bool:
    """Whether every view named is one; if not, says which are not (and closes the ledger)."""
    unknown = [name for name in names if name not in projections.views]
    if unknown:
        print(
            f"kiroku projections {command}: no view {', '.join(unknown)}; "
            f"the views are {', '.join(projections.views)}",
            file=sys.stderr,
        )
        projections.ledger.close()
    return not unknown


def prune(args: argparse.Namespace) -> int:
    projections = _projections(args)
    if not _known(projections, "prune", args.views):
        return 2
    try:
        looked_at = projections.prune(args.views or None, retired_for=args.retired_for, dry_run=args.dry_run)
    finally:
        projections.ledger.close()
    if args.json:
        print(json.dumps([asdict(p) for p in looked_at], indent=2))
        return 0
    dropped = "would drop" if args.dry_run else "dropped"
    for p in looked_at:
        outcome = f"{dropped} ({p.reason})" if p.dropped else f"kept: {p.reason}"
        print(f"view {p.name}: generation {p.generation} ({p.state}): {outcome}")
    if not looked_at:
        print("no retired or unfinished generation")
    return 0


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def retry(args: argparse.Namespace) -> int:
    projections = _projections(args)
    cleared = projections.store.clear_stopped(args.view)
    outcome = "cleared; the next run starts again from its position" if cleared else "was not stopped"
    print(f"view {args.view}: {outcome}")
    projections.ledger.close()
    return 0


def _retired_for_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retired-for",
        type=_seconds,
        default=RETIRED_FOR_S,
        metavar="SECONDS",
        help=f"drop a retired generation only this long after it was retired (default {RETIRED_FOR_S:g})",
    )


def register(sub: Any) -> None:
    p = sub.add_parser("projections", help="the views the compliance team reads")
    p.add_argument("--page-size", type=int, default=1000, help="events per transaction")
    p.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls")
    commands = p.add_subparsers(dest="projections_command", required=True)
    r = commands.add_parser("run", help="keep the views up to date until SIGTERM")
    r.add_argument("views", nargs="*", help="only these views")
    r.add_argument(
        "--prune-every",
        type=_seconds,
        default=PRUNE_EVERY_S,
        metavar="SECONDS",
        help=f"prune generations this often, as `prune` does (default {PRUNE_EVERY_S:g}; 0: never)",
    )
    _retired_for_argument(r)
    r.set_defaults(func=run)
    s = commands.add_parser("status", help="each view's position, lag and state")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=status)
    b = commands.add_parser(
        "rebuild", help="build views again beside the old ones (in one pass), then switch readers"
    )
    b.add_argument("views", nargs="*", help="only these views (default: every view)")
    b.add_argument(
        "--processes",
        type=int,
        default=1,
        choices=range(1, 9),
        metavar="N",
        help="share the views out among N processes (1-8; default 1)",
    )
    b.add_argument(
        "--progress", action="store_true", help="show the progress bar even when not on a terminal"
    )
    b.set_defaults(func=rebuild)
    d = commands.add_parser(
        "prune", help="drop generations retired a while ago and those a failed rebuild left unfinished"
    )
    d.add_argument("views", nargs="*", help="only these views (default: every view)")
    _retired_for_argument(d)
    d.add_argument("--dry-run", action="store_true", help="say what would be dropped; drop nothing")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=prune)
    t = commands.add_parser("retry", help="let a stopped view run again")
    t.add_argument("view")
    t.set_defaults(func=retry)
