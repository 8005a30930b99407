"""The Kafka group consumer: each message recorded exactly once, or dead-lettered.

Progress lives in the event store, not in Kafka: the messages of one
partition from one poll are applied as one batch, and the batch's events are
saved in one transaction with a tracking record ``<topic>:<partition>`` set to
the batch's last offset. On every assignment the consumer seeks to the
recorded position + 1 (with nothing recorded, to where the broker's log
starts). It never skips a message: a partition whose log no longer holds the
next message to record, or ends before the recorded position, is paused and
reported (``place``, ``Ingest._check_log_ends``) while the others go on.
A batch is recorded only on top of the position its consumer read
(``FollowingTracking``): the store refuses it whole when another consumer has
moved the position since, so a consumer that lost its partition in a
rebalance it has not seen yet (a zombie) records nothing of it, however far
the new owner has got, and drops the batch (``Ingest._after_refusal``).

A message that cannot be decoded, or that the ledger refuses, goes to
``<topic>.dlq`` with headers naming where it came from and why, and the dead
letter is acknowledged by the broker before the batch (and so the position
past it) is committed. After a crash between the two, the next consumer of
the partition finds them on the dead-letter topic and does not send them
again (``consumers.dlq``); none is ever lost. The event store notes each one
once, in the batch's transaction (``domain.dead_letter``). Kafka's own
committed offsets are kept up to date as a convenience for tools; kiroku
never reads them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from consumers.contract import Contract, Decoded, UndecodableMessage
from consumers.dlq import Identity, identity, sent_past
from consumers.lag import lies_ahead, lost_before, stream_name, topic_uuid
from consumers.translate import Position, apply, prefetch
from domain.application import Ledger
from domain.cause import Cause
from domain.dead_letter import UpstreamDeadLetter
from domain.errors import DomainError
from domain.tracking import FollowingTracking
from kiroku.persistence.outage import UNREACHABLE, Backoff

log = logging.getLogger("kiroku.ingest")

T = TypeVar("T")

#: Errors that mean "try again later": the database or the broker is away.
TRANSIENT: tuple[type[BaseException], ...] = (*UNREACHABLE, KafkaError)


def heartbeat_age_s(consumer: KafkaConsumer) -> float | None:
    """Seconds since the consumer last sent its group coordinator a heartbeat; None before the first.

    kafka-python's ``last-heartbeat-seconds-ago`` metric (``KafkaConsumer.metrics``).
    """
    for group, values in (consumer.metrics() or {}).items():
        if group.endswith("coordinator-metrics") and "last-heartbeat-seconds-ago" in values:
            age = float(values["last-heartbeat-seconds-ago"])
            return age if math.isfinite(age) else None
    return None


@dataclass(frozen=True)
class IngestSettings:
    """How the consumer connects and batches."""

    bootstrap_servers: str
    topics: Sequence[str] = ("acme.events", "registrar.events")
    group_id: str = "kiroku"
    client_id: str = "kiroku-ingest"
    max_poll_records: int = 2000
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    #: A consumer whose batch takes longer than this leaves the group, and its partitions go to
    #: the others; when the batch ends, the store refuses what they recorded first (``_apply_batch``).
    max_poll_interval_ms: int = 300_000
    max_backoff_s: float = 10.0
    #: How many of the last records of each dead-letter topic partition are read when a partition is
    #: positioned, for dead letters sent before a crash that the partition's next batch need not send again.
    dead_letter_window: int = 10_000
    #: Prefix of the tracking records' names. Empty for a real cluster; a memory-only
    #: broker that starts empty each time gets a new prefix per start, so positions
    #: recorded against an earlier, vanished broker do not apply to the new one.
    stream_prefix: str = ""


@dataclass
class IngestCounters:
    """What the consumer did, for logs, metrics and tests."""

    consumed: int = 0
    recorded: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    retries: int = 0
    #: A gauge: assigned partitions that wait for a person (``Ingest.stopped``).
    stopped_partitions: int = 0
    #: A gauge: 1 while the broker has not answered the consumer for a session timeout (``_watch_broker``).
    broker_silent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be recorded, and why."""

    record: Any
    error: BaseException

    @property
    def clause(self) -> str | None:
        """The clause of the policy that refused the message, if a rule of it did."""
        clause = getattr(self.error, "clause", None)
        return str(clause) if clause else None

    def noted(self, stream: str, source_system: str) -> UpstreamDeadLetter:
        """The event store's note of this dead letter, saved with the position past it."""
        record = self.record
        timestamp = record.timestamp
        occurred = (
            datetime.fromtimestamp(timestamp / 1000, UTC)
            if isinstance(timestamp, int) and timestamp >= 0
            else datetime.now(UTC)
        )
        return UpstreamDeadLetter.recorded(
            stream=stream,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_class=type(self.error).__name__,
            clause=self.clause,
            cause=Cause(
                actor="kiroku-ingest",
                source_system=source_system,
                occurred_at=occurred,
                kafka_position=str(Position(record.topic, record.partition, record.offset)),
            ),
        )

    def headers(self) -> list[tuple[str, bytes]]:
        clause = self.clause
        headers = [
            ("kiroku.original.topic", self.record.topic.encode()),
            ("kiroku.original.partition", str(self.record.partition).encode()),
            ("kiroku.original.offset", str(self.record.offset).encode()),
            ("kiroku.original.timestamp", str(self.record.timestamp).encode()),
            ("kiroku.error.class", type(self.error).__name__.encode()),
            ("kiroku.error.message", str(self.error).encode()),
        ]
        if clause:
            headers.append(("kiroku.error.clause", clause.encode()))
        return [*headers, *((k, v) for k, v in (self.record.headers or []) if not k.startswith("kiroku."))]


class TopicRemade(Exception):
    """A batch's topic was made again since its id was checked: the batch is not committed."""


@dataclass(frozen=True)
class Placement:
    """Where reading a newly assigned partition starts, and whether it must wait for a person."""

    offset: int
    #: Messages after the recorded position are gone from the broker: record nothing more from it.
    stopped: bool = False
    #: What to log about it (offsets only).
    note: str | None = None


def place(stream: str, recorded: int | None, log_start: int | None) -> Placement:
    """The reading position of a partition whose last recorded offset is ``recorded``.

    ``log_start`` is the first offset the broker still holds (None: not known).
    Never past a message that was not recorded: when the broker no longer holds
    the next one, the partition stops and says which offsets are gone. With
    nothing recorded yet, reading starts where the broker's log starts.
    """
    if recorded is None:
        if not log_start:
            return Placement(0)
        return Placement(
            log_start,
            note=f"{stream}: nothing recorded yet and the broker's log starts at offset {log_start}; "
            "reading from there",
        )
    following = recorded + 1
    if log_start is None or not lost_before(recorded, log_start):
        return Placement(following)
    return Placement(
        following,
        stopped=True,
        note=f"{stream}: offsets {following}-{log_start - 1} were removed from the broker before they "
        "were recorded; nothing more is recorded from this partition until a person decides "
        "(`kiroku consume status` shows it as LOST; `kiroku consume accept-loss` records the gap "
        "and goes on; a new KIROKU_INGEST_EPOCH starts over)",
    )


class _Positioning(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python has no types
    """Notes assignment changes; the poll loop does the seeking (no I/O on the heartbeat loop)."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.ingest.forget(revoked)

    def on_partitions_lost(self, lost: Any) -> None:
        self.ingest.forget(lost)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.ingest.to_position.update(assigned)


class Ingest:
    """Consumes the upstream topics into the ledger until told to stop."""

    #: How often a partition stopped for LOST messages looks whether a person accepted the gap (s).
    recheck_lost_s: float = 30.0
    #: How often a broker that still does not answer is told again in the log (s).
    broker_silence_report_s: float = 60.0

    def __init__(
        self,
        ledger: Ledger,
        settings: IngestSettings,
        *,
        contract: Contract | None = None,
        counters: IngestCounters | None = None,
    ) -> None:
        self.ledger = ledger
        self.settings = settings
        self.contract = contract or Contract.load()
        self.counters = counters or IngestCounters()
        self.stop_event = threading.Event()
        self.to_position: set[TopicPartition] = set()
        self.next_offset: dict[TopicPartition, int] = {}
        #: The offset recorded last in each assigned partition (None: nothing yet).
        self.recorded_offset: dict[TopicPartition, int | None] = {}
        #: Assigned partitions that wait for a person, and why (paused; nothing is recorded from them).
        self.stopped: dict[TopicPartition, str] = {}
        #: The stopped partitions whose messages were lost: they go on once the gap is accepted.
        self._lost: set[TopicPartition] = set()
        self._next_recheck = 0.0
        #: The broker's id of each topic as checked against the ledger (``_check_topic``).
        self._topic_ids: dict[str, UUID] = {}
        #: The metadata asked for after this poll's fetch (``_ask_metadata``), and whether it is
        #: known to be newer than the fetch: a batch's topic id is confirmed with it before commit.
        self._metadata: Any = None
        self._metadata_confirmed = False
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        #: Dead letters the dead-letter topic held, past the recorded position, when each partition
        #: was positioned (``consumers.dlq``): by offset, the message's identity.
        self._sent_before: dict[TopicPartition, dict[int, Identity]] = {}
        #: When the consumer was made, when the broker is looked at next, and when a silence is told
        #: again (``_watch_broker``).
        self._connected_at = 0.0
        self._next_broker_look = 0.0
        self._next_silence_report = 0.0

    # Lifecycle ---------------------------------------------------------------

    def stop(self) -> None:
        """Asks the loop to finish its current batch, record it and leave the group."""
        self.stop_event.set()

    def _stream(self, tp: TopicPartition) -> str:
        return self.settings.stream_prefix + stream_name(tp.topic, tp.partition)

    def forget(self, partitions: Any) -> None:
        for tp in partitions:
            self.to_position.discard(tp)
            self.next_offset.pop(tp, None)
            self.recorded_offset.pop(tp, None)
            self.stopped.pop(tp, None)
            self._lost.discard(tp)
            self._sent_before.pop(tp, None)
        self.counters.stopped_partitions = len(self.stopped)

    def _connect(self) -> tuple[KafkaConsumer, KafkaProducer]:
        s = self.settings
        consumer = KafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=s.group_id,
            client_id=s.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=[CooperativeStickyAssignor()],
            max_poll_records=s.max_poll_records,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            # A broker that does not answer at start is told in the log after this, not 30 s.
            bootstrap_timeout_ms=s.session_timeout_ms,
        )
        consumer.subscribe(list(s.topics), listener=_Positioning(self))
        self._connected_at = time.monotonic()
        producer = KafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"{s.client_id}-dlq",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )
        return consumer, producer

    def run(self) -> IngestCounters:
        """The loop. Returns when :meth:`stop` was called, after leaving the group.

        When the broker goes away the loop waits with backoff and says so; after a few
        failed polls in a row it reconnects from scratch. Positions come from the
        event store, so a reconnect loses and repeats nothing.
        """
        backoff = Backoff(self.settings.max_backoff_s, self.stop_event, log)
        failures = 0
        try:
            while not self.stop_event.is_set():
                if self._consumer is None:
                    try:
                        self._consumer, self._producer = self._connect()
                    except KafkaError as exc:
                        self.counters.broker_silent = 1
                        backoff.wait(f"the broker at {self.settings.bootstrap_servers}", exc)
                        continue
                try:
                    self.poll_once()
                    failures = 0
                    backoff.reset()
                except KafkaError as exc:
                    failures += 1
                    backoff.wait(f"the broker at {self.settings.bootstrap_servers}", exc)
                    if failures >= 3:
                        log.warning("reconnecting to the broker after %s failed polls", failures)
                        self.close()
                        self.forget(list(self.next_offset))
                        self.to_position.clear()
                        failures = 0
        finally:
            self.close()
        return self.counters

    def close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except KafkaError as exc:  # leaving the group is best effort when the broker is gone
                log.warning("could not leave the consumer group cleanly: %s", type(exc).__name__)
            self._consumer = None
        if self._producer is not None:
            try:
                self._producer.close(timeout=10)
            except KafkaError as exc:
                log.warning("could not close the dead-letter producer cleanly: %s", type(exc).__name__)
            self._producer = None

    # The work ------------------------------------------------------------------

    def poll_once(self, timeout_ms: int = 500) -> None:
        consumer = self._consumer
        assert consumer is not None
        polled = consumer.poll(timeout_ms=timeout_ms)
        if polled and self._topic_ids:
            self._ask_metadata(consumer)
        self._recheck_topic_ids(consumer)
        positioned = self._position(consumer)
        for tp, records in polled.items():
            expected = self.next_offset.get(tp)
            if expected is None or tp in positioned or tp in self.stopped:
                continue  # fetched before this partition was positioned: it is fetched again
            fresh = [r for r in records if r.offset >= expected]
            if not fresh:
                continue
            if fresh[0].offset > expected:
                self._ran_ahead(consumer, tp, expected, fresh[0].offset)
                continue
            self.counters.add(consumed=len(fresh))
            self._apply_batch(tp, fresh)
        self._check_log_ends(consumer)
        self._recheck_lost(consumer)
        self._watch_broker(consumer)

    def _watch_broker(self, consumer: KafkaConsumer) -> None:
        """Says so when the broker has not answered for a session timeout, and when it answers again.

        kafka-python keeps retrying on its own and ``poll`` raises nothing when
        the broker is gone (refused, or a network gone dark): it only returns
        nothing, as for topics with nothing new. What tells them apart is the
        group's heartbeat: one is sent every heartbeat interval, but not while
        the last one is unanswered nor while the group coordinator is unknown,
        so the time since the last one (``heartbeat_age_s``) grows while the
        broker is silent; before the first, the time since the consumer was
        made counts. Looked at once a second; told again every
        ``broker_silence_report_s`` (a minute) while it lasts. A
        rebalance that waits for a member busy with a long batch stops the
        heartbeats too, and is told the same way.
        """
        now = time.monotonic()
        if now < self._next_broker_look:
            return
        self._next_broker_look = now + 1.0
        age = heartbeat_age_s(consumer)
        silent_for = now - self._connected_at if age is None else age
        where = self.settings.bootstrap_servers
        if silent_for >= self.settings.session_timeout_ms / 1000:
            if not self.counters.broker_silent or now >= self._next_silence_report:
                how = "not in the group after" if age is None else "no answer from its group coordinator in"
                log.warning(
                    "waiting for the broker at %s: %s %.0fs (the broker unreachable, or a rebalance "
                    "waiting for another member of the group)",
                    where,
                    how,
                    silent_for,
                )
                self._next_silence_report = now + self.broker_silence_report_s
            self.counters.broker_silent = 1
        elif self.counters.broker_silent:
            log.warning("the broker at %s answers again", where)
            self.counters.broker_silent = 0

    def _stop_partition(self, consumer: KafkaConsumer, tp: TopicPartition, why: str, *, lost: bool) -> None:
        """Pauses a partition that needs a person; the others go on."""
        if tp not in self.stopped:
            log.error("%s", why)
        self.stopped[tp] = why
        if lost:
            self._lost.add(tp)
        self.counters.stopped_partitions = len(self.stopped)
        consumer.pause(tp)

    def _recheck_lost(self, consumer: KafkaConsumer) -> None:
        """Goes on with a LOST partition once a person accepted the gap (``kiroku consume accept-loss``).

        Accepting moves the partition's recorded position past the messages that
        are gone, in the transaction that records the gap; every
        ``recheck_lost_s`` the stopped partitions' positions are read again, and
        one that now fits the broker's log is resumed from there.
        """
        now = time.monotonic()
        if not self._lost or now < self._next_recheck:
            return
        self._next_recheck = now + self.recheck_lost_s
        assigned = consumer.assignment()
        waiting = sorted((tp for tp in self._lost if tp in assigned), key=lambda t: (t.topic, t.partition))
        try:
            recorded = self.ledger.tracked_positions([self._stream(tp) for tp in waiting])
        except TRANSIENT as exc:
            log.warning("could not read the stopped partitions' positions: %s", type(exc).__name__)
            return
        moved = [tp for tp in waiting if recorded[self._stream(tp)] != self.recorded_offset.get(tp)]
        if not moved:
            return
        try:
            log_starts = consumer.beginning_offsets(moved)
        except KafkaError as exc:
            log.warning("could not read where the stopped partitions' logs start: %s", type(exc).__name__)
            return
        for tp in moved:
            stream = self._stream(tp)
            placement = place(stream, recorded[stream], log_starts[tp])
            self.recorded_offset[tp] = recorded[stream]
            if placement.stopped:
                continue  # a gap accepted in part: still messages lost before the log's start
            self._lost.discard(tp)
            del self.stopped[tp]
            self.counters.stopped_partitions = len(self.stopped)
            self.next_offset[tp] = placement.offset
            consumer.seek(tp, placement.offset)
            consumer.resume(tp)
            log.warning(
                "%s: a person accepted the messages lost before offset %s (recorded in the ledger); "
                "reading from there",
                stream,
                placement.offset,
            )

    def _ran_ahead(self, consumer: KafkaConsumer, tp: TopicPartition, expected: int, fetched: int) -> None:
        """Kafka's position ran past the next message to record: never skip it.

        The usual cause is the broker no longer holding it (retention removed it
        while ingest was behind, and the consumer's reset went to the log's
        start): then the partition stops. Otherwise (offsets moved by hand, say)
        reading goes back to the next message to record.
        """
        try:
            log_start = consumer.beginning_offsets([tp])[tp]
        except KafkaError:
            placement = Placement(expected)  # not known: back to the next message to record
        else:
            placement = place(self._stream(tp), self.recorded_offset.get(tp), log_start)
        if placement.stopped:
            self._stop_partition(consumer, tp, placement.note or "", lost=True)
            return
        if placement.offset != expected and placement.note:
            log.warning("%s", placement.note)
        else:
            log.warning(
                "%s/%s: fetched from offset %s but %s is next; seeking back",
                tp.topic,
                tp.partition,
                fetched,
                expected,
            )
        self.next_offset[tp] = placement.offset
        consumer.seek(tp, placement.offset)

    def _check_log_ends(self, consumer: KafkaConsumer) -> None:
        """Stops a partition whose log on the broker ends before its recorded position.

        Then the log is not the one the position was recorded from (the topic was
        made again, or this is another cluster); reading on would skip its
        messages up to the recorded position. A fetch's high watermark says
        where the log ends; on one log it is never before the next message to
        record.
        """
        assigned = consumer.assignment()
        for tp, recorded in list(self.recorded_offset.items()):
            if tp in self.stopped or tp not in assigned:
                continue
            end = consumer.highwater(tp)
            if end is not None and lies_ahead(recorded, end):
                why = (
                    f"{self._stream(tp)}: the broker's log ends at offset {end}, before the recorded "
                    f"position {recorded}: not the log it was recorded from; nothing more is recorded "
                    "from this partition until a person decides (`kiroku consume status` shows it as AHEAD; "
                    "a new KIROKU_INGEST_EPOCH starts over)"
                )
                self._stop_partition(consumer, tp, why, lost=False)

    def _position(self, consumer: KafkaConsumer) -> set[TopicPartition]:
        """Seeks every newly assigned partition to the position recorded in the event store."""
        backoff = Backoff(self.settings.max_backoff_s, self.stop_event, log, self._keep_membership)
        positioned: set[TopicPartition] = set()
        to_position = sorted(self.to_position, key=lambda t: (t.topic, t.partition))
        log_starts: dict[TopicPartition, int] = {}
        if to_position:
            try:
                assigned = consumer.assignment()
                log_starts = consumer.beginning_offsets([tp for tp in to_position if tp in assigned])
            except KafkaError as exc:
                # Not known: reading starts after the recorded position (or at 0), and a
                # log that starts later is found when the fetch lands past it.
                log.warning("could not read where the partitions' logs start: %s", type(exc).__name__)
        remade = self._check_topics(consumer, {tp.topic for tp in to_position}, backoff)
        if remade is None:
            return positioned
        for tp in to_position:
            read, recorded = self._read_position(tp, backoff)
            if not read:
                return positioned
            if tp in consumer.assignment():
                placement = place(self._stream(tp), recorded, log_starts.get(tp))
                consumer.seek(tp, placement.offset)
                self.next_offset[tp] = placement.offset
                self.recorded_offset[tp] = recorded
                positioned.add(tp)
                log.info(
                    "positioned %s/%s at offset %s (recorded in the event store)",
                    tp.topic,
                    tp.partition,
                    placement.offset,
                )
                if tp.topic in remade:
                    self._stop_partition(consumer, tp, f"{self._stream(tp)}: {remade[tp.topic]}", lost=False)
                elif placement.stopped:
                    self._stop_partition(consumer, tp, placement.note or "", lost=True)
                elif placement.note:
                    log.warning("%s", placement.note)
            self.to_position.discard(tp)
        self._look_up_dead_letters(positioned)
        return positioned

    def _look_up_dead_letters(self, positioned: set[TopicPartition]) -> None:
        """Notes which dead letters of these partitions, past their recorded positions, were sent already.

        A batch's dead letters reach the broker before its commit; a crash in
        between (or a commit refused to a consumer that lost the partition)
        leaves them on the dead-letter topic while the position stays behind
        them. The batch recorded again then notes them but does not send them again.
        """
        for topic in sorted({tp.topic for tp in positioned}):
            past = {tp.partition: self.recorded_offset.get(tp) for tp in positioned if tp.topic == topic}
            try:
                sent = sent_past(
                    self.settings.bootstrap_servers, topic, past, window=self.settings.dead_letter_window
                )
            except (KafkaError, TimeoutError, OSError) as exc:
                log.warning(
                    "could not read %s's dead-letter topic (%s): a dead letter sent before this consumer "
                    "took a partition may be sent again",
                    topic,
                    type(exc).__name__,
                )
                continue
            for partition, letters in sent.items():
                self._sent_before[TopicPartition(topic, partition)] = letters
                log.info(
                    "%s/%s: %s dead letter(s) past the recorded position are on the dead-letter topic "
                    "already; they are noted when recorded, not sent again",
                    topic,
                    partition,
                    len(letters),
                )

    def _retrying(self, step: Callable[[], T], what: str, backoff: Backoff) -> tuple[bool, T | None]:
        """``step()``, tried again while the store or broker is unreachable (waiting for ``what``).

        ``(True, its result)``, or ``(False, None)`` when told to stop first.
        """
        while not self.stop_event.is_set():
            try:
                return True, step()
            except TRANSIENT as exc:
                backoff.wait(what, exc)
        return False, None

    def _read_position(self, tp: TopicPartition, backoff: Backoff) -> tuple[bool, int | None]:
        """The partition's position in the event store: ``(True, position)``, or ``(False, None)`` on stop."""
        stream = self._stream(tp)
        what = f"the event store to read the position of {tp.topic}/{tp.partition}"
        return self._retrying(partial(self.ledger.tracked_position, stream), what, backoff)

    def _ask_metadata(self, consumer: KafkaConsumer) -> None:
        """Asks for the topics' metadata as it is after this poll's fetch, without waiting.

        The batches' work goes on meanwhile; before a batch is committed its
        topic's id is compared with it (``_confirm_topic``). A refresh already
        in flight was sent before the fetch: then the batch asks for another.
        """
        cluster = consumer._client.cluster  # kafka-python has no public way to the metadata future
        in_flight = cluster.metadata_refresh_in_progress
        self._metadata = cluster.request_update()
        self._metadata_confirmed = not in_flight

    def _confirm_topic(self, topic: str) -> None:
        """Raises ``TopicRemade`` when ``topic``'s id changed since it was checked (before a commit).

        Uses the metadata asked for after this poll's fetch; where it is not in
        yet, failed, or may predate the fetch, asks again and waits (one request).
        """
        consumer, known = self._consumer, self._topic_ids.get(topic)
        if consumer is None or known is None:
            return
        asked = self._metadata
        if asked is not None and not (self._metadata_confirmed and asked.is_done and asked.succeeded()):
            consumer.topics()  # blocking: the metadata as it is now
            self._metadata_confirmed = True
        found = topic_uuid(consumer, topic)
        if found is not None and found != known:
            raise TopicRemade(topic)

    def _recheck_topic_ids(self, consumer: KafkaConsumer) -> None:
        """Positions a topic made again under a running consumer anew, before any record of it is used.

        Without a rebalance nothing else would look: the fetch goes on at the
        old offsets in the new log, and once that log is longer than them its
        first messages would be skipped. A batch of the topic found so before
        its commit (``_confirm_topic``) is not committed; here, at the next
        poll, the broker's id for the topic in the consumer's metadata is
        compared with the one checked, and when it changed, the topic's
        partitions go through ``_position`` again (which checks the new id
        against the ledger) and their records are left (fetched again).
        """
        for topic, known in list(self._topic_ids.items()):
            found = topic_uuid(consumer, topic)
            if found is None or found == known:
                continue
            del self._topic_ids[topic]
            log.warning("the broker's topic %s has a new id (%s, was %s): checking it", topic, found, known)
            self.to_position.update(tp for tp in consumer.assignment() if tp.topic == topic)

    def _check_topics(
        self, consumer: KafkaConsumer, topics: set[str], backoff: Backoff
    ) -> dict[str, str] | None:
        """The topics made again since their positions were recorded, and why (None: told to stop)."""
        remade: dict[str, str] = {}
        for topic in sorted(topics):
            checked, why = self._retrying(
                partial(self._check_topic, consumer, topic),
                f"the event store to check which topic {topic} was recorded from",
                backoff,
            )
            if not checked:
                return None
            if why is not None:
                remade[topic] = why
        return remade

    def _check_topic(self, consumer: KafkaConsumer, topic: str) -> str | None:
        """None when ``topic`` is the one recorded from under this epoch; else why it is not.

        The broker's id for the topic is bound in the ledger the first time
        (``UpstreamTopic``). A topic made again has a new id: while positions are
        recorded for it, its partitions stop for a person, since its new log's
        offsets say nothing about what was recorded. A broker that gives no
        topic ids (before Kafka 2.8) is not checked.
        """
        found = topic_uuid(consumer, topic)
        if found is None:
            return None
        partitions = consumer.partitions_for_topic(topic) or set()
        prefix = self.settings.stream_prefix
        positions = self.ledger.tracked_positions([prefix + stream_name(topic, p) for p in partitions])
        actor = f"ingest:{self.settings.client_id}"
        cause = Cause(actor=actor, source_system="kiroku-ingest", occurred_at=datetime.now(UTC))
        recorded_from = self.ledger.check_upstream_topic(
            stream_prefix=prefix,
            topic=topic,
            topic_id=str(found),
            recorded=any(p is not None for p in positions.values()),
            cause=cause,
        )
        if recorded_from is None:
            self._topic_ids[topic] = found
            return None
        return (
            f"the broker's topic {topic} has the id {found}, not {recorded_from}, which its positions were "
            "recorded from: it was made again, and its offsets say nothing about what was recorded; nothing "
            "is recorded from it until a person decides (`kiroku consume status` shows it as REMADE; a new "
            "KIROKU_INGEST_EPOCH starts over)"
        )

    def _keep_membership(self) -> None:
        """Polls with every partition paused, so a long wait does not cost the group membership."""
        consumer = self._consumer
        if consumer is None:
            return
        assigned = list(consumer.assignment())
        consumer.pause(*assigned)
        try:
            consumer.poll(timeout_ms=0)
        except KafkaError as exc:
            log.debug("keep-alive poll failed: %s", type(exc).__name__)
        finally:
            # A stopped partition stays paused.
            consumer.resume(
                *[tp for tp in assigned if tp in consumer.assignment() and tp not in self.stopped]
            )

    def _apply_batch(self, tp: TopicPartition, records: list[Any]) -> None:
        backoff = Backoff(self.settings.max_backoff_s, self.stop_event, log, self._keep_membership)
        stream = self._stream(tp)
        topic_system = tp.topic.split(".", 1)[0]
        while records:
            try:
                dead, recorded, duplicates = self._record(
                    records, stream, topic_system, self.recorded_offset.get(tp)
                )
            except TopicRemade:
                # Nothing recorded, and not counted as consumed: the next poll positions the
                # topic's partitions anew (and stops them, or reads the records again).
                self.counters.add(consumed=-len(records))
                return
            except IntegrityError:
                # The store refused the batch: another consumer recorded from this
                # partition since it was positioned, part of the batch was recorded
                # already, or a concurrent writer changed an aggregate.
                self.counters.add(retries=1)
                records = self._after_refusal(tp, records, backoff)
                continue
            except TRANSIENT as exc:
                self.counters.add(retries=1)
                backoff.wait(f"the event store or the broker to record {tp.topic}/{tp.partition}", exc)
                if self.stop_event.is_set() or tp not in self.next_offset:
                    # Stopping, or the partition was revoked while waiting (the wait keeps the
                    # group membership by polling): nothing of the batch was recorded here.
                    self.counters.add(consumed=-len(records))
                    return
                continue
            self.counters.add(recorded=recorded, duplicates=duplicates, dead_letters=dead, batches=1)
            last = records[-1].offset
            self._forget_sent_through(tp, last)
            self.next_offset[tp] = last + 1
            self.recorded_offset[tp] = last
            self._commit_to_kafka(tp, last + 1)
            return

    def _forget_sent_through(self, tp: TopicPartition, last: int) -> None:
        sent = self._sent_before.get(tp)
        if sent:
            for offset in [o for o in sent if o <= last]:
                del sent[offset]
        if not sent:
            self._sent_before.pop(tp, None)

    def _after_refusal(self, tp: TopicPartition, records: list[Any], backoff: Backoff) -> list[Any]:
        """What of a batch the store refused is still to record, from the partition's position in the store.

        - The position is not the one this consumer recorded from: another consumer
          recorded from the partition, so this one lost it in a rebalance it has not
          seen yet (its batch outlasted ``max_poll_interval_ms``, or the process was
          stalled). The batch is dropped: nothing of it was recorded here, it is not
          counted as consumed, and the partition is positioned anew from the store
          at the next poll (if it is still this consumer's).
        - The batch starts at or before the position (read again): those messages
          were recorded already and count as duplicates; the rest is tried again.
        - Otherwise a concurrent writer changed an aggregate: the batch is tried again.
        """
        read, recorded = self._read_position(tp, backoff)
        if not read or tp not in self.next_offset:
            # Stopping, or revoked while waiting for the store (the wait keeps the membership
            # by polling): nothing of the batch was recorded here.
            self.counters.add(consumed=-len(records))
            return []
        if recorded != self.recorded_offset.get(tp):
            log.warning(
                "%s/%s: another consumer recorded up to offset %s while this one held offsets %s-%s "
                "(it lost the partition in a rebalance); its batch is dropped and the partition is "
                "positioned again from the event store",
                tp.topic,
                tp.partition,
                recorded,
                records[0].offset,
                records[-1].offset,
            )
            self.counters.add(consumed=-len(records))
            self.to_position.add(tp)
            return []
        if recorded is None:
            return records
        rest = [r for r in records if r.offset > recorded]
        self.counters.add(duplicates=len(records) - len(rest))
        return rest

    def _decode(self, record: Any) -> Decoded:
        decoded = self.contract.decode(record.value)
        if not self.contract.accepts(record.topic, decoded.name):
            raise UndecodableMessage(f"{decoded.name} does not belong on {record.topic}")
        return decoded

    def _record(
        self, records: list[Any], stream: str, topic_system: str, after: int | None
    ) -> tuple[int, int, int]:
        """Records a batch of one partition on top of its position ``after``; (dead, recorded, duplicates)."""
        dead: list[DeadLetter] = []
        decoded: list[tuple[Any, Decoded]] = []
        for record in records:
            try:
                decoded.append((record, self._decode(record)))
            except UndecodableMessage as exc:
                dead.append(DeadLetter(record, exc))
        recorded = duplicates = 0
        with self.ledger.batch() as batch:
            # One query reads what the batch's commands will read (receipts, records,
            # accounts, subjects), and one step gets the subjects' sealing keys ready.
            prefetch(self.ledger, (m for _, m in decoded))
            for record, message in decoded:
                try:
                    result = apply(
                        self.ledger,
                        message,
                        Position(record.topic, record.partition, record.offset),
                        topic_system,
                    )
                except DomainError as exc:
                    dead.append(DeadLetter(record, exc))
                    continue
                except TRANSIENT:
                    raise
                except Exception as exc:  # noqa: BLE001 - a poison message must not stop ingest
                    # Only the class: the message and traceback may hold the message's data.
                    log.error(
                        "unexpected %s at %s/%s/%s; dead-lettered",
                        type(exc).__name__,
                        record.topic,
                        record.partition,
                        record.offset,
                    )
                    dead.append(DeadLetter(record, exc))
                    continue
                if result.duplicate:
                    duplicates += 1
                else:
                    recorded += 1
            # The topic is still the one recorded from (not made again since the fetch).
            self._confirm_topic(records[0].topic)
            tracking = FollowingTracking(stream, records[-1].offset, after)
            if dead:
                self._confirm_position(tracking)
                dead.sort(key=lambda letter: letter.record.offset)
                # Noted in the store once, with the position; sent unless the topic holds it already.
                batch.add([letter.noted(stream, topic_system) for letter in dead], {})
                self._send_dead_letters([letter for letter in dead if not self._sent_already(letter)])
            batch.commit(tracking)
        return len(dead), recorded, duplicates

    def _confirm_position(self, tracking: FollowingTracking) -> None:
        """Raises ``IntegrityError`` when the stream's position is no longer the one the batch started from.

        The commit would be refused; this is asked before a batch's dead letters
        are sent, so that a consumer that lost its partition does not send the
        dead letters its new owner sends too. (A move in the moment between this
        look and the commit can still repeat one.)
        """
        if self.ledger.tracked_position(tracking.application_name) != tracking.after:
            raise IntegrityError(tracking.refusal())

    def _sent_already(self, letter: DeadLetter) -> bool:
        """Whether the dead-letter topic held this dead letter when the partition was positioned."""
        record = letter.record
        known = self._sent_before.get(TopicPartition(record.topic, record.partition), {}).get(record.offset)
        if known is None or known != identity(record.timestamp, record.value):
            return False
        log.warning(
            "dead letter: %s/%s/%s %s is on the dead-letter topic already (sent before a crash or a "
            "rebalance); noted, not sent again",
            record.topic,
            record.partition,
            record.offset,
            type(letter.error).__name__,
        )
        return True

    def _send_dead_letters(self, dead: list[DeadLetter]) -> None:
        if not dead:
            return
        producer = self._producer
        assert producer is not None
        futures = [
            producer.send(
                f"{letter.record.topic}.dlq",
                key=letter.record.key,
                value=letter.record.value,
                headers=letter.headers(),
            )
            for letter in dead
        ]
        producer.flush(timeout=30)
        for letter, future in zip(dead, futures, strict=True):
            future.get(timeout=30)  # raises if the broker did not take it: the batch is retried
            log.warning(
                "dead letter: %s/%s/%s %s",
                letter.record.topic,
                letter.record.partition,
                letter.record.offset,
                type(letter.error).__name__,
            )

    def _commit_to_kafka(self, tp: TopicPartition, offset: int) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        try:
            consumer.commit_async({tp: OffsetAndMetadata(offset, "", -1)})
        except KafkaError as exc:  # a convenience only; the event store holds the truth
            log.debug("could not commit offset to Kafka: %s", type(exc).__name__)
