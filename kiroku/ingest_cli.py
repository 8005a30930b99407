"""The commands of ingest and of the development broker.

``kiroku consume [status|accept-loss|gaps|dead-letters]``, ``kiroku publish``, ``kiroku broker``,
``kiroku policy init``
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from consumers.contract import Contract
from consumers.ingest import Ingest, IngestSettings
from consumers.lag import IngestLag, accept_loss, ingest_lag
from consumers.synthetic import Traffic
from consumers.topics import UPSTREAM_TOPICS, create_topics
from domain.cause import Cause
from domain.errors import DomainError
from kiroku.bootstrap import build_ledger
from kiroku.broker import TansuBroker
from kiroku.policy_text import publish_current_policy
from kiroku.runtime import tune_gc_for_batches
from kiroku.settings import Settings, SettingsError

log = logging.getLogger("kiroku")


def _bootstrap(settings: Settings, given: str | None) -> str:
    servers = given or settings.kafka_bootstrap_servers
    if not servers:
        raise SettingsError(
            "KAFKA_BOOTSTRAP_SERVERS: required (or --bootstrap-servers); `kiroku broker` starts one"
        )
    return servers


def ingest_settings(args: argparse.Namespace, settings: Settings, servers: str) -> IngestSettings:
    """The consumer's settings from ``kiroku consume``'s options."""
    if args.batch < 1 or args.session_timeout_ms < 1 or args.max_poll_interval_ms < 1:
        raise SettingsError("--batch, --session-timeout-ms and --max-poll-interval-ms must be positive")
    return IngestSettings(
        bootstrap_servers=servers,
        group_id=settings.group_id,
        stream_prefix=settings.stream_prefix,
        max_poll_records=args.batch,
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=max(300, args.session_timeout_ms // 10),
        max_poll_interval_ms=args.max_poll_interval_ms,
    )


def consume(args: argparse.Namespace) -> int:
    settings = Settings.from_env(dict(os.environ))
    servers = _bootstrap(settings, args.bootstrap_servers)
    ledger = build_ledger(settings)
    if not ledger.policy_versions():
        log.warning(
            "no policy version is published: every collection will be refused (§12); see `kiroku policy init`"
        )
    if args.create_topics:
        create_topics(servers)
    ingest = Ingest(ledger, ingest_settings(args, settings, servers))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: finishing the current batch, then leaving the group", signal.Signals(signum).name)
        ingest.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tune_gc_for_batches()
    log.info(
        "consuming %s from %s into %s as group %s",
        ", ".join(UPSTREAM_TOPICS),
        servers,
        settings.database.describe(),
        settings.group_id,
    )
    counters = ingest.run()
    ledger.close()
    log.info(
        "stopped: %s consumed, %s recorded, %s duplicates, %s dead letters",
        counters.consumed,
        counters.recorded,
        counters.duplicates,
        counters.dead_letters,
    )
    return 0


def _lag_table(lag: IngestLag, servers: str, epoch: str) -> list[str]:
    rows = [("partition", "recorded", "log start", "log end", "behind", "")]
    for p in lag.partitions:
        note = ""
        if p.remade:
            note = "REMADE: the topic was made again since it was recorded from"
        elif p.ahead:
            note = "AHEAD of the broker's end: not the log it was recorded from"
        elif p.lost:
            note = f"LOST {p.lost:,}: the log now starts after the next message to record"
        recorded = "none" if p.recorded is None else f"{p.recorded:,}"
        rows.append((p.stream, recorded, f"{p.start:,}", f"{p.end:,}", f"{p.behind:,}", note))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(
            [
                row[0].ljust(widths[0]),
                *(v.rjust(w) for v, w in zip(row[1:5], widths[1:], strict=True)),
                row[5],
            ]
        ).rstrip()
        for row in rows
    ]
    lines.extend(f"{topic}: no such topic on the broker" for topic in lag.missing_topics)
    for p in lag.troubled:
        if p.ahead or p.remade:
            lines.append(f"{p.stream}: to start over on what the broker holds, set a new KIROKU_INGEST_EPOCH")
        else:
            lines.append(
                f"{p.stream}: to record the gap and go on: kiroku consume accept-loss --topic {p.topic} "
                f'--partition {p.partition} --reason "..."'
            )
    under = f"; positions of epoch {epoch}" if epoch else ""
    lines.append(f"behind: {lag.behind:,} messages in {len(lag.partitions)} partitions of {servers}{under}")
    return lines


def consume_status(args: argparse.Namespace) -> int:
    """Each upstream partition's recorded position against the broker's log; 1 when a person is needed."""
    settings = Settings.from_env(dict(os.environ))
    servers = _bootstrap(settings, args.bootstrap_servers)
    if args.max_behind is not None and args.max_behind < 0:
        raise SettingsError("--max-behind: must be 0 or more")
    if not 0 < args.timeout <= 3600:
        raise SettingsError("--timeout: must be more than 0 and at most 3600 seconds")
    ledger = build_ledger(settings)
    try:
        lag = ingest_lag(ledger, servers, stream_prefix=settings.stream_prefix, timeout_s=args.timeout)
    except (KafkaError, TimeoutError) as exc:
        print(
            f"kiroku: cannot read the partitions' offsets from {servers}: {type(exc).__name__}",
            file=sys.stderr,
        )
        return 3
    finally:
        ledger.close()
    if args.json:
        print(
            json.dumps(
                {
                    "bootstrap_servers": servers,
                    "epoch": settings.ingest_epoch or None,
                    "behind": lag.behind,
                    "missing_topics": list(lag.missing_topics),
                    "partitions": [
                        {
                            "topic": p.topic,
                            "partition": p.partition,
                            "recorded": p.recorded,
                            "log_start": p.start,
                            "log_end": p.end,
                            "behind": p.behind,
                            "lost": p.lost,
                            "ahead": p.ahead,
                            "remade": p.remade,
                        }
                        for p in lag.partitions
                    ],
                }
            )
        )
    else:
        print("\n".join(_lag_table(lag, servers, settings.ingest_epoch)))
    too_far = args.max_behind is not None and lag.behind > args.max_behind
    if too_far and not args.json:
        print(
            f"kiroku: {lag.behind:,} messages behind, more than --max-behind {args.max_behind:,}",
            file=sys.stderr,
        )
    return 1 if lag.troubled or lag.missing_topics or too_far else 0


def consume_accept_loss(args: argparse.Namespace) -> int:
    """Records a LOST partition's gap in the ledger; the consumers go on after it."""
    settings = Settings.from_env(dict(os.environ))
    servers = _bootstrap(settings, args.bootstrap_servers)
    if args.topic not in UPSTREAM_TOPICS:
        raise SettingsError(f"--topic: one of {', '.join(UPSTREAM_TOPICS)}")
    if not 0 < args.timeout <= 3600:
        raise SettingsError("--timeout: must be more than 0 and at most 3600 seconds")
    ledger = build_ledger(settings)
    try:
        try:
            lag = ingest_lag(
                ledger, servers, [args.topic], stream_prefix=settings.stream_prefix, timeout_s=args.timeout
            )
        except (KafkaError, TimeoutError) as exc:
            print(
                f"kiroku: cannot read the partitions' offsets from {servers}: {type(exc).__name__}",
                file=sys.stderr,
            )
            return 3
        found = [p for p in lag.partitions if p.partition == args.partition]
        if not found:
            print(f"kiroku: the broker has no partition {args.partition} of {args.topic}", file=sys.stderr)
            return 1
        partition = found[0]
        cause = Cause(
            actor=f"cli:{getpass.getuser()}", source_system="kiroku-cli", occurred_at=datetime.now(UTC)
        )
        try:
            result = accept_loss(
                ledger, partition, reason=args.reason, cause=cause, stream_prefix=settings.stream_prefix
            )
        except DomainError as exc:
            print(f"kiroku: refused: {exc}", file=sys.stderr)
            return 1
    finally:
        ledger.close()
    assert partition.recorded is not None  # accept_loss refuses otherwise
    print(
        f"recorded as lost: offsets {partition.recorded + 1:,}-{partition.start - 1:,} of "
        f"{args.topic}/{args.partition} ({partition.lost:,} messages; gap {result.id}); "
        f"the consumer holding the partition reads on from offset {partition.start:,} "
        f"within {Ingest.recheck_lost_s:.0f} s"
    )
    return 0


def _printable(text: str) -> str:
    """A person's text for a terminal: control characters shown escaped, lines indented under the row."""
    shown = "".join(c if c in "\n\t" or c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return shown.replace("\n", "\n    ")


def consume_gaps(args: argparse.Namespace) -> int:
    """Every upstream gap a person accepted: which messages, why, who and when (from the ledger)."""
    settings = Settings.from_env(dict(os.environ))
    ledger = build_ledger(settings)
    try:
        gaps = ledger.accepted_gaps()
    finally:
        ledger.close()
    if args.json:
        print(json.dumps([g.as_dict() for g in gaps]))
        return 0
    if not gaps:
        print("no upstream gaps accepted")
        return 0
    for g in gaps:
        print(
            f"{g.accepted_at.isoformat(timespec='seconds')}  {g.stream}  offsets "
            f"{g.first_missing:,}-{g.last_missing:,} ({g.missing:,} messages)  by {g.actor}  gap {g.gap_id}"
        )
        print(f"    {_printable(g.reason)}")
    missing = sum(g.missing for g in gaps)
    print(f"{len(gaps):,} gap{'s' * (len(gaps) != 1)} accepted, {missing:,} messages never recorded in all")
    return 0


def consume_dead_letters(args: argparse.Namespace) -> int:
    """Every upstream message ingest dead-lettered, once each: where it was and why (from the ledger).

    Printed a page at a time, as it is read: there may be many.
    """
    settings = Settings.from_env(dict(os.environ))
    ledger = build_ledger(settings)
    count, streams = 0, set[str]()
    try:
        if args.json:
            sys.stdout.write("[")
        for d in ledger.dead_letters_from():
            if args.json:
                sys.stdout.write(("," if count else "") + json.dumps(d.as_dict()))
            else:
                refused = f"  refused by {d.clause}" if d.clause else ""
                print(
                    f"{d.recorded_at.isoformat(timespec='seconds')}  {d.stream}  offset {d.offset:,}  "
                    f"{d.error_class}{refused}  (to {d.topic}.dlq)"
                )
            count += 1
            streams.add(d.stream)
    finally:
        ledger.close()
    if args.json:
        print("]")
    elif not count:
        print("no upstream message dead-lettered")
    else:
        print(
            f"{count:,} message{'s' * (count != 1)} dead-lettered "
            f"from {len(streams):,} stream{'s' * (len(streams) != 1)}"
        )
    return 0


class _Progress:
    """A one-line progress bar on standard error, with the rate."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.start, self.last = total, enabled, time.monotonic(), 0.0

    def show(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < 0.2):
            return
        self.last = now
        width = 30
        filled = int(width * done / max(self.total, 1))
        rate = done / max(now - self.start, 1e-9)
        end = "\n" if final else ""
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {rate:,.0f} msg/s{end}"
        )
        sys.stderr.flush()


def publish(args: argparse.Namespace) -> int:
    settings = Settings.from_env(dict(os.environ))
    servers = _bootstrap(settings, args.bootstrap_servers)
    if args.create_topics:
        create_topics(servers)
    producer = KafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True, linger_ms=10)
    progress = _Progress(args.count, sys.stderr.isatty() or args.progress)
    sent = 0
    failures: list[BaseException] = []

    def failed(exc: BaseException) -> None:
        failures.append(exc)

    for message in Traffic(Contract.load(), seed=args.seed).messages(args.count):
        producer.send(message.topic, key=message.key, value=message.value).add_errback(failed)
        sent += 1
        progress.show(sent)
    producer.flush()
    producer.close()
    progress.show(sent, final=True)
    if failures:
        print(f"kiroku: {len(failures)} messages were not accepted by the broker", file=sys.stderr)
        return 1
    print(f"published {sent} messages to {servers}")
    return 0


def broker(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with TansuBroker(port=args.port) if args.port else TansuBroker() as running:
        create_topics(running.bootstrap_servers)
        print(
            f"Tansu (in memory) on {running.bootstrap_servers}; "
            f"topics {', '.join(UPSTREAM_TOPICS)} and their .dlq"
        )
        print(f"export KAFKA_BOOTSTRAP_SERVERS={running.bootstrap_servers}", flush=True)
        stop.wait()
    return 0


def policy_init(args: argparse.Namespace) -> int:
    settings = Settings.from_env(dict(os.environ))
    ledger = build_ledger(settings)
    try:
        if ledger.policy_versions():
            print("a policy is already published: " + ", ".join(v.version for v in ledger.policy_versions()))
            return 0
        effective = datetime.fromisoformat(args.effective_from).replace(tzinfo=UTC)
        result = publish_current_policy(
            ledger, actor=args.actor, version=args.version, effective_from=effective
        )
    except DomainError as exc:
        print(f"kiroku: refused: {exc}", file=sys.stderr)
        return 1
    finally:
        ledger.close()
    print(
        f"published policy version {args.version}, effective {effective.date()} (position {result.position})"
    )
    return 0


def register(sub: Any) -> None:
    c = sub.add_parser("consume", help="ingest the upstream Kafka topics into the event store")
    c.add_argument("--bootstrap-servers", help="overrides KAFKA_BOOTSTRAP_SERVERS")
    c.add_argument("--batch", type=int, default=2000, help="most messages per partition per transaction")
    c.add_argument("--session-timeout-ms", type=int, default=10_000)
    c.add_argument(
        "--max-poll-interval-ms",
        type=int,
        default=300_000,
        help="a batch that takes longer puts the consumer out of its group, its partitions to the others "
        "(default 300000, kafka-python's)",
    )
    c.add_argument("--create-topics", action="store_true", help="create the topics first if they are missing")
    c.set_defaults(func=consume)
    c_sub = c.add_subparsers(dest="consume_command", metavar="status|accept-loss|gaps|dead-letters")
    st = c_sub.add_parser(
        "status",
        help="each upstream partition: the offset recorded last, the broker's log, the messages behind",
        description=(
            "Reads the recorded positions from the event store and each partition's log start and end "
            "from the broker; joins no group, commits nothing. Exit 1 when a partition lost messages to "
            "retention, lies ahead of the broker's end, is of a topic made again since it was recorded "
            "from, an upstream topic is missing, or ingest is more "
            "than --max-behind behind; 3 when the broker cannot be read."
        ),
    )
    # SUPPRESS: `kiroku consume --bootstrap-servers X status` keeps X.
    st.add_argument(
        "--bootstrap-servers", default=argparse.SUPPRESS, help="overrides KAFKA_BOOTSTRAP_SERVERS"
    )
    st.add_argument("--max-behind", type=int, help="exit 1 when more messages than this are not recorded")
    st.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    st.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the broker (default 30)")
    st.set_defaults(func=consume_status)
    al = c_sub.add_parser(
        "accept-loss",
        help="record a LOST partition's missing messages as a gap in the ledger, so ingest goes on",
        description=(
            "For a partition that `kiroku consume status` shows as LOST: records in the ledger (and so in "
            "the audit trail) which offsets were removed from the broker before they were recorded, why, "
            "and who accepted it, and moves the partition's recorded position past them in the same "
            "transaction; the consumer holding the partition goes on from the log's start. Exit 1 when "
            "nothing is lost there (or it lies AHEAD); 3 when the broker cannot be read."
        ),
    )
    al.add_argument("--topic", required=True, help=f"one of {', '.join(UPSTREAM_TOPICS)}")
    al.add_argument("--partition", type=int, required=True)
    al.add_argument("--reason", required=True, help="why the loss is accepted (kept in the ledger)")
    al.add_argument(
        "--bootstrap-servers", default=argparse.SUPPRESS, help="overrides KAFKA_BOOTSTRAP_SERVERS"
    )
    al.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the broker (default 30)")
    al.set_defaults(func=consume_accept_loss)
    gp = c_sub.add_parser(
        "gaps",
        help="every upstream gap accepted with accept-loss: which messages, why, who and when",
        description=(
            "Lists from the ledger every upstream gap a person accepted (`kiroku consume accept-loss`): the "
            "stream (an ingest epoch's prefix, the topic and partition), the offsets never recorded, the "
            "reason given, who accepted it and when. Needs the database only, not the broker."
        ),
    )
    gp.add_argument("--json", action="store_true", help="a JSON array instead of the listing")
    gp.set_defaults(func=consume_gaps)
    dl = c_sub.add_parser(
        "dead-letters",
        help="every upstream message sent to a dead-letter topic, once each: where it was and why",
        description=(
            "Lists from the ledger every upstream message ingest sent to `<topic>.dlq`, once each even "
            "where the topic holds it twice (a crash between its send and the batch's commit): the "
            "stream, the offset, the error's class and the clause of the policy that refused it, if one "
            "did. Never the message or the error's text, which the dead-letter topic keeps. Needs the "
            "database only, not the broker."
        ),
    )
    dl.add_argument("--json", action="store_true", help="a JSON array instead of the listing")
    dl.set_defaults(func=consume_dead_letters)
    p = sub.add_parser("publish", help="publish synthetic upstream traffic (demos, benchmarks)")
    p.add_argument("count", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bootstrap-servers", help="overrides KAFKA_BOOTSTRAP_SERVERS")
    p.add_argument("--create-topics", action="store_true")
    p.add_argument(
        "--progress", action="store_true", help="show the progress bar even when not on a terminal"
    )
    p.set_defaults(func=publish)
    b = sub.add_parser("broker", help="run an in-memory Kafka-protocol broker (Tansu) for development")
    b.add_argument("--port", type=int)
    b.set_defaults(func=broker)
    pol = sub.add_parser("policy", help="the policy catalogue")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    init = pol_sub.add_parser("init", help="publish the CA's current policy (P1-P8, C1-C4) if none is")
    init.add_argument("--version", default="current")
    init.add_argument("--effective-from", default="2020-01-01")
    init.add_argument("--actor", default="kiroku-cli")
    init.set_defaults(func=policy_init)
