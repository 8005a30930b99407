"""What every ledger command shares: idempotency, optimistic retries, batches.

A command is a ``work`` function that loads aggregates, asks them to decide
(they raise a :class:`~domain.errors.DomainError` to refuse) and returns the
aggregates that changed. :meth:`LedgerBase._execute` runs it at most once per
upstream event id and saves its events, together with an
:class:`~domain.receipt.UpstreamReceipt`, in one transaction.

Inside :meth:`LedgerBase.batch`, commands are not saved one by one: their events
gather in a :class:`Batch` and :meth:`Batch.commit` saves them all in one
transaction, in the order the commands ran, with a tracking record (the Kafka
position) when one is given. A refused command leaves nothing in the batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from json.encoder import encode_basestring
from typing import Any, Protocol, TypeVar, runtime_checkable
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.persistence import (
    ApplicationRecorder,
    EventStore,
    IntegrityError,
    InterfaceError,
    JSONTranscoder,
    Mapper,
    Notification,
    OperationalError,
    ProcessRecorder,
    StoredEvent,
    Tracking,
    Transcoder,
)
from eventsourcing.utils import TopicError, get_topic, resolve_topic

from domain.account import AcmeAccount
from domain.cause import Cause
from domain.commands import CommandResult, PersonalItemInput
from domain.dead_letter import RecordedDeadLetter, UpstreamDeadLetter
from domain.errors import DomainError, InvalidCommand, NotFound, UpstreamEventConflict
from domain.gap import MAX_REASON, AcceptedGap, UpstreamGap, personal_form_in
from domain.identity import SubjectKey, blind_index, keyed_hash, normalise_email, subject_id_for, uuid_order
from domain.personal import KeyRing, PersonalDataCipher, Revealed, Sealed
from domain.receipt import UpstreamReceipt, receipt_id
from domain.snapshots import KirokuSnapshot, SnapshotStateError
from domain.source import UpstreamTopic, made_again, upstream_topic_id
from domain.subject import DataSubject, NotedProvision
from domain.tracking import FollowingTracking
from domain.transcodings import KirokuMapper, KirokuTranscoder, register_kiroku_transcodings

_MAX_ATTEMPTS = 12

#: Not in a batch's reads (None there means read and absent).
_UNREAD: Any = object()

A = TypeVar("A", bound=Aggregate)
log = logging.getLogger("kiroku.ledger")
E = TypeVar("E", bound=CanMutateAggregate[UUID])

WorkDone = tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]
Work = Callable[[], WorkDone]


class ConcurrencyConflict(DomainError):
    """Raised when a command kept conflicting with concurrent writers and gave up."""


L = TypeVar("L")


def _one_page(
    listing: Callable[[int, int], Iterator[L]], page: int, after: int, limit: int | None
) -> list[L]:
    """At most ``limit`` (all, if None) items of ``listing(after, page)``, read no more than it takes."""
    return list(itertools.islice(listing(after, min(page, limit) if limit else page), limit))


_DATACLASS_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _fields_of(cls: type) -> tuple[str, ...] | None:
    """The field names of a dataclass type (None for any other type), looked up once per type."""
    try:
        return _DATACLASS_FIELDS[cls]
    except KeyError:
        names = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None
        _DATACLASS_FIELDS[cls] = names
        return names


#: ``json.dumps(..., sort_keys=True, ensure_ascii=False)``, made once (dumps makes an encoder per call).
_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False)


def _canonical(value: Any, typed: bool = True) -> Any:  # noqa: PLR0911 - one return per kind of value
    """A JSON-able form of a command's arguments, every field included.

    ``repr`` will not do: the input types redact personal values in their
    ``repr``, and a replay with another value must not pass for a duplicate.
    A dataclass becomes its fields and, unless it sits inside another
    dataclass, its type name. Stored receipts keep fingerprints of this form,
    so it must not change.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        return value
    if kind is list or kind is tuple:
        return [_canonical(v, typed) for v in value]
    if kind is dict:
        return {str(k): _canonical(v, typed) for k, v in value.items()}
    names = _fields_of(kind)
    if names is not None:
        body = {name: _canonical(getattr(value, name), False) for name in names}
        return {"__type__": kind.__name__, **body} if typed else body
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v, typed) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((_canonical(v, typed) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [_canonical(v, typed) for v in value]
    if isinstance(value, str | int | float):
        return value
    raise TypeError(f"unsupported value of type {kind.__name__}")


_SORTED_FIELDS: dict[type, tuple[tuple[str | None, str], ...] | None] = {}


def _sorted_fields_of(cls: type) -> tuple[tuple[str | None, str], ...] | None:
    """A dataclass's fields as the canonical form's JSON orders them: (name, key text).

    The type marker's place among them is ``(None, ...)``. None for any other
    type, and for a dataclass with a field that is itself called ``__type__``.
    """
    try:
        return _SORTED_FIELDS[cls]
    except KeyError:
        names = _fields_of(cls)
        order: tuple[tuple[str | None, str], ...] | None = None
        if names is not None and "__type__" not in names:
            keys = sorted([*names, "__type__"])
            order = tuple((None if k == "__type__" else k, encode_basestring(k) + ": ") for k in keys)
        _SORTED_FIELDS[cls] = order
        return order


#: How ``_canonical_text`` writes a value of each type it has no branch of its own for.
_WRITERS: dict[type, Callable[[Any, bool], str]] = {}


def _long_way(value: Any, typed: bool) -> str:
    return _FINGERPRINT_JSON.encode(_canonical(value, typed))


def _member_writer() -> Callable[[Any, bool], str]:
    """An enum's members (a personal item's kind, a channel): few, each written once."""
    texts: dict[int, str] = {}  # by id: members live as long as their class, and Enum's hash is slow

    def write(member: Any, typed: bool) -> str:
        text = texts.get(id(member))
        if text is None:
            text = texts[id(member)] = _long_way(member, typed)
        return text

    return write


def _time_text(value: datetime, typed: bool) -> str:  # noqa: ARG001 - a writer's signature
    return encode_basestring(value.isoformat())


def _id_text(value: UUID, typed: bool) -> str:  # noqa: ARG001 - a writer's signature
    return encode_basestring(str(value))


def _dataclass_writer(cls: type, order: tuple[tuple[str | None, str], ...]) -> Callable[[Any, bool], str]:
    """A function that writes one dataclass's fields in ``order``, its type marker where ``typed``.

    Made from the class's own field names (as ``quick_init`` makes an ``__init__``),
    so a command's arguments are written without a loop over their fields; each
    field that holds a string is written at once.
    """
    namespace: dict[str, Any] = {"_text": _canonical_text, "_string": encode_basestring, "_str": str}
    body: list[str] = []
    typed_parts: list[str] = []
    plain_parts: list[str] = []
    for i, (name, key) in enumerate(order):
        if name is None:
            namespace["_marker"] = key + encode_basestring(cls.__name__)
            typed_parts.append("_marker")
            continue
        namespace[f"_key{i}"] = key
        body.append(f"    v = value.{name}")
        body.append(f"    f{i} = _string(v) if type(v) is _str else _text(v, False)")
        typed_parts.append(f"_key{i} + f{i}")
        plain_parts.append(f"_key{i} + f{i}")
    typed_text = " + ', ' + ".join(typed_parts)
    plain_text = " + ', ' + ".join(plain_parts) or "''"
    source = "\n".join(
        [
            "def write(value, typed):",
            *body,
            "    if typed:",
            f"        return '{{' + {typed_text} + '}}'",
            f"    return '{{' + {plain_text} + '}}'",
        ]
    )
    exec(source, namespace)  # noqa: S102 - made above from the class's own field names
    return namespace["write"]  # type: ignore[no-any-return]


def _writer_of(kind: type) -> Callable[[Any, bool], str]:
    """How to write a value of ``kind`` (made once per type; the type decides every branch)."""
    order = _sorted_fields_of(kind)
    if order is not None:
        writer = _dataclass_writer(kind, order)
    elif issubclass(kind, Enum):
        writer = _member_writer()
    elif issubclass(kind, datetime):
        writer = _time_text
    elif issubclass(kind, UUID):
        writer = _id_text
    else:
        writer = _long_way
    _WRITERS[kind] = writer
    return writer


def _canonical_text(value: Any, typed: bool = True) -> str:
    """``_FINGERPRINT_JSON.encode(_canonical(value, typed))``, written without making the form first.

    Strings, numbers without a fraction, None, lists, dataclasses, enum
    members, times and ids (nearly all of a command's arguments) are written
    here; anything else takes the long way. A property test holds the two to
    the same text.
    """
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if kind is list or kind is tuple:
        return (
            "["
            + ", ".join(
                [encode_basestring(v) if type(v) is str else _canonical_text(v, typed) for v in value]
            )
            + "]"
        )
    writer = _WRITERS.get(kind)
    if writer is None:
        writer = _writer_of(kind)
    return writer(value, typed)


def fingerprint_text(command: str, args: Any) -> str:
    """The text a command's fingerprint is the keyed hash of (stored receipts hold such hashes)."""
    return "[" + encode_basestring(command) + ", " + _canonical_text(args) + "]"


def _originator(stored: StoredEvent) -> UUID:
    """A stored event's aggregate id as a UUID: PostgreSQL gives one, SQLite its text."""
    originator = stored.originator_id
    return originator if type(originator) is UUID else UUID(str(originator))


def replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """An aggregate with these events applied in turn (None: from its creation).

    The library's ``project_aggregate`` without its check of each event against a
    runtime-checkable protocol: that ``isinstance`` looks through the protocol's
    members every time, and was a third of the CPU of reading aggregates.
    """
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def _utcnow() -> datetime:
    return datetime.now(UTC)


@runtime_checkable
class HasEventsOf(Protocol):
    """A recorder that reads the events of many aggregates in one query (kiroku's recorders can)."""

    def events_of(
        self, ids: Sequence[UUID], after: Sequence[int] | None = None, *, topics: Sequence[str] | None = None
    ) -> list[StoredEvent]:
        """Every event of these aggregates, ordered by aggregate and version.

        With ``after`` (a version per id), only the events after that version;
        with ``topics``, only the events of those topics.
        """
        ...


@runtime_checkable
class HasSnapshotsAndEventsOf(Protocol):
    """A recorder that reads the latest snapshots and the events after them in one statement."""

    def snapshots_and_events_of(
        self, snapshots_table: str, ids: Sequence[UUID], after: Sequence[int] | None = None
    ) -> tuple[list[StoredEvent], list[StoredEvent]]:
        """The latest snapshot of each id not known (``after`` 0) and the events after it or ``after``."""
        ...


@runtime_checkable
class HasMaxTrackingIds(Protocol):
    """A recorder that reads the positions of several tracking streams in one statement."""

    def max_tracking_ids(self, application_names: Sequence[str]) -> dict[str, int]:
        """The last position of each of these streams that has one."""
        ...


@runtime_checkable
class HasNotificationsOfTopic(Protocol):
    """A recorder that reads the events of one topic across the store through an index of its own."""

    def notifications_of_topic(self, topic: str, start: int, limit: int) -> Sequence[Notification]:
        """The events of ``topic`` from notification id ``start`` on, at most ``limit``, in order."""
        ...


@runtime_checkable
class HasLatestOf(Protocol):
    """A snapshot recorder that reads the latest snapshots of many aggregates in one query."""

    def latest_of(self, ids: Sequence[UUID]) -> list[StoredEvent]:
        """The latest snapshot of each of these aggregates that has one."""
        ...


class Batch:
    """Events of several commands, to be saved in one transaction."""

    def __init__(self, ledger: LedgerBase) -> None:
        self._ledger = ledger
        self.aggregates: dict[UUID, Aggregate] = {}
        self.events: list[CanMutateAggregate[UUID]] = []
        self.save_kwargs: dict[str, list[Any]] = {}
        self.results: list[CommandResult] = []
        # Aggregates as read from the store during this batch (None: not there).
        # Concurrent writers are caught when the batch commits (version conflicts).
        self.read: dict[UUID, Aggregate | None] = {}
        # Aggregates the running command loaded: rolled back if it is refused.
        self.touched: dict[UUID, Aggregate] = {}
        # Subject ids of natural keys, and keys to open values with, for this batch only:
        # neither outlives it, so a key destroyed meanwhile stops the next batch's readers.
        self.subject_ids: dict[SubjectKey, UUID] = {}
        self.opening_keys: dict[tuple[UUID, int], bytes | None] = {}
        self.committed = False

    def add(self, aggregates: Sequence[Aggregate], save_kwargs: Mapping[str, Sequence[Any]]) -> None:
        for aggregate in aggregates:
            self.events.extend(aggregate.collect_events())
            self.aggregates[aggregate.id] = aggregate
        for key, values in save_kwargs.items():
            self.save_kwargs.setdefault(key, []).extend(values)

    def commit(self, tracking: Tracking | None = None) -> int | None:
        """Saves every command's events and the tracking record; returns the last position.

        Raises the store's ``IntegrityError`` when a concurrent writer changed one
        of the aggregates, or the tracking position is not after the recorded one:
        then nothing of the batch is saved and the caller runs it again.
        """
        return self.save(self.stored_events(), tracking)

    def stored_events(self) -> list[StoredEvent]:
        """The batch's events as the store keeps them (the first half of :meth:`commit`)."""
        mapper = self._ledger.mapper
        return [mapper.to_stored_event(event) for event in self.events]

    def save(self, stored: Sequence[StoredEvent], tracking: Tracking | None = None) -> int | None:
        """Writes :meth:`stored_events` with the tracking record (the second half of :meth:`commit`)."""
        # Straight to the recorder, as the library's _record() does, without wrapping
        # each event in a Recording (and checking it against a runtime protocol)
        # only to read back the highest notification id.
        ids = self._ledger.recorder.insert_events(stored, tracking=tracking, **self.save_kwargs)
        self.committed = True
        self._ledger.take_snapshots(self.aggregates.values())
        return max(ids) if ids else None


class LedgerBase(Application[UUID]):
    """The mechanics of the ledger's commands."""

    name = "kiroku"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        keyring_factory: Callable[[ApplicationRecorder], KeyRing],
        subject_id_secret: bytes,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(env)
        self.keyring = keyring_factory(self.recorder)
        self.cipher = PersonalDataCipher(self.keyring)
        self._subject_secret = subject_id_secret
        self.clock = clock
        self._local = threading.local()
        self.snapshot_store = self._construct_snapshot_store()
        # What the recorders can do, found once: isinstance against a runtime-checkable
        # protocol looks through its members each time (tens of microseconds).
        self._events_of = self.recorder if isinstance(self.recorder, HasEventsOf) else None
        self._snapshots_and_events_of = (
            self.recorder
            if self.snapshot_store is not None and isinstance(self.recorder, HasSnapshotsAndEventsOf)
            else None
        )
        self._latest_of = (
            self.snapshot_store.recorder
            if self.snapshot_store is not None and isinstance(self.snapshot_store.recorder, HasLatestOf)
            else None
        )
        #: The version of each aggregate's latest snapshot, as far as this process knows;
        #: the most recent ``snapshot_versions_kept`` of them (see ``_note_snapshot``).
        self._snapshot_versions: OrderedDict[UUID, int] = OrderedDict()
        self._snapshot_versions_lock = threading.Lock()

    def construct_recorder(self) -> ApplicationRecorder:
        # A process recorder, so that ingest can record Kafka positions as
        # tracking rows in the same transaction as the events they caused.
        recorder = self.factory.process_recorder()
        assert isinstance(recorder, ApplicationRecorder)
        return recorder

    def construct_mapper(self) -> Mapper[UUID]:
        # Stores events without copying their attributes first (domain/transcodings.py).
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=KirokuMapper)

    def construct_transcoder(self) -> Transcoder:
        # Writes the same JSON as the library's transcoder, faster (domain/transcodings.py).
        transcoder = KirokuTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_kiroku_transcodings(transcoder)

    def tracked_position(self, stream: str) -> int | None:
        """The last position recorded for an upstream stream (a Kafka topic partition)."""
        recorder = self.recorder
        assert isinstance(recorder, ProcessRecorder)
        return recorder.max_tracking_id(stream)

    def tracked_positions(self, streams: Iterable[str]) -> dict[str, int | None]:
        """:meth:`tracked_position` of each stream, in one statement where the recorder can."""
        names = list(dict.fromkeys(streams))
        recorder = self.recorder
        if isinstance(recorder, HasMaxTrackingIds):
            found = recorder.max_tracking_ids(names)
            return {name: found.get(name) for name in names}
        return {name: self.tracked_position(name) for name in names}

    def accept_upstream_gap(
        self, *, stream: str, first_missing: int, next_available: int, reason: str, cause: Cause
    ) -> CommandResult:
        """Records that ``stream``'s positions ``first_missing`` to ``next_available - 1`` are lost.

        The gap must start right after the stream's recorded position; the
        :class:`~domain.gap.UpstreamGap` event and the stream's new position
        (``next_available - 1``) are saved in one transaction, so ingest goes on
        from ``next_available`` and the audit trail says who accepted what and why.
        """
        if not isinstance(cause, Cause):
            raise InvalidCommand("every command needs its cause")
        reason = reason.strip() if isinstance(reason, str) else ""
        if not 0 < len(reason) <= MAX_REASON:
            raise InvalidCommand(f"accepting a gap needs a reason of 1 to {MAX_REASON} characters")
        found = personal_form_in(reason)
        if found is not None:
            raise InvalidCommand(
                f"the reason seems to hold {found}; it is kept for good and shown to every reader: "
                "name the incident and its ticket, never a person's data"
            )
        positions = (first_missing, next_available)
        if not (all(type(p) is int for p in positions) and 0 < first_missing < next_available):
            raise InvalidCommand("a gap runs from a position after the first to a later one")
        recorded = self.tracked_position(stream)
        if recorded != first_missing - 1:
            raise InvalidCommand(
                f"{stream}: the position recorded last is {recorded}, so a gap would start at "
                f"{'the stream start' if recorded is None else recorded + 1}, not {first_missing}"
            )
        gap = UpstreamGap.accepted(
            stream=stream,
            first_missing=first_missing,
            last_missing=next_available - 1,
            reason=reason,
            cause=cause,
        )
        try:
            with self.batch() as batch:
                batch.add([gap], {})
                position = batch.commit(FollowingTracking(stream, next_available - 1, recorded))
        except IntegrityError:
            raise ConcurrencyConflict(
                f"{stream}: its position changed while the gap was accepted; look again"
            ) from None
        return CommandResult(gap.id, position)

    def bound_topic_id(self, stream_prefix: str, topic: str) -> str | None:
        """The broker's id of ``topic`` that ingest reads under this epoch (None: not bound yet)."""
        found = self._read(upstream_topic_id(stream_prefix, topic))
        return found.topic_id if isinstance(found, UpstreamTopic) else None

    def check_upstream_topic(
        self, *, stream_prefix: str, topic: str, topic_id: str, recorded: bool, cause: Cause
    ) -> str | None:
        """Whether the broker's ``topic`` (its id ``topic_id``) is the one ingest recorded from.

        None when it is: bound to this id the first time (under the epoch of
        ``stream_prefix``), and bound again to a new id when nothing is recorded
        from the topic (``recorded`` False). Otherwise the id it was recorded
        from: the topic was made again since, and reading on would skip the new
        log's first messages.
        """
        aggregate_id = upstream_topic_id(stream_prefix, topic)
        for _ in range(_MAX_ATTEMPTS):
            known = self._read(aggregate_id)
            if known is None:
                to_save = UpstreamTopic.bound(
                    stream_prefix=stream_prefix, topic=topic, topic_id=topic_id, cause=cause
                )
            elif not isinstance(known, UpstreamTopic):
                raise InvalidCommand(f"{topic}: its id names another kind of aggregate")
            elif made_again(known.topic_id, topic_id, recorded):
                return known.topic_id
            elif known.topic_id == topic_id:
                return None
            else:
                known.rebind(topic_id, cause)
                to_save = known
            try:
                self.save(to_save)
            except IntegrityError:
                continue  # another consumer bound it first: look again
            return None
        raise ConcurrencyConflict(f"{topic}: its binding kept changing under concurrent consumers; try again")

    def accepted_gaps(
        self, page: int = 1000, *, after: int = 0, limit: int | None = None
    ) -> list[AcceptedGap]:
        """Every upstream gap a person accepted, in the order they were recorded.

        Read from the event store (the events of one kind, ``page`` at a time),
        so it needs no view and answers on a store whose views are not built.
        ``after`` (a notification id) and ``limit`` give one page of them.
        """
        return _one_page(self.accepted_gaps_from, page, after, limit)

    def accepted_gaps_from(self, after: int = 0, page: int = 1000) -> Iterator[AcceptedGap]:
        """:meth:`accepted_gaps` after notification id ``after``, read ``page`` at a time as taken."""
        for notification_id, event in self._notified_of_kind(UpstreamGap.Accepted, page, start=after + 1):
            yield AcceptedGap(
                gap_id=event.originator_id,
                stream=event.stream,
                first_missing=event.first_missing,
                last_missing=event.last_missing,
                reason=event.reason,
                actor=event.cause.actor,
                source_system=event.cause.source_system,
                accepted_at=event.timestamp,
                notification_id=notification_id,
            )

    def dead_letters(
        self, page: int = 1000, *, after: int = 0, limit: int | None = None
    ) -> list[RecordedDeadLetter]:
        """Every upstream message ingest dead-lettered, once each, in the order they were recorded.

        Read from the event store as :meth:`accepted_gaps` is. ``after`` (a
        notification id) and ``limit`` give one page of them.
        """
        return _one_page(self.dead_letters_from, page, after, limit)

    def dead_letters_from(self, after: int = 0, page: int = 1000) -> Iterator[RecordedDeadLetter]:
        """:meth:`dead_letters` after notification id ``after``, read ``page`` at a time as they are taken."""
        found = self._notified_of_kind(UpstreamDeadLetter.Recorded, page, start=after + 1)
        for notification_id, event in found:
            yield RecordedDeadLetter(
                stream=event.stream,
                topic=event.topic,
                partition=event.partition,
                offset=event.offset,
                error_class=event.error_class,
                clause=event.clause,
                occurred_at=event.cause.occurred_at,
                recorded_at=event.timestamp,
                notification_id=notification_id,
            )

    def _notified_of_kind(self, kind: type[Any], page: int, start: int = 1) -> Iterator[tuple[int, Any]]:
        """Each stored event of one class from notification id ``start`` on, with its id, a page at a time."""
        topic = get_topic(kind)
        recorder = self.recorder
        while True:
            if isinstance(recorder, HasNotificationsOfTopic):
                notifications = recorder.notifications_of_topic(topic, start, page)
            else:
                notifications = recorder.select_notifications(start=start, limit=page, topics=[topic])
            for notification in notifications:
                yield notification.id, self.mapper.to_domain_event(notification)
            if len(notifications) < page:
                return
            start = notifications[-1].id + 1

    # Snapshots --------------------------------------------------------------
    #
    # An aggregate with a long history (an account with many thousands of
    # certificates, a person on many thousands of records) is read whole by a
    # process's first batch that touches it and by the API's commands. Once it
    # has ``snapshot_from`` events, a saved batch writes a snapshot of it, and
    # another each time it has grown by a tenth (at least ``snapshot_from``
    # events): reads then start from the latest snapshot and apply only the
    # events stored after it, never more than about a tenth of the history.
    # Where the state grows with the history (the default; the account and the
    # person only count their certificates and records, and the other
    # aggregates' histories stay short), writing a snapshot costs about as
    # much as the events it stands for took to encode; the growth by a tenth
    # keeps their total to a small share.
    # Where it does not (``state_grows_with_history = False``), a snapshot is
    # small, and one is taken every ``snapshot_from`` events.

    #: Events an aggregate has before it is snapshotted, and at least between two snapshots.
    snapshot_from = 1_000

    #: Snapshot versions remembered at most: a long-running process meets ever more
    #: long aggregates. One forgotten costs at most one snapshot taken early.
    snapshot_versions_kept = 100_000

    def _note_snapshot(self, aggregate_id: UUID, version: int) -> None:
        """Remembers an aggregate's latest snapshot version, forgetting the least recent beyond the bound."""
        versions = self._snapshot_versions
        with self._snapshot_versions_lock:
            versions[aggregate_id] = version
            versions.move_to_end(aggregate_id)
            while len(versions) > self.snapshot_versions_kept:
                versions.popitem(last=False)

    @property
    def _snapshots_table(self) -> str:
        return f"{self.name.lower()}_snapshots"

    def _construct_snapshot_store(self) -> EventStore[UUID] | None:
        """The snapshots table beside the events (None unless the environment names its recorder)."""
        topic = self.env.get("SNAPSHOT_RECORDER_TOPIC")
        if not topic:
            return None
        factory: Any = self.factory
        recorder = resolve_topic(topic)(datastore=factory.datastore, events_table_name=self._snapshots_table)
        if factory.env_create_table():
            recorder.create_table()
        return EventStore(mapper=self.mapper, recorder=recorder)

    def _snapshot_due(self, aggregate: Aggregate) -> bool:
        """For an aggregate of at least ``snapshot_from`` events (``take_snapshots`` checks that first)."""
        version = aggregate.version
        grown = version - self._snapshot_versions.get(aggregate.id, 0)
        if not getattr(type(aggregate), "state_grows_with_history", True):
            return grown >= self.snapshot_from  # a small snapshot: a read replays little
        return grown >= max(self.snapshot_from, version // 10)

    def take_snapshots(self, aggregates: Iterable[Aggregate]) -> None:
        """Snapshots of those of these (saved) aggregates that are due one.

        Best effort: the events are saved already, and a snapshot missing only
        makes a later read longer. So a failure is logged and not raised.
        """
        store = self.snapshot_store
        if store is None:
            return
        shortest = self.snapshot_from
        for aggregate in aggregates:
            # The version first: nearly every aggregate of a batch is short, and this is per batch.
            if aggregate.version < shortest or aggregate.pending_events or not self._snapshot_due(aggregate):
                continue
            try:
                store.put([KirokuSnapshot.take(aggregate)])
            except IntegrityError:
                pass  # another process took this very one
            except (SnapshotStateError, OperationalError, InterfaceError) as exc:
                # The class only: the message could name a value.
                log.warning(
                    "no snapshot of a %s at version %s: %s",
                    type(aggregate).__name__,
                    aggregate.version,
                    type(exc).__name__,
                )
                continue
            self._note_snapshot(aggregate.id, aggregate.version)

    def _from_snapshots(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Aggregate]:
        """The aggregates of these ids that have a snapshot, as of their latest one."""
        if self._latest_of is None or not aggregate_ids:
            return {}
        return self._restored(self._latest_of.latest_of(aggregate_ids))[0]

    def _restored(self, snapshots: Iterable[StoredEvent]) -> tuple[dict[UUID, Aggregate], set[UUID]]:
        """Aggregates made from stored snapshots, and the ids of those this code cannot read."""
        found: dict[UUID, Aggregate] = {}
        unreadable: set[UUID] = set()
        for stored in snapshots:
            try:
                snapshot = self.mapper.to_domain_event(stored)
                if not isinstance(snapshot, KirokuSnapshot) or not snapshot.readable:
                    # Written by other code (another format): the events are read instead.
                    unreadable.add(_originator(stored))
                    continue
                aggregate = snapshot.mutate(None)
            except (ValueError, TypeError, KeyError, TopicError) as exc:
                # A snapshot is only a shortcut: one that cannot be read is passed over.
                log.warning(
                    "a snapshot at version %s could not be read (%s); reading the events instead",
                    stored.originator_version,
                    type(exc).__name__,
                )
                unreadable.add(_originator(stored))
                continue
            found[aggregate.id] = aggregate
            self._note_snapshot(aggregate.id, aggregate.version)
        return found, unreadable

    # Batches ----------------------------------------------------------------

    @property
    def _batch(self) -> Batch | None:
        batch: Batch | None = getattr(self._local, "batch", None)
        return batch

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """Commands issued by this thread inside the block gather in one batch."""
        if self._batch is not None:
            raise RuntimeError("batches do not nest")
        batch = Batch(self)
        self._local.batch = batch
        try:
            yield batch
        except BaseException:
            self._keep_for_next_batches(batch, saved=False)
            raise
        else:
            self._keep_for_next_batches(batch, saved=batch.committed)
        finally:
            self._local.batch = None

    # Aggregates kept between a thread's batches -------------------------------
    #
    # Ingest touches the same accounts, people and records batch after batch, and
    # an aggregate's history only grows: reading all of it for every batch made a
    # command cost more the longer the history (one account with many thousands of
    # certificates, one person on many thousands of records). The aggregates with
    # long histories that a saved batch ended with are kept; the next batch reads
    # only the events stored after their versions (by any writer) and applies
    # them. A batch that was not saved leaves nothing behind: whatever it touched
    # is forgotten, since its commands may have changed it.

    #: Aggregates kept per thread, the least recently used dropped first, and the
    #: events they hold together: a long history's state is large (a person on a
    #: million records holds a million record ids), so their number alone is no bound.
    #: The aggregates the last batch used are kept whatever these say: the batch held
    #: them anyway, and an aggregate too large for the bound would otherwise be read
    #: whole again by every batch that touches it (an account with millions of
    #: certificates: many seconds per batch).
    kept_aggregates = 20_000
    kept_events = 2_000_000
    #: Only aggregates with at least this many events are kept: a short history costs
    #: less to read again whole (with the others, in one plain query) than to keep.
    kept_from_version = 32

    def _kept(self) -> OrderedDict[UUID, Aggregate]:
        kept: OrderedDict[UUID, Aggregate] | None = getattr(self._local, "kept", None)
        if kept is None:
            kept = self._local.kept = OrderedDict()
        return kept

    def _keep_for_next_batches(self, batch: Batch, *, saved: bool) -> None:
        kept = self._kept()
        touched = [*batch.read, *batch.aggregates]
        if not saved:
            for aggregate_id in touched:
                kept.pop(aggregate_id, None)
            return
        for aggregate_id in touched:
            aggregate = batch.aggregates.get(aggregate_id) or batch.read.get(aggregate_id)
            if aggregate is None or aggregate.pending_events or aggregate.version < self.kept_from_version:
                # Absent (another writer may create it), changed and not saved, or short.
                kept.pop(aggregate_id, None)
                continue
            kept[aggregate_id] = aggregate
            kept.move_to_end(aggregate_id)
        events = sum(aggregate.version for aggregate in kept.values())
        just_used = set(touched)
        while kept and (len(kept) > self.kept_aggregates or events > self.kept_events):
            if next(iter(kept)) in just_used:
                break  # the rest were all used by this batch (they were moved to the end)
            _, dropped = kept.popitem(last=False)
            events -= dropped.version

    # Loading ----------------------------------------------------------------

    def _load(self, aggregate_id: UUID) -> Aggregate | None:
        batch = self._batch
        if batch is None:
            return self._read(aggregate_id)
        # One look-up a dict where it can: hashing a UUID is a call into Python.
        aggregate: Aggregate | None = batch.aggregates.get(aggregate_id)
        if aggregate is None:
            aggregate = batch.read.get(aggregate_id, _UNREAD)
            if aggregate is _UNREAD:
                aggregate = batch.read[aggregate_id] = self._read_in_batch([aggregate_id])[aggregate_id]
        if aggregate is not None:
            # Not copied: if the command is refused, what it changed is rolled back.
            batch.touched[aggregate_id] = aggregate
        return aggregate

    def account_certificates(self, account_id: UUID, as_of: datetime | None = None) -> list[UUID]:
        """The certificate records issued under an ACME account, oldest first (up to ``as_of``).

        Read from the account's ``CertificateLinked`` events, which its state only
        counts; inside a batch, with those the batch has not saved yet.
        """
        linked = self._events_of_kind(account_id, AcmeAccount.CertificateLinked, as_of)
        return [e.certificate_record_id for e in linked]

    def subject_records(
        self, subject_id: UUID, as_of: datetime | None = None, *, version: int | None = None
    ) -> list[UUID]:
        """The certificate records and ACME accounts holding the subject's items, oldest first.

        Read from the subject's ``AppearedOn`` events, which its state only counts.
        ``version``: only those up to that version of the subject (the one a
        command has in hand, when others may be writing meanwhile).
        """
        events = self._events_of_kind(subject_id, DataSubject.AppearedOn, as_of, version)
        return [e.record_id for e in events]

    def subject_provisions(
        self, subject_id: UUID, as_of: datetime | None = None, *, version: int | None = None
    ) -> list[NotedProvision]:
        """The provisions the subject's data was in, oldest first (from ``ProvisionNoted`` events)."""
        return [
            NotedProvision(e.provision_id, e.category, e.retention_until)
            for e in self._events_of_kind(subject_id, DataSubject.ProvisionNoted, as_of, version)
        ]

    def _events_of_kind(
        self, aggregate_id: UUID, kind: type[E], as_of: datetime | None, version: int | None = None
    ) -> list[E]:
        """The aggregate's events of one class, oldest first, up to ``as_of`` (a moment) or ``version``.

        Only the events of that class are decoded. Inside a batch (and without
        ``as_of``), with those of the batch's commands that are not saved yet.
        """
        batch = self._batch
        unsaved: list[E] = []
        if batch is not None and not batch.committed and as_of is None:
            mine = [e for e in batch.events if e.originator_id == aggregate_id]
            unsaved = [e for e in mine if isinstance(e, kind)]
            if version is not None and mine:
                version = mine[0].originator_version - 1  # what was stored when the batch read it
        topic = get_topic(kind)
        events_of = self._events_of
        stored = (
            events_of.events_of([aggregate_id], topics=[topic])
            if events_of
            else self.recorder.select_events(aggregate_id)
        )
        found: list[E] = []
        for event in stored:
            if version is not None and event.originator_version > version:
                break
            if event.topic != topic:
                continue
            domain_event: Any = self.mapper.to_domain_event(event)
            if as_of is not None and domain_event.timestamp > as_of:
                break
            found.append(domain_event)
        return found + unsaved

    def _load_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Aggregate | None]:
        """``_load`` of each id, the ones not at hand read in one query instead of one each."""
        wanted = list(dict.fromkeys(aggregate_ids))
        if self._batch is None:
            return self._read_many(wanted)
        self.prefetch(wanted)
        return {aggregate_id: self._load(aggregate_id) for aggregate_id in wanted}

    def _read(self, aggregate_id: UUID) -> Aggregate | None:
        if self._events_of is not None:
            return self._read_many([aggregate_id])[aggregate_id]  # from its snapshot, if any
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id, projector_func=replay)
        except AggregateNotFoundError:
            return None
        return aggregate

    def _read_many(
        self, aggregate_ids: Sequence[UUID], known: Mapping[UUID, Aggregate] | None = None
    ) -> dict[UUID, Aggregate | None]:
        """These aggregates as stored now, read in one query where the recorder can (else one each).

        ``known``: aggregates as saved earlier; only the events stored after their
        versions are read, and applied to them.
        """
        recorder = self._events_of
        if recorder is None:
            return {aggregate_id: self._read(aggregate_id) for aggregate_id in aggregate_ids}
        known = dict(known or {})
        stored_events: list[StoredEvent]
        if self._snapshots_and_events_of is not None:
            # One statement: the latest snapshots of the ids not known, and the events after.
            after = [known[i].version if i in known else 0 for i in aggregate_ids]
            snapshots, stored_events = self._snapshots_and_events_of.snapshots_and_events_of(
                self._snapshots_table, aggregate_ids, after
            )
            restored, unreadable = self._restored(snapshots)
            known.update(restored)
            if unreadable:  # their events were read from the snapshot on: read them all
                stored_events = [e for e in stored_events if _originator(e) not in unreadable]
                stored_events += recorder.events_of(sorted(unreadable, key=uuid_order))
        else:
            known.update(self._from_snapshots([i for i in aggregate_ids if i not in known]))
            after = [known[i].version if i in known else 0 for i in aggregate_ids]
            stored_events = recorder.events_of(aggregate_ids, after if known else None)
        start = [known.get(i) for i in aggregate_ids]
        by_id: dict[UUID, list[Any]] = {}
        for stored in stored_events:
            by_id.setdefault(_originator(stored), []).append(stored)
        found: dict[UUID, Aggregate | None] = {}
        for aggregate_id, earlier in zip(aggregate_ids, start, strict=True):
            events = by_id.get(aggregate_id)
            found[aggregate_id] = (
                replay(earlier, map(self.mapper.to_domain_event, events)) if events else earlier
            )
        return found

    def _read_in_batch(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Aggregate | None]:
        """``_read_many`` from the aggregates kept from earlier batches, where there are some."""
        kept = self._kept()
        known = {i: kept[i] for i in aggregate_ids if i in kept}
        return self._read_many(aggregate_ids, known)

    def prefetch(self, aggregate_ids: Iterable[UUID], *, subject_ids: Iterable[UUID] = ()) -> None:
        """Inside a batch, reads these aggregates in one query instead of one query each.

        Ids with no events are remembered as absent, so commands that create
        them ask the store nothing. ``subject_ids`` (data subjects, among the
        ids or not) also get their sealing keys made ready in one step. An id
        left out is still read when a command asks for it: this only saves
        round trips.
        """
        batch = self._batch
        if batch is None:
            return
        wanted = [
            i for i in dict.fromkeys(aggregate_ids) if i not in batch.read and i not in batch.aggregates
        ]
        if wanted and self._events_of is not None:
            batch.read.update(self._read_in_batch(wanted))
        pairs = []
        for subject_id in dict.fromkeys(subject_ids):
            known = batch.aggregates.get(subject_id, batch.read.get(subject_id))
            pairs.append((subject_id, known.key_generation if isinstance(known, DataSubject) else 1))
        if pairs:
            self.keyring.prepare(pairs)
            batch.opening_keys.update(self.keyring.keys_for(pairs))

    def _roll_back(self, batch: Batch, keep: Iterable[Aggregate] = ()) -> None:
        """Undoes what a command changed and did not save: its aggregates as the batch had them.

        Rare (a refusal), so it simply reads the aggregate again and applies
        the batch's events for it.
        """
        kept = {id(a) for a in keep}
        for aggregate_id, aggregate in batch.touched.items():
            if id(aggregate) in kept or not getattr(aggregate, "pending_events", None):
                continue
            restored = self._read(aggregate_id)
            batch.read[aggregate_id] = restored
            mine = [e for e in batch.events if e.originator_id == aggregate_id]
            replayed = replay(restored, mine) if mine else None
            if replayed is not None:
                batch.aggregates[aggregate_id] = replayed
            else:
                batch.aggregates.pop(aggregate_id, None)
        batch.touched.clear()

    def _get(self, cls: type[A], aggregate_id: UUID, what: str) -> A:
        aggregate = self._load(aggregate_id)
        if not isinstance(aggregate, cls):
            raise NotFound(f"{what} {aggregate_id} not found")
        return aggregate

    def _find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        aggregate = self._load(aggregate_id)
        return aggregate if isinstance(aggregate, cls) else None

    # Running commands ----------------------------------------------------

    def _fingerprint(self, command: str, args: Any) -> str:
        # Keyed, so a fingerprint over personal values reveals nothing of them.
        try:
            canonical = fingerprint_text(command, args)
        except TypeError as exc:
            raise InvalidCommand(f"{command}: {exc}") from None
        return keyed_hash(self._subject_secret).digest(canonical.encode()).hex()

    def _execute(self, cause: Cause, command: str, args: Any, work: Work) -> CommandResult:
        """Runs ``work`` and records what it changed, once per upstream event id.

        ``work`` returns the aggregates to save, the result id and extra keyword
        arguments for the recorder (such as keys to shred). Outside a batch it is
        re-run from fresh state when a concurrent writer got there first.
        """
        if not isinstance(cause, Cause):
            raise InvalidCommand("every command needs its cause")
        fingerprint = self._fingerprint(command, args) if cause.upstream_event_id else ""
        for attempt in range(_MAX_ATTEMPTS):
            duplicate = self._check_receipt(cause, command, fingerprint)
            if duplicate is not None:
                return duplicate
            batch = self._batch
            try:
                aggregates, result_id, save_kwargs = self._work(batch, work)
            except DomainError:
                # A concurrent delivery of this same upstream event may have been
                # recorded since the check above; then this one is a duplicate.
                duplicate = self._check_receipt(cause, command, fingerprint)
                if duplicate is not None:
                    return duplicate
                raise
            to_save: list[Aggregate] = list(aggregates)
            if cause.upstream_event_id:
                to_save.append(
                    UpstreamReceipt.applied(
                        source_system=cause.source_system,
                        upstream_event_id=cause.upstream_event_id,
                        command=command,
                        fingerprint=fingerprint,
                        result_id=result_id,
                        cause=cause,
                    )
                )
            if batch is not None:
                # Whatever the command changed but does not save is undone.
                self._roll_back(batch, keep=to_save)
                batch.add(to_save, save_kwargs)
                result = CommandResult(result_id, None)
                batch.results.append(result)
                return result
            try:
                recordings = self.save(*to_save, **save_kwargs)
            except IntegrityError:
                # Someone else wrote one of these aggregates (or this very
                # upstream event) first: decide again from the new state.
                if attempt == _MAX_ATTEMPTS - 1:
                    raise ConcurrencyConflict(
                        f"{command} kept conflicting with concurrent writes; try again"
                    ) from None
                # Jittered backoff, so racing writers do not collide again in step.
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311 - not for secrets
                continue
            position = max((r.notification.id for r in recordings), default=None)
            return CommandResult(result_id, position)
        raise AssertionError("unreachable")  # pragma: no cover

    def _work(self, batch: Batch | None, work: Work) -> WorkDone:
        """Runs ``work``; inside a batch, a refusal (or any error) undoes what it changed."""
        if batch is None:
            return work()
        batch.touched.clear()
        try:
            return work()
        except BaseException:
            self._roll_back(batch)
            raise

    def _check_receipt(self, cause: Cause, command: str, fingerprint: str) -> CommandResult | None:
        if not cause.upstream_event_id:
            return None
        receipt = self._find(UpstreamReceipt, receipt_id(cause.source_system, cause.upstream_event_id))
        if receipt is None:
            return None
        if receipt.command != command or receipt.fingerprint != fingerprint:
            raise UpstreamEventConflict(
                f"upstream event {cause.upstream_event_id} from {cause.source_system} was already "
                f"applied as a different {receipt.command} command"
            )
        position = None if self._batch is not None else self.recorder.max_notification_id()
        return CommandResult(receipt.result_id, position, duplicate=True)

    # Subjects and their values -----------------------------------------

    def subject_id(self, key: SubjectKey) -> UUID:
        """The pseudonymous id of the subject with this natural key."""
        batch = self._batch
        if batch is None:
            return subject_id_for(key, self._subject_secret)
        known = batch.subject_ids.get(key)
        if known is None:
            known = batch.subject_ids[key] = subject_id_for(key, self._subject_secret)
        return known

    def _reveal(self, sealed: Sealed) -> Revealed:
        """A sealed value opened, inside a batch with the keys the batch read up front."""
        batch = self._batch
        pair = (sealed.subject_id, sealed.generation)
        if batch is not None and pair in batch.opening_keys:
            return self.cipher.open_with(sealed, batch.opening_keys[pair])
        return self.cipher.open(sealed)

    def lookup_digest(self, kind: str, value: str) -> str:
        """A blind index of a personal value (e-mail address or name) for look-ups in views.

        Views store this keyed hash, never the value; it is computed by opening the
        sealed value, so once a subject's key is destroyed no new one can be made.
        """
        if kind == "email":
            with contextlib.suppress(InvalidCommand):
                value = normalise_email(value)
        return blind_index(value, self._subject_secret, f"kiroku.lookup.{kind}")

    def _resolve_subject(self, subject: SubjectKey | UUID) -> UUID:
        if isinstance(subject, UUID):
            return subject
        if isinstance(subject, SubjectKey):
            return self.subject_id(subject)
        raise InvalidCommand("a data subject is named by its key or its id")

    def _existing_subject(self, subject: SubjectKey | UUID) -> DataSubject:
        return self._get(DataSubject, self._resolve_subject(subject), "data subject")

    def _subjects_for(self, keys: Sequence[SubjectKey], cause: Cause) -> dict[SubjectKey, DataSubject]:
        """The subjects with these keys, registering those seen for the first time."""
        subjects: dict[SubjectKey, DataSubject] = {}
        for key in keys:
            if key in subjects:
                continue
            if not isinstance(key, SubjectKey):
                raise InvalidCommand("a personal item needs its data subject's key")
            subject_id = self.subject_id(key)
            existing = self._find(DataSubject, subject_id)
            subjects[key] = existing or DataSubject.register(
                subject_id=subject_id, key_kind=key.kind, cause=cause
            )
        return subjects

    def _seal(self, subject: DataSubject, item: PersonalItemInput) -> Sealed:
        return self.cipher.seal(subject.id, subject.key_generation, str(item.kind), item.value)
