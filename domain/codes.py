"""The policy's codes, so every record can cite the clause it rests on.

The values are the codes of ``shared/policy/README.md``; events store the
plain string values, commands and readers use the enums.
"""

from __future__ import annotations

from enum import StrEnum


class Purpose(StrEnum):
    """§2 purposes of use."""

    SERVICE = "P1"
    VERIFICATION_AT_APPLICATION = "P2"
    CERTIFICATE_MANAGEMENT = "P3"
    THIRD_PARTY_PROVISION = "P4"
    SERVICE_RESEARCH = "P5"
    STATISTICS = "P6"
    ANNOUNCEMENTS = "P7"
    ANNOUNCED_OTHER = "P8"


class Channel(StrEnum):
    """§5 collection channels."""

    DESIGNATED_OPERATOR = "C1"
    ACME = "C2"
    TERMS_OF_USE = "C3"
    ANNOUNCED_METHOD = "C4"


class ProvisionCategory(StrEnum):
    """§4 categories of third-party provision."""

    MANAGING_OPERATOR = "4.1"
    VERIFIERS = "4.2"
    LEGAL = "4.3"
    CT_LOG = "4.4"


class LegalGround(StrEnum):
    """§4.3 legal grounds (APPI Art. 27(1) items)."""

    LAWS_AND_REGULATIONS = "4.3.1"
    LIFE_BODY_PROPERTY = "4.3.2"
    PUBLIC_HEALTH_CHILDREN = "4.3.3"
    GOVERNMENT_COOPERATION = "4.3.4"


class PersonalItemKind(StrEnum):
    """The personal items the policy names as possibly part of certificate information."""

    NAME = "name"
    POSTAL_ADDRESS = "postal_address"
    PHONE = "phone"
    EMAIL = "email"


class ValidationLevel(StrEnum):
    """Domain-validated or organisation-validated certificate."""

    DV = "DV"
    OV = "OV"


class CertificateField(StrEnum):
    """Non-personal items of a certificate record a correction may change."""

    COMMON_NAME = "common_name"
    SANS = "sans"
    ORGANISATION = "organisation"


class DisclosureFormat(StrEnum):
    """How the data subject asked to receive the disclosure (APPI Art. 33(1))."""

    JSON = "json"
    CSV = "csv"
    PAPER = "paper"


class DisclosureRefusalGround(StrEnum):
    """Grounds on which a disclosure may be refused (APPI Art. 33(2), §7)."""

    IDENTITY_NOT_VERIFIED = "identity-not-verified"
    HARM_TO_PERSON = "harm-to-person-or-third-party"
    BUSINESS_HINDRANCE = "significant-business-hindrance"
    VIOLATES_LAW = "violates-other-law"


class Clause(StrEnum):
    """Policy clauses and legal provisions an event or refusal rests on."""

    PURPOSES = "§2"
    PURPOSE_CHANGE = "§3"
    PROVISION = "§4"
    PROVISION_LEGAL = "§4.3"
    COLLECTION = "§5"
    CORRECTION = "§6"
    DISCLOSURE = "§7"
    SAFEGUARDS = "§8"
    STOP_PROVISION = "§11"
    REVISION = "§12"
    PROVISION_RECORDS = "APPI Art. 29"
    ERASURE = "APPI Art. 35"
