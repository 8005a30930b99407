"""Commands for the ACME flow, where a certificate's information first shows up in its CT submission.

An ACME order's pre-certificate goes to CT logs (§4.4) before the certificate is
issued, so whichever of the two arrives first collects the order's certificate
information (§5, C2), and the certificate's issuance completes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.cause import Cause
from domain.certificate import CertificateIdentity, CertificateRecord
from domain.codes import Channel, ProvisionCategory
from domain.commands import CommandResult, ProvidedItemInput
from domain.provision import CtSubmission, Recipient
from domain.service.provision import ProvisionCommands
from domain.service.records import RecordCommands


def _unique(aggregates: Sequence[Aggregate]) -> list[Aggregate]:
    seen: dict[UUID, Aggregate] = {}
    for aggregate in aggregates:
        seen.setdefault(aggregate.id, aggregate)
    return list(seen.values())


class AcmeCommands(RecordCommands, ProvisionCommands):
    """The ACME server's certificates: issued, and submitted to CT logs."""

    def _order_record(
        self,
        *,
        order_ref: str,
        account_ref: str,
        certificate: CertificateIdentity,
        purposes: Sequence[str],
        validity: tuple[datetime, datetime] | None,
        cause: Cause,
    ) -> tuple[CertificateRecord, list[Aggregate]]:
        record = self._find(CertificateRecord, self.certificate_record_id(cause.source_system, order_ref))
        if record is None:
            return self._new_record(
                record_ref=order_ref,
                channel=Channel.ACME,
                purposes=purposes,
                certificate=certificate,
                organisation=None,
                personal_items=(),
                account_ref=account_ref,
                validity=validity,
                cause=cause,
            )
        if validity is not None:
            self._issue(record, certificate, validity, cause)
        return record, [record]

    def record_acme_certificate(
        self,
        *,
        order_ref: str,
        account_ref: str,
        certificate: CertificateIdentity,
        validity: tuple[datetime, datetime],
        purposes: Sequence[str],
        cause: Cause,
    ) -> CommandResult:
        """The certificate of an order issued: collected now if its CT submission did not already."""

        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            record, changed = self._order_record(
                order_ref=order_ref,
                account_ref=account_ref,
                certificate=certificate,
                purposes=purposes,
                validity=validity,
                cause=cause,
            )
            return changed, record.id, {}

        args = [order_ref, account_ref, certificate, list(validity), sorted(purposes)]
        return self._execute(cause, "record_acme_certificate", args, work)

    def record_ct_submission(
        self,
        *,
        order_ref: str,
        account_ref: str,
        certificate: CertificateIdentity,
        purposes: Sequence[str],
        log_operator: Recipient,
        submission: CtSubmission,
        cause: Cause,
    ) -> CommandResult:
        """§4.4: an order's pre-certificate sent to a CT log; the order collected if new."""

        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            record, changed = self._order_record(
                order_ref=order_ref,
                account_ref=account_ref,
                certificate=certificate,
                purposes=purposes,
                validity=None,
                cause=cause,
            )
            provision, provided = self._provide(
                category=ProvisionCategory.CT_LOG,
                recipient=log_operator,
                items=[ProvidedItemInput("common_name"), ProvidedItemInput("sans")],
                record=record,
                legal_ground=None,
                ct_submission=submission,
                cause=cause,
            )
            return _unique([*changed, *provided]), provision.id, {}

        args = [order_ref, account_ref, certificate, sorted(purposes), log_operator, submission]
        return self._execute(cause, "record_ct_submission", args, work)
