"""The per-subject key table under the master key (both backends)."""

from __future__ import annotations

import base64
import os
from dataclasses import replace

import pytest

from domain.certificate import CertificateIdentity
from domain.commands import PersonalItemInput
from domain.identity import SubjectKey
from kiroku.bootstrap import build_ledger
from kiroku.persistence.keyring import KeyStoreError
from kiroku.settings import Settings
from tests.helpers import FakeClock, cause, publish_policy

TARO = SubjectKey.email("taro@example.jp")


def test_a_store_opened_with_another_master_key_refuses_to_read(settings: Settings, clock: FakeClock) -> None:
    ledger = build_ledger(settings, clock=clock)
    publish_policy(ledger)
    ledger.collect(
        record_ref="r",
        channel="C1",
        purposes=["P1"],
        certificate=CertificateIdentity("r.example", [], "DV"),
        personal_items=[PersonalItemInput(TARO, "name", "山田 太郎")],
        cause=cause(),
    )
    subject_id = ledger.subject_id(TARO)
    ledger.close()

    wrong = build_ledger(replace(settings, master_key=os.urandom(32)), clock=clock)
    try:
        with pytest.raises(KeyStoreError, match="wrong master key") as failed:
            wrong.disclosure_package(subject_id)
        assert "山田" not in str(failed.value)
        assert base64.b64encode(settings.master_key).decode() not in str(failed.value)
    finally:
        wrong.close()

    right = build_ledger(settings, clock=clock)
    try:
        assert right.disclosure_package(subject_id)["records"][0]["items"] == {"name": "山田 太郎"}
    finally:
        right.close()
