"""``python -m bench ingest|rebuild|query --events N``."""

from __future__ import annotations

import argparse
import logging

from bench import ingest, query, rebuild


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("benchmark", choices=["ingest", "rebuild", "query"])
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    {"ingest": ingest.main, "rebuild": rebuild.main, "query": query.main}[args.benchmark](args.events)


if __name__ == "__main__":
    main()
