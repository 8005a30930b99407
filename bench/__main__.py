"""``python -m bench ingest|rebuild|query|ingest-phases|history --events N``."""

from __future__ import annotations

import argparse
import logging

from bench import history, ingest, ingest_phases, query, rebuild
from kiroku.runtime import quiet_slow_network_steps


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("benchmark", choices=["ingest", "rebuild", "query", "ingest-phases", "history"])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8, help="query: concurrent clients")
    parser.add_argument("--requests", type=int, default=100, help="query: requests per client")
    parser.add_argument("--api-workers", type=int, default=2, help="query: API worker processes")
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="ingest: kiroku consume processes; rebuild: processes of its second timing (the first is one)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # kafka-python's slow-step warnings, summed up as the kiroku command sums them
    # (the ceiling's consumer and the benchmark's own run in this process).
    quiet_slow_network_steps()
    if args.benchmark == "query":
        query.main(args.events, args.clients, args.requests, args.api_workers)
    elif args.benchmark == "ingest":
        ingest.main(args.events, args.processes)
    elif args.benchmark == "ingest-phases":
        ingest_phases.main(args.events)
    elif args.benchmark == "history":
        history.main(args.events)
    else:
        rebuild.main(args.events, args.processes)


if __name__ == "__main__":
    main()
