"""Random command histories on a real store: the rules hold whatever the order.

Hypothesis generates sequences of collections, corrections, provisions, stop
requests and decisions, erasures (with time passing) and replays of earlier
upstream events. After each command: a refusal stored nothing, a replay stored
nothing. After the history: the stored events obey §4, §6 and §11, and every
personal value reads as the last value given for it, or as ``[erased]`` when
its subject was erased.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.application import Ledger
from domain.certificate import CertificateIdentity, CertificateRecord
from domain.commands import CommandResult, PersonalItemInput, ProvidedItemInput
from domain.errors import DomainError
from domain.identity import SubjectKey
from domain.provision import CtSubmission, Provision, Recipient, add_years
from domain.subject import DataSubject
from tests.helpers import T0, FakeClock, cause, publish_policy

CHANNELS = ["C1", "C2", "C3", "C4"]
KINDS = ["name", "email", "phone"]
VALUES = ["山田 太郎", "Alice Smith", "+81-3-1111-2222", "東京都港区1-2-3", "x@example.jp"]


@dataclass(frozen=True)
class Op:
    name: str
    args: tuple[Any, ...]


def _ground(category: str, wrong: int) -> str | None:
    """Mostly the right basis for the category; one time in five the wrong one."""
    if wrong == 0:
        return None if category == "4.3" else "4.3.4"
    return "4.3.1" if category == "4.3" else None


ops = st.one_of(
    st.builds(
        lambda r, c, p: Op("collect", (r, c, p)),
        st.integers(0, 2),
        st.sampled_from(CHANNELS),
        st.sets(st.integers(0, 2), max_size=3),
    ),
    st.builds(
        lambda r, c, p, k, v: Op("correct", (r, c, p, k, v)),
        st.sampled_from([0, 0, 1, 1, 2]),
        st.sampled_from(["C1", "C2", "C2", "C3"]),
        st.integers(0, 2),
        st.sampled_from(KINDS),
        st.sampled_from(VALUES),
    ),
    st.builds(
        lambda cat, wrong, p, r: Op("provide", (cat, _ground(cat, wrong), p, r)),
        st.sampled_from(["4.1", "4.1", "4.2", "4.3", "4.4"]),
        st.integers(0, 4),
        st.integers(0, 2),
        st.integers(0, 2),
    ),
    st.builds(lambda p: Op("request_stop", (p,)), st.integers(0, 2)),
    st.builds(lambda p, a: Op("decide_stop", (p, a)), st.integers(0, 2), st.booleans()),
    st.builds(lambda p: Op("request_erasure", (p,)), st.integers(0, 2)),
    st.builds(lambda p, y: Op("erase", (p, y)), st.integers(0, 2), st.integers(0, 6)),
    st.builds(lambda k: Op("replay", (k,)), st.integers(0, 30)),
)


class History:
    """Runs generated commands against the ledger and keeps the expected values."""

    def __init__(self, ledger: Ledger, clock: FakeClock) -> None:
        self.ledger, self.clock = ledger, clock
        self.tag = uuid4().hex[:10]
        self.people = [SubjectKey.email(f"p{i}-{self.tag}@example.jp") for i in range(3)]
        self.records: dict[int, UUID] = {}
        self.expected: dict[tuple[UUID, UUID, str], str] = {}
        self.stop_requests: dict[int, list[str]] = {0: [], 1: [], 2: []}
        self.done: list[Callable[[], CommandResult]] = []

    def cause(self, source: str = "registrar") -> Any:
        return cause(self.clock.now, source=source, upstream=f"{self.tag}-{uuid4().hex[:8]}")

    def command(self, op: Op) -> Callable[[], CommandResult] | None:  # noqa: PLR0911 - one branch per op
        ledger, people = self.ledger, self.people
        if op.name == "collect":
            ref, channel, persons = op.args
            items = [
                PersonalItemInput(people[p], kind, f"{kind}-{p}-{ref}")
                for p in sorted(persons)
                for kind in KINDS
            ]
            c = self.cause("acme" if channel == "C2" else "registrar")
            return lambda: ledger.collect(
                record_ref=f"{self.tag}-{ref}",
                channel=channel,
                purposes=["P1", "P3"],
                certificate=CertificateIdentity(f"r{ref}.example.jp", [], "DV"),
                personal_items=items,
                cause=c,
            )
        if op.name == "correct":
            ref, channel, person, kind, value = op.args
            if ref not in self.records:
                return None
            record_id, c = self.records[ref], self.cause()
            return lambda: ledger.correct(
                record_id,
                channel=channel,
                personal_changes=[PersonalItemInput(people[person], kind, value)],
                cause=c,
            )
        if op.name == "provide":
            category, ground, person, ref = op.args
            on_record = self.records.get(ref) if ref < 2 else None  # 2: not tied to a record
            ct = CtSubmission("argon", self.clock.now) if category == "4.4" else None
            c = self.cause()
            return lambda: ledger.record_provision(
                category=category,
                legal_ground=ground,
                recipient=Recipient("rcpt", "Recipient", "US"),
                items=[ProvidedItemInput("name", people[person])],
                certificate_record_id=on_record,
                ct_submission=ct,
                cause=c,
            )
        if op.name == "request_stop":
            (person,) = op.args
            request_id = f"stop-{len(self.stop_requests[person])}"
            self.stop_requests[person].append(request_id)
            c = self.cause()
            return lambda: ledger.request_stop(people[person], request_id=request_id, cause=c)
        if op.name == "decide_stop":
            # A stop request of its own, decided at once (pending ones come from request_stop).
            person, accepted = op.args
            request_id = f"stop-{len(self.stop_requests[person])}"
            self.stop_requests[person].append(request_id)
            requested, decided = self.cause(), self.cause()

            def request_and_decide() -> CommandResult:
                ledger.request_stop(people[person], request_id=request_id, cause=requested)
                return ledger.decide_stop(
                    people[person], request_id=request_id, accepted=accepted, reason="decided", cause=decided
                )

            return request_and_decide
        if op.name == "request_erasure":
            (person,) = op.args
            c = self.cause()
            return lambda: ledger.request_erasure(people[person], cause=c)
        if op.name == "erase":
            person, years = op.args
            self.clock.advance(days=365 * years)
            c = self.cause()
            return lambda: ledger.carry_out_erasure(people[person], cause=c)
        (k,) = op.args
        return self.done[k % len(self.done)] if self.done else None

    def run(self, op: Op) -> None:
        command = self.command(op)
        if command is None:
            return
        before = self.ledger.recorder.max_notification_id() or 0
        try:
            result = command()
        except DomainError:
            assert (self.ledger.recorder.max_notification_id() or 0) == before, (
                f"refused {op.name} stored events"
            )
            return
        if op.name == "replay":
            assert result.duplicate, "a replayed upstream event was applied again"
            assert (self.ledger.recorder.max_notification_id() or 0) == before
            return
        assert not result.duplicate
        self.done.append(command)
        self.remember(op, result)

    def remember(self, op: Op, result: CommandResult) -> None:
        if op.name == "collect":
            ref, _, persons = op.args
            assert result.id is not None
            self.records[ref] = result.id
            for p in persons:
                for kind in KINDS:
                    self.expected[(result.id, self.ledger.subject_id(self.people[p]), kind)] = (
                        f"{kind}-{p}-{ref}"
                    )
        elif op.name == "correct":
            ref, _, person, kind, value = op.args
            self.expected[(self.records[ref], self.ledger.subject_id(self.people[person]), kind)] = value


def check_provision(provision: Provision) -> None:
    """§4.3: a legal ground exactly under 4.3; APPI Art. 29: three years, except under 4.3."""
    assert (provision.legal_ground is not None) == (provision.category == "4.3"), "§4.3 ground rule"
    expected_until = None if provision.category == "4.3" else add_years(provision.provided_at, 3)
    assert provision.retention_until == expected_until


def check_subject(ledger: Ledger, subject_id: UUID) -> set[int]:
    """§11 over the subject's own history; returns the erased key generations."""
    stopped = False
    erased: set[int] = set()
    for event in ledger.events.get(subject_id):
        if isinstance(event, DataSubject.StopDecided) and event.accepted:
            stopped = True
        elif isinstance(event, DataSubject.ProvisionNoted):
            assert not (stopped and event.category == "4.1"), "§11: 4.1 provision after an accepted stop"
            check_provision(ledger.provision(event.provision_id))
        elif isinstance(event, DataSubject.Erased):
            erased.add(event.generation)
    return erased


def check_invariants(history: History) -> None:
    ledger = history.ledger
    erased: dict[UUID, set[int]] = {}
    for person in history.people:
        subject_id = ledger.subject_id(person)
        if subject_id in ledger.repository:
            erased[subject_id] = check_subject(ledger, subject_id)
    for record_id in history.records.values():
        record = ledger.certificate_record(record_id)
        for event in ledger.events.get(record_id):
            if isinstance(event, CertificateRecord.Corrected):
                allowed = event.channel == "C1" or (event.channel == "C2" and record.channel == "C2")
                assert allowed, "§6 channel rule"
        opened = ledger.cipher.open_many(record.items.values())
        for sealed, value in zip(record.items.values(), opened, strict=True):
            if sealed.generation in erased.get(sealed.subject_id, set()):
                assert str(value) == "[erased]"
            else:
                assert value == history.expected[(record_id, sealed.subject_id, sealed.kind)]


def test_random_histories_keep_every_rule(ledger: Ledger, clock: FakeClock) -> None:
    publish_policy(ledger)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(ops, min_size=1, max_size=30))
    def run(history_ops: list[Op]) -> None:
        clock.now = T0
        history = History(ledger, clock)
        # Every history starts with an operator record (C1) and an ACME record (C2)
        # that share person 1, so later commands have something to act on.
        for op in [Op("collect", (0, "C1", {0, 1})), Op("collect", (1, "C2", {1, 2})), *history_ops]:
            history.run(op)
        check_invariants(history)

    run()
