"""The Avro contract: schema evolution checked by Apache Avro, both framings, and bad bytes."""

from __future__ import annotations

import io
import json
import re
import struct
import uuid
from datetime import UTC, datetime
from itertools import product
from typing import Any

import avro.io
import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from fastavro.schema import parse_schema, to_parsing_canonical_form
from hypothesis import given
from hypothesis import strategies as st

from consumers.contract import Contract, MalformedBody, UnknownFraming, UnknownSchema, _has_map, _holds_nul
from tests.helpers import ROOT

CONTRACT = Contract.load()
ACCOUNT = "jp.kiroku.upstream.acme.AccountRegistered"
APPLICATION = "jp.kiroku.upstream.registrar.ApplicationSubmitted"


def envelope(source: str = "acme") -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4(),
        "occurred_at": datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        "source_system": source,
        "actor": "acme-server",
        "correlation_id": "c-1",
    }


def account(**extra: Any) -> dict[str, Any]:
    return {
        "envelope": envelope(),
        "account_id": "acct-9",
        "contacts": ["a@example.jp"],
        "purposes": ["P1"],
        **extra,
    }


def apache(schema_id: int) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(CONTRACT.expanded[schema_id]))


@pytest.mark.parametrize("name", sorted(CONTRACT.latest))
def test_every_version_pair_is_fully_compatible(name: str) -> None:
    """Full transitive compatibility: any version reads any other (Apache Avro's checker)."""
    versions = CONTRACT.versions_of(name)
    checker = ReaderWriterCompatibilityChecker()
    for reader, writer in product(versions, versions):
        result = checker.get_compatibility(apache(reader.schema_id), apache(writer.schema_id))
        assert result.compatibility is SchemaCompatibilityType.compatible, (
            f"{name}: v{reader.version} cannot read v{writer.version}: {result.messages}"
        )


def test_the_checker_would_catch_an_incompatible_change() -> None:
    v1 = CONTRACT.expanded[CONTRACT.versions_of(ACCOUNT)[0].schema_id]
    broken = dict(v1, fields=[*v1["fields"], {"name": "tos_agreed", "type": "boolean"}])  # no default
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(broken)), avro.schema.parse(json.dumps(v1))
    )
    assert result.compatibility is SchemaCompatibilityType.incompatible


def test_ids_and_fingerprints_are_unique_and_topics_own_their_types() -> None:
    assert len(CONTRACT.by_id) == len(CONTRACT.by_fingerprint) == 12
    assert CONTRACT.accepts("acme.events", ACCOUNT)
    assert not CONTRACT.accepts("registrar.events", ACCOUNT)
    assert not CONTRACT.accepts("other.events", ACCOUNT)


def test_an_old_version_is_read_as_the_newest() -> None:
    decoded = CONTRACT.decode(CONTRACT.encode_confluent(ACCOUNT, account(), version=1))
    assert decoded.written_with.version == 1
    assert decoded.record["external_account_binding"] is None
    assert decoded.record["contacts"] == ["a@example.jp"]


def test_confluent_framing_bytes() -> None:
    data = CONTRACT.encode_confluent(ACCOUNT, account(), version=2)
    assert data[:1] == b"\x00"
    assert struct.unpack(">I", data[1:5])[0] == CONTRACT.versions_of(ACCOUNT)[1].schema_id == 102
    assert CONTRACT.decode(data).record["account_id"] == "acct-9"


def _crc64_avro(data: bytes) -> bytes:
    """CRC-64-AVRO as the Avro specification writes it out, little-endian like Java's."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def test_single_object_framing_bytes_carry_the_crc64_fingerprint() -> None:
    data = CONTRACT.encode_single_object(ACCOUNT, account(external_account_binding="k1"))
    assert data[:2] == b"\xc3\x01"
    latest = CONTRACT.latest[ACCOUNT]
    canonical = to_parsing_canonical_form(latest.parsed)
    assert '"logicalType"' not in canonical  # the spec's Parsing Canonical Form drops them
    assert data[2:10] == _crc64_avro(canonical.encode())
    assert CONTRACT.decode(data).record["external_account_binding"] == "k1"


def _apache_body(schema_id: int, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    avro.io.DatumWriter(apache(schema_id)).write(record, avro.io.BinaryEncoder(out))
    return out.getvalue()


@pytest.mark.parametrize("framing", ["confluent", "single-object"])
def test_a_message_written_by_apache_avro_is_read(framing: str) -> None:
    v1 = CONTRACT.versions_of(APPLICATION)[0]
    record = {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
            "source_system": "registrar",
            "actor": "operator:7",
            "correlation_id": None,
        },
        "application_id": "app-1",
        "operator_id": "op-7",
        "certificate": {
            "common_name": "www.example.jp",
            "sans": ["www.example.jp"],
            "validation": "OV",
            "serial": None,
        },
        "organisation": {
            "name": "株式会社エグザンプル",
            "unit": None,
            "locality": "千代田区",
            "state": None,
            "country": "JP",
        },
        "applicant": {
            "subject_ref": None,
            "name": "山田 太郎",
            "email": "taro@example.jp",
            "phone": None,
            "postal_address": None,
        },
        "contacts": [],
        "purposes": ["P1", "P3"],
    }
    body = _apache_body(v1.schema_id, record)
    header = (
        b"\x00" + struct.pack(">I", v1.schema_id) if framing == "confluent" else b"\xc3\x01" + v1.fingerprint
    )
    decoded = CONTRACT.decode(header + body)
    assert decoded.name == APPLICATION
    assert decoded.record["applicant"]["name"] == "山田 太郎"
    assert decoded.record["organisation"]["name"] == "株式会社エグザンプル"
    assert decoded.record["envelope"]["occurred_at"] == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert decoded.record["operator_reference"] is None  # v2 field, from its default


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", UnknownFraming),
        (b"garbage bytes", UnknownFraming),
        (b"\x01\x00\x00\x00\x65", UnknownFraming),
        (b"\x00\x00\x00\x03\xe7hello", UnknownSchema),
        (b"\xc3\x01" + b"\x00" * 8 + b"hello", UnknownSchema),
        (b"\x00\x00\x00", MalformedBody),
    ],
)
def test_bad_bytes_say_what_is_wrong(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        CONTRACT.decode(data)


def test_a_truncated_body_is_malformed() -> None:
    data = CONTRACT.encode_confluent(ACCOUNT, account())
    for cut in (1, 5, len(data) // 2):
        with pytest.raises(MalformedBody):
            CONTRACT.decode(data[:-cut])


def test_trailing_bytes_are_malformed() -> None:
    with pytest.raises(MalformedBody, match="bytes after"):
        CONTRACT.decode(CONTRACT.encode_confluent(ACCOUNT, account()) + b"\x00")


def test_the_readme_table_of_schema_ids_and_fingerprints_is_true() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \| (\d+) \| `([0-9a-f]{16})` \|", readme, flags=re.MULTILINE)
    documented = {(name, int(version), int(sid), fp) for name, version, sid, fp in rows}
    actual = {(v.short_name, v.version, v.schema_id, v.fingerprint.hex()) for v in CONTRACT.by_id.values()}
    assert documented == actual


def test_a_time_out_of_range_is_malformed() -> None:
    """A timestamp-micros long far past year 9999 (found by the fuzz test): dead-lettered, not a crash."""
    record = account()
    record["envelope"]["occurred_at"] = 2**62  # microseconds since 1970, written as the raw long
    with pytest.raises(MalformedBody, match="OverflowError"):
        CONTRACT.decode(CONTRACT.encode_confluent(ACCOUNT, record))


@pytest.mark.parametrize("where", ["account_id", "contacts", "envelope"])
def test_a_nul_character_in_any_text_is_malformed_and_not_echoed(where: str) -> None:
    record = account()
    if where == "contacts":
        record["contacts"] = ["a@example.jp", "b\x00@example.jp"]
    elif where == "envelope":
        record["envelope"]["correlation_id"] = "corr\x00-acct"
    else:
        record["account_id"] = "acct\x00-9"
    with pytest.raises(MalformedBody, match="NUL character") as raised:
        CONTRACT.decode(CONTRACT.encode_confluent(ACCOUNT, record))
    assert "example" not in str(raised.value) and "acct" not in str(raised.value)


def _nul_anywhere(value: Any, *, names: bool = True) -> bool:
    """The rule, said plainly: a NUL in any text, a mapping's names included if ``names``."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any((names and _nul_anywhere(k)) or _nul_anywhere(v, names=names) for k, v in value.items())
    if isinstance(value, list):
        return any(_nul_anywhere(v, names=names) for v in value)
    return False


_TEXT = st.text(alphabet=st.sampled_from(["a", "\x00", "é", " "]), max_size=4)
_DECODED = st.recursive(
    st.none() | st.integers() | st.booleans() | _TEXT | st.binary(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=30,
)


@given(_DECODED)
def test_the_nul_check_finds_a_nul_wherever_it_is(value: Any) -> None:
    assert _holds_nul(value) == _nul_anywhere(value)


@given(_DECODED)
def test_the_nul_check_without_names_finds_a_nul_in_any_value(value: Any) -> None:
    assert _holds_nul(value, names=False) == _nul_anywhere(value, names=False)


_PROBE = "jp.kiroku.upstream.probe"
_MAP = {"type": "map", "values": "string"}


def _record(*fields: dict[str, Any], name: str = "Probe") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": _PROBE, "fields": list(fields)}


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (_record({"name": "a", "type": "string"}), False),
        (_record({"name": "a", "type": _MAP}), True),
        (_record({"name": "a", "type": ["null", {"type": "map", "values": "long"}]}), True),
        (_record({"name": "a", "type": {"type": "array", "items": _MAP}}), True),
        (_record({"name": "inner", "type": _record({"name": "b", "type": _MAP}, name="In")}), True),
    ],
)
def test_a_map_is_found_wherever_it_is_in_a_schema(schema: dict[str, Any], expected: bool) -> None:
    assert _has_map(parse_schema(schema)) is expected


def test_the_shipped_schemas_hold_no_map_so_names_are_not_checked() -> None:
    assert CONTRACT.names_are_data is False


def test_with_a_map_in_the_schemas_a_nul_in_its_names_is_refused() -> None:
    name = f"{_PROBE}.Probe"
    registry = {
        "topics": {"probe.events": _PROBE},
        "common": [],
        "schemas": [{"id": 9001, "name": name, "version": 1, "file": "probe.avsc"}],
    }
    files = {"probe.avsc": json.dumps(_record({"name": "labels", "type": _MAP}))}
    contract = Contract(registry, files.__getitem__)
    assert contract.names_are_data is True
    decoded = contract.decode(contract.encode_confluent(name, {"labels": {"ok": "x"}}))
    assert decoded.record == {"labels": {"ok": "x"}}
    with pytest.raises(MalformedBody, match="NUL character"):
        contract.decode(contract.encode_confluent(name, {"labels": {"k\x00": "x"}}))
