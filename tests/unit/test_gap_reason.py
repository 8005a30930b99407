"""An accepted gap's reason is kept for good and shown to every reader: what looks like a person's data."""

from __future__ import annotations

import pytest

from domain.gap import personal_form_in


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("asked by taro@example.com", "an e-mail address"),
        ("<hanako.sato+ca@mail.example.co.jp>", "an e-mail address"),
        ("the subscriber at 203.0.113.7 wrote in", "an IPv4 address"),
        ("from fe80:0:0:0:200:5eff:fe00:5213", "an IPv6 address"),
        ("from 2001:db8::1", "an IPv6 address"),
        ("::1", "an IPv6 address"),
        ("call 03-1234-5678", "a telephone number"),
        ("call 090-1234-5678", "a telephone number"),
        ("call +81 90 1234 5678", "a telephone number"),
        ("call (03) 1234 5678", "a telephone number"),
    ],
)
def test_a_reason_that_looks_like_a_persons_data_is_named_by_its_kind(reason: str, kind: str) -> None:
    assert personal_form_in(reason) == kind


@pytest.mark.parametrize(
    "reason",
    [
        "retention removed them during the outage of 3 Dec; acme cannot publish them again",
        "ticket OPS-1234: offsets 1200-1450 of acme.events partition 1, lost at 2026-12-03 12:30:45 JST",
        "offsets 1000000-2000000; see INC-20261203-001 and KAFKA-19890",
        "epoch 2027-01 started; streams epoch-2027:acme.events:0 and registrar.events:2",
        "lost 0-999 of partition 0 (broker disk 3 of 4 failed), kafka 3.9.0",
        "障害 INC-42: 保持期間切れで 1200〜1450 が消えた",
    ],
)
def test_a_reason_that_names_an_incident_passes(reason: str) -> None:
    assert personal_form_in(reason) is None
