"""Subject ids from keyed hashes, causes, and settings read at start-up."""

from __future__ import annotations

import base64
import hmac
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.cause import Cause
from domain.errors import InvalidCommand
from domain.identity import (
    KIROKU_NAMESPACE,
    KeyedHash,
    SubjectKey,
    blind_index,
    deterministic_id,
    subject_id_for,
    uuid_order,
)
from kiroku.persistence.live import keepalive
from kiroku.settings import DEAD_AFTER_S, Settings, SettingsError
from tests.helpers import T0

SECRET = b"s" * 32


def test_one_person_lands_on_one_subject_whatever_the_spelling() -> None:
    ids = {
        subject_id_for(SubjectKey.email(a), SECRET)
        for a in ["Taro@Example.JP", " taro@example.jp ", "ｔａｒｏ@example.jp"]
    }
    assert len(ids) == 1


def test_the_id_reveals_nothing_without_the_key() -> None:
    key = SubjectKey.email("taro@example.jp")
    subject_id = subject_id_for(key, SECRET)
    assert subject_id != subject_id_for(key, b"t" * 32)
    assert subject_id.version == 8
    assert "taro" not in repr(key) and "taro" not in str(subject_id)


def test_upstream_identifiers_and_emails_are_separate_keys() -> None:
    assert subject_id_for(SubjectKey.upstream("acme", "acct-1"), SECRET) != subject_id_for(
        SubjectKey.upstream("registrar", "acct-1"), SECRET
    )


def test_ids_and_digests_are_those_stored_data_already_holds() -> None:
    # Stored events and views hold these: the faster ways of making them must not move them.
    taro = subject_id_for(SubjectKey.email("taro@example.jp"), SECRET)
    assert str(taro) == "52d875fe-656d-8f29-a4d6-7b05a2afcc79"
    assert str(subject_id_for(SubjectKey.upstream("acme", "acct-1"), b"k" * 100)) == (
        "4c01f519-b942-86fb-b388-ab0074111ece"
    )
    assert str(deterministic_id("upstream-event", "acme", "e-1")) == "5050a046-e9da-5013-a697-9b2555f32826"
    assert blind_index("Yamada  Taro", SECRET, "kiroku.lookup.name") == (
        "f9fec4acf55f777fbd42632f325a95f74f905fb6a4568da305422fae00a0b860"
    )


@given(st.binary(max_size=200), st.binary(max_size=3000))
def test_the_keyed_hash_is_hmac_sha256(key: bytes, message: bytes) -> None:
    keyed = KeyedHash(key)
    assert keyed.digest(message) == hmac.digest(key, message, "sha256")
    assert keyed.digest(b"again") == hmac.digest(key, b"again", "sha256")  # the key's state is not used up


@given(st.lists(st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t), min_size=1, max_size=4))
def test_deterministic_ids_are_uuid5_in_kirokus_namespace(parts: list[str]) -> None:
    made = deterministic_id(*parts)
    expected = uuid.uuid5(KIROKU_NAMESPACE, "\x00".join(parts))
    assert made == expected and made.int == expected.int and hash(made) == hash(expected)
    assert (made.version, made.variant, str(made)) == (5, uuid.RFC_4122, str(expected))
    assert deterministic_id(*parts) == expected  # again, as remembered


@pytest.mark.parametrize("parts", [("record", ""), ("record", 7), ("record", ["a"]), ("record", None)])
def test_an_id_of_a_bad_part_is_refused_even_beside_remembered_ones(parts: tuple[object, ...]) -> None:
    deterministic_id("record", "7")
    deterministic_id("record", "a")
    with pytest.raises(InvalidCommand, match="non-empty string"):
        deterministic_id(*parts)  # type: ignore[arg-type]


@given(st.text(min_size=1, max_size=60).filter(str.strip), st.binary(min_size=16, max_size=100))
def test_a_subject_id_is_the_keyed_hash_as_a_version_8_uuid(identifier: str, secret: bytes) -> None:
    key = SubjectKey.upstream("acme", identifier)
    message = b"kiroku.subject\x00upstream\x00" + key.value.encode()
    digest = bytearray(hmac.digest(secret, message, "sha256")[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    made = subject_id_for(key, secret)
    assert made == uuid.UUID(bytes=bytes(digest)) and made.version == 8 and made.variant == uuid.RFC_4122


@pytest.mark.parametrize("address", ["", "no-at-sign", "a@b", "two@@example.jp", "sp ace@example.jp"])
def test_a_malformed_email_is_refused_without_echoing_it(address: str) -> None:
    with pytest.raises(InvalidCommand) as refused:
        SubjectKey.email(address)
    if address:
        assert address not in str(refused.value)


def test_a_cause_needs_an_aware_time_and_an_actor() -> None:
    with pytest.raises(InvalidCommand, match="time zone"):
        Cause(actor="a", source_system="s", occurred_at=datetime(2024, 1, 1))
    with pytest.raises(InvalidCommand, match="actor"):
        Cause(actor=" ", source_system="s", occurred_at=T0)


def test_a_cause_with_a_nul_character_is_refused() -> None:
    # PostgreSQL's text columns and JSON values cannot hold it: the views could not show the event.
    with pytest.raises(InvalidCommand, match="correlation_id must not contain a NUL"):
        Cause(actor="a", source_system="s", occurred_at=T0, correlation_id="corr\x00-1")


def test_embedded_default_creates_its_keys_once(tmp_path: Path) -> None:
    first = Settings.from_env({"KIROKU_DATA_DIR": str(tmp_path)})
    second = Settings.from_env({"KIROKU_DATA_DIR": str(tmp_path)})
    assert first.database.backend == "sqlite"
    assert first.master_key == second.master_key and len(first.master_key) == 32
    assert (tmp_path / "master.key").stat().st_mode & 0o077 == 0


def test_postgres_needs_explicit_keys() -> None:
    with pytest.raises(SettingsError, match="KIROKU_MASTER_KEY"):
        Settings.from_env({"DATABASE_URL": "postgresql://u@h/db"})


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"KIROKU_DATABASE_URL": "postgresql://u@h/"}, "KIROKU_DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u@h:notaport/db"}, "DATABASE_URL"),
        ({"KIROKU_MASTER_KEY": "not base64!"}, "KIROKU_MASTER_KEY"),
        ({"KIROKU_MASTER_KEY": base64.b64encode(b"short").decode()}, "KIROKU_MASTER_KEY"),
        ({"KIROKU_INGEST_EPOCH": "2027 01"}, "KIROKU_INGEST_EPOCH"),
        ({"KIROKU_INGEST_EPOCH": "a:b"}, "KIROKU_INGEST_EPOCH"),
        ({"KIROKU_INGEST_EPOCH": "e" * 65}, "KIROKU_INGEST_EPOCH"),
        ({"KIROKU_DATABASE_DEAD_AFTER": "3"}, "KIROKU_DATABASE_DEAD_AFTER"),
        ({"KIROKU_DATABASE_DEAD_AFTER": "3601"}, "KIROKU_DATABASE_DEAD_AFTER"),
        ({"KIROKU_DATABASE_DEAD_AFTER": "2.5"}, "KIROKU_DATABASE_DEAD_AFTER"),
        ({"KIROKU_DATABASE_DEAD_AFTER": "-30"}, "KIROKU_DATABASE_DEAD_AFTER"),
    ],
)
def test_a_bad_setting_is_named(environ: dict[str, str], named: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"KIROKU_DATA_DIR": str(tmp_path), **environ})
    assert str(refused.value).startswith(named)


def test_the_ingest_epoch_names_the_positions(tmp_path: Path) -> None:
    assert Settings.from_env({"KIROKU_DATA_DIR": str(tmp_path)}).stream_prefix == ""
    epoch = Settings.from_env({"KIROKU_DATA_DIR": str(tmp_path), "KIROKU_INGEST_EPOCH": "2027-01_b.2"})
    assert epoch.stream_prefix == "2027-01_b.2:"


def test_a_connection_to_a_silent_server_ends_within_the_dead_after_setting(tmp_path: Path) -> None:
    key = base64.b64encode(b"k" * 32).decode()
    environ = {"DATABASE_URL": "postgresql://u@h/db", "KIROKU_MASTER_KEY": key, "KIROKU_PSEUDONYM_KEY": key}
    assert Settings.from_env(environ).database.dead_after_s == DEAD_AFTER_S == 30
    database = Settings.from_env({**environ, "KIROKU_DATABASE_DEAD_AFTER": "12"}).database
    assert database.eventsourcing_env()["KIROKU_DATABASE_DEAD_AFTER"] == "12"
    for seconds in (4, 5, 6, 7, 12, 30, 3600):
        parameters = keepalive(seconds)
        assert parameters["keepalives"] == 1 and parameters["tcp_user_timeout"] == seconds * 1000
        probed = parameters["keepalives_idle"]
        probed += parameters["keepalives_interval"] * parameters["keepalives_count"]
        assert probed <= seconds, "an idle connection to a silent server is given up within the setting"
    assert keepalive(30) == {
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
    }
    with pytest.raises(ValueError, match="at least 4"):
        keepalive(3)


def test_the_password_never_appears_in_descriptions() -> None:
    key = base64.b64encode(b"k" * 32).decode()
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u:hunter2@h:5433/db?schema=x",
            "KIROKU_MASTER_KEY": key,
            "KIROKU_PSEUDONYM_KEY": key,
        }
    )
    assert settings.database.port == 5433 and settings.database.schema == "x"
    assert "hunter2" not in settings.database.describe() and "hunter2" not in repr(settings)


def test_batch_processes_collect_garbage_in_larger_steps_and_leave_start_up_out() -> None:
    script = (
        "import gc\n"
        "from kiroku.runtime import YOUNG_GENERATION_THRESHOLD, tune_gc_for_batches\n"
        "before = gc.get_threshold()\n"
        "tune_gc_for_batches()\n"
        "after = gc.get_threshold()\n"
        "assert after == (YOUNG_GENERATION_THRESHOLD, *before[1:]), after\n"
        "assert gc.get_freeze_count() > 0\n"
        "print('ok')\n"
    )
    # In a process of its own: the settings are process-wide.
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr


@given(st.lists(st.uuids(), max_size=30))
def test_uuid_order_sorts_ids_as_their_text_sorts(ids: list[uuid.UUID]) -> None:
    assert sorted(ids, key=uuid_order) == sorted(ids, key=str)
