"""An ACME account (§5 C2): its contacts are certificate information too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.cause import Cause
from domain.codes import Channel, Clause
from domain.creation import create
from domain.errors import InvalidCommand, InvalidTransition, PolicyViolation
from domain.identity import uuid_order
from domain.personal import Sealed
from domain.policy import PolicyVersion
from domain.quickinit import quicken_events


@quicken_events
class AcmeAccount(Aggregate):
    """An account on the CA's ACME server, with its contact e-mail addresses."""

    #: Its state does not grow with its history (see ``certificates``): a snapshot is
    #: small whatever the history, so one is taken at every ``snapshot_from`` events.
    state_grows_with_history = False

    class Registered(Aggregate.Created):
        account_ref: str
        policy_version: str
        purposes: list[str]
        items: list[Sealed]
        cause: Cause

    class ContactsChanged(Aggregate.Event):
        channel: str
        added: list[Sealed]
        removed: list[UUID]
        changed: list[str]
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            for subject_id in self.removed:
                previous = aggregate.items.pop((subject_id, "email"), None)
                if previous is not None:
                    aggregate.superseded.append((self.cause.occurred_at, previous))
            for sealed in self.added:
                aggregate.items[(sealed.subject_id, sealed.kind)] = sealed

    class CertificateLinked(Aggregate.Event):
        certificate_record_id: UUID
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.certificates += 1

    class Deactivated(Aggregate.Event):
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.deactivated_at = self.cause.occurred_at

    def __init__(
        self, *, account_ref: str, policy_version: str, purposes: list[str], items: list[Sealed], cause: Cause
    ) -> None:
        self.account_ref = account_ref
        self.channel = Channel.ACME.value
        self.policy_version = policy_version
        self.purposes = list(purposes)
        self.collected_at = cause.occurred_at
        self.items: dict[tuple[UUID, str], Sealed] = {(s.subject_id, s.kind): s for s in items}
        self.superseded: list[tuple[datetime, Sealed]] = []
        # How many certificates were issued under it. Which ones, the ledger reads from
        # the events when asked (``account_certificates``): a hosting provider's account
        # has millions, which the state would hold, and every read and snapshot carry.
        self.certificates = 0
        self.deactivated_at: datetime | None = None

    @classmethod
    def register(
        cls,
        *,
        account_id: UUID,
        account_ref: str,
        policy: PolicyVersion,
        purposes: Sequence[str],
        contacts: Sequence[Sealed],
        cause: Cause,
    ) -> AcmeAccount:
        """Collected through the ACME server (C2), under the policy version in force (§5)."""
        if Channel.ACME.value not in policy.channels:
            raise PolicyViolation(
                f"channel C2 is not a collection channel of policy version {policy.version}",
                Clause.COLLECTION,
            )
        outside = sorted(set(purposes) - set(policy.purposes))
        if not purposes or outside:
            raise PolicyViolation(
                f"purposes {', '.join(outside) or '(none)'} are not in policy version {policy.version}",
                Clause.PURPOSES,
            )
        if not isinstance(account_ref, str) or not account_ref.strip() or len(account_ref) > 255:
            raise InvalidCommand("an ACME account needs its reference (1-255 characters)")
        _check_contacts(contacts)
        return create(
            cls,
            cls.Registered,
            account_id,
            account_ref=account_ref.strip(),
            policy_version=policy.version,
            purposes=sorted(set(purposes)),
            items=list(contacts),
            cause=cause,
        )

    @property
    def subject_ids(self) -> list[UUID]:
        return sorted({subject_id for subject_id, _ in self.items}, key=uuid_order)

    def update_contacts(
        self, *, channel: Channel | str, added: Sequence[Sealed], removed: Sequence[UUID], cause: Cause
    ) -> None:
        """§6: through the ACME server (the account was collected there) or a designated operator."""
        try:
            checked = Channel(channel)
        except ValueError:
            raise InvalidCommand(f"unknown channel {channel!r} (C1-C4)", Clause.CORRECTION) from None
        if checked not in (Channel.ACME, Channel.DESIGNATED_OPERATOR):
            raise PolicyViolation(
                f"an ACME account is corrected through the ACME server (C2) or a designated operator (C1), "
                f"not {checked.value}",
                Clause.CORRECTION,
            )
        if self.deactivated_at is not None:
            raise InvalidTransition("the ACME account is deactivated")
        _check_contacts(added)
        unknown = [s for s in removed if (s, "email") not in self.items]
        if unknown:
            raise InvalidCommand("a removed contact is not a contact of this account", Clause.CORRECTION)
        if not added and not removed:
            raise InvalidCommand("the contact update changes nothing", Clause.CORRECTION)
        changed = sorted([f"email@{s}" for s in removed] + [f"email@{s.subject_id}" for s in added])
        self.trigger_event(
            self.ContactsChanged,
            channel=checked.value,
            added=list(added),
            removed=list(removed),
            changed=changed,
            cause=cause,
        )

    def link_certificate(self, certificate_record_id: UUID, cause: Cause) -> None:
        if self.deactivated_at is not None:
            raise InvalidTransition("the ACME account is deactivated; no certificate is issued under it")
        self.trigger_event(self.CertificateLinked, certificate_record_id=certificate_record_id, cause=cause)

    def deactivate(self, cause: Cause) -> None:
        if self.deactivated_at is not None:
            raise InvalidTransition("the ACME account is already deactivated")
        self.trigger_event(self.Deactivated, cause=cause)


def _check_contacts(contacts: Sequence[Sealed]) -> None:
    if any(s.kind != "email" for s in contacts):
        raise InvalidCommand("an ACME account's contacts are e-mail addresses")
    subjects = [s.subject_id for s in contacts]
    if len(subjects) != len(set(subjects)):
        raise InvalidCommand("an ACME account lists each contact once")
