"""The canonical form behind upstream-event fingerprints must not drift.

Receipts store a keyed hash of this form; if it changed, a redelivered message
would no longer match its receipt and would be refused as a conflict. The
expected text was produced by the form's first implementation.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.certificate import CertificateIdentity
from domain.codes import Channel, PersonalItemKind
from domain.commands import PersonalItemInput, ProvidedItemInput
from domain.identity import SubjectKey
from domain.provision import CtSubmission, Recipient
from domain.service.base import _canonical, fingerprint_text
from tests.helpers import scalar_values


def _form(args: object) -> str:
    return json.dumps(["cmd", _canonical(args)], sort_keys=True, ensure_ascii=False)


def _pinned(args: object) -> str:
    """The form as the fingerprint is taken of it, which must be the pinned text."""
    text = fingerprint_text("cmd", args)
    assert text == _form(args)
    return text


def test_a_collection_keeps_its_canonical_form() -> None:
    args = [
        "rec-1",
        "C1",
        ["P1", "P2"],
        CertificateIdentity("a.example", ["b.example"], "OV", "01"),
        {"name": "Org"},
        [PersonalItemInput(SubjectKey.email("a@b.jp"), "name", "山田")],
        None,
        [datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)],
    ]
    assert _pinned(args) == (
        '["cmd", ["rec-1", "C1", ["P1", "P2"], {"__type__": "CertificateIdentity", '
        '"common_name": "a.example", "sans": ["b.example"], "serial": "01", "validation": "OV"}, '
        '{"name": "Org"}, [{"__type__": "PersonalItemInput", "kind": "name", '
        '"subject": {"kind": "email", "value": "a@b.jp"}, "value": "山田"}], null, '
        '["2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]]]'
    )


def test_a_provision_keeps_its_canonical_form() -> None:
    args = [
        "4.4",
        Recipient("op", "Op", "JP"),
        [ProvidedItemInput("email", SubjectKey.email("x@y.jp")), ProvidedItemInput("common_name")],
        UUID(int=5),
        None,
        CtSubmission("log", datetime(2026, 1, 1, tzinfo=UTC)),
        Channel.ACME,
        frozenset({"b", "a"}),
        (1, 2.5, True),
    ]
    assert _pinned(args) == (
        '["cmd", ["4.4", {"__type__": "Recipient", "country": "JP", "name": "Op", "recipient_id": "op"}, '
        '[{"__type__": "ProvidedItemInput", "item": "email", "subject": {"kind": "email", "value": '
        '"x@y.jp"}}, {"__type__": "ProvidedItemInput", "item": "common_name", "subject": null}], '
        '"00000000-0000-0000-0000-000000000005", null, {"__type__": "CtSubmission", "log_id": "log", '
        '"logged_at": "2026-01-01T00:00:00+00:00"}, "C2", ["a", "b"], [1, 2.5, true]]]'
    )


texts = st.text(max_size=12)
subject_keys = st.builds(SubjectKey, st.sampled_from(["email", "upstream"]), texts)
leaves = (
    scalar_values(texts)
    | st.datetimes(timezones=st.none() | st.just(UTC))
    | st.sampled_from(list(Channel))
    | st.sampled_from(list(PersonalItemKind))
    | st.uuids()
    | subject_keys
    | st.builds(CertificateIdentity, texts, st.lists(texts, max_size=3), texts, st.none() | texts)
    | st.builds(PersonalItemInput, subject_keys, texts, texts)
    | st.builds(ProvidedItemInput, texts, st.none() | subject_keys)
    | st.builds(Recipient, texts, texts, texts)
    | st.builds(CtSubmission, texts, st.datetimes(timezones=st.just(UTC)))
    | st.frozensets(texts, max_size=3)
)
arguments = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(texts, inner, max_size=3)
        | st.dictionaries(st.integers(), inner, max_size=2)
    ),
    max_leaves=15,
)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=10), arguments)
def test_the_fingerprint_text_is_the_canonical_form_as_json_writes_it(command: str, args: object) -> None:
    assert fingerprint_text(command, args) == json.dumps(
        [command, _canonical(args)], sort_keys=True, ensure_ascii=False
    )
