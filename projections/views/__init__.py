"""The views the compliance team reads."""

from __future__ import annotations

from projections.view import View
from projections.views.audit import AuditTrail
from projections.views.policy import PolicyVersions
from projections.views.provisions import ProvisionLedger

ALL_VIEWS: dict[str, type[View]] = {v.name: v for v in (PolicyVersions, AuditTrail, ProvisionLedger)}
