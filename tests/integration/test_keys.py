"""The per-subject key table under the master key (both backends)."""

from __future__ import annotations

import base64
import os
from dataclasses import replace
from uuid import uuid4

import pytest

from domain.application import Ledger
from domain.certificate import CertificateIdentity
from domain.commands import PersonalItemInput
from domain.errors import PersonalDataErased
from domain.identity import SubjectKey
from kiroku.bootstrap import build_ledger
from kiroku.persistence.keyring import KeyStoreError, keyring_for
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


def test_keys_made_ready_for_a_batch_are_new_kept_or_still_destroyed(
    settings: Settings, ledger: Ledger
) -> None:
    keyring = ledger.keyring
    kept, destroyed = uuid4(), uuid4()
    kept_key = keyring.key_for(kept, 1)
    keyring.key_for(destroyed, 1)
    ledger.recorder.insert_events([], shred=[(destroyed, 1)])
    new = [uuid4() for _ in range(5)]
    pairs = [(kept, 1), (destroyed, 1), *((s, 1) for s in new), (new[0], 2)]

    fresh = keyring_for(ledger.recorder, settings.master_key)  # nothing cached
    fresh.prepare(pairs)
    ready = fresh.keys_for(pairs)

    assert ready[(kept, 1)] == kept_key
    assert ready[(destroyed, 1)] is None
    made = [ready[(s, 1)] for s in new] + [ready[(new[0], 2)]]
    assert all(key is not None and len(key) == 32 for key in made)
    assert len(set(made)) == len(made)
    with pytest.raises(PersonalDataErased):
        fresh.key_for(destroyed, 1)
    # Preparing again changes nothing: the rows written first stay.
    again = keyring_for(ledger.recorder, settings.master_key)
    again.prepare(pairs)
    assert again.keys_for(pairs) == ready
