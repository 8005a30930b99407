"""The views the compliance team reads."""

from __future__ import annotations

from domain.application import Ledger
from projections.view import View
from projections.views.audit import AuditTrail
from projections.views.certificates import Certificates
from projections.views.policy import PolicyVersions
from projections.views.provisions import ProvisionLedger
from projections.views.requests import Requests
from projections.views.subjects import Subjects

VIEW_NAMES = ("policy_versions", "audit_trail", "provision_ledger", "certificates", "subjects", "requests")


def make_views(ledger: Ledger) -> dict[str, View]:
    """Every view, by name; some need the ledger (to open sealed values for look-ups)."""
    views: list[View] = [
        PolicyVersions(),
        AuditTrail(),
        ProvisionLedger(),
        Certificates(),
        Subjects(ledger),
        Requests(),
    ]
    return {view.name: view for view in views}
