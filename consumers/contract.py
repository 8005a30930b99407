"""The Avro contract (``schemas/``) and the two wire formats it travels in.

Every schema version has an id (``schemas/registry.json``) for the Confluent
framing (``00`` + 4-byte big-endian id + Avro body) and a CRC-64-AVRO
fingerprint of its canonical form for the Avro single-object encoding
(``C3 01`` + 8-byte little-endian fingerprint + body). A message is read with the
version it was written with and resolved to the newest version of its type.
Schemas are parsed once, when the contract is loaded.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from domain.quickinit import quick_init

CONFLUENT_MAGIC = b"\x00"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"


class UndecodableMessage(Exception):
    """Raised when a message's bytes cannot be read as a message of the contract."""

    reason = "undecodable"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.reason}: {detail}")


class UnknownFraming(UndecodableMessage):
    """Raised when the bytes start with neither framing's magic bytes."""

    reason = "unknown framing"


class UnknownSchema(UndecodableMessage):
    """Raised when the schema id or fingerprint names no schema of the contract."""

    reason = "unknown schema"


class MalformedBody(UndecodableMessage):
    """Raised when the Avro body is truncated or does not match its schema."""

    reason = "malformed body"


@quick_init
@dataclass(frozen=True)
class SchemaVersion:
    """One version of one message type, parsed and ready to read and write."""

    schema_id: int
    name: str
    version: int
    parsed: dict[str, Any]
    fingerprint: bytes

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@quick_init
@dataclass(frozen=True)
class Decoded:
    """A message read from the wire: its type, the version it was written with, its fields."""

    name: str
    written_with: SchemaVersion
    record: dict[str, Any]


def _self_contained(schema: Any, common: dict[str, Any], defined: set[str]) -> Any:
    """The schema with each shared named type defined at its first use and named after.

    This is the form every Avro implementation reads (a name is defined once),
    and the one the canonical form and its fingerprint are taken of.
    """
    if isinstance(schema, str):
        if schema in common and schema not in defined:
            defined.add(schema)
            return _self_contained(common[schema], common, defined)
        return schema
    if isinstance(schema, list):
        return [_self_contained(branch, common, defined) for branch in schema]
    if isinstance(schema, dict):
        out = dict(schema)
        if "fields" in schema:
            out["fields"] = [
                dict(field, type=_self_contained(field["type"], common, defined))
                for field in schema["fields"]
            ]
        if "items" in schema:
            out["items"] = _self_contained(schema["items"], common, defined)
        if "values" in schema:
            out["values"] = _self_contained(schema["values"], common, defined)
        return out
    return schema


def _holds_nul(value: Any, *, names: bool = True) -> bool:
    """Whether a NUL character is in any text of a decoded record (its mappings' names too, if ``names``).

    A walk with a stack of its own rather than a recursive ``any`` over
    generators: every message is checked, and that way cost twice as much.
    A record's names come from the schema (Avro names hold no NUL); only a
    map's names are data, so with no map in the schemas they are skipped
    (about half the walk).
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            if names:
                pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _has_map(schema: Any) -> bool:
    """Whether a parsed schema holds an Avro map anywhere (in a field, an array, a union...)."""
    if isinstance(schema, dict):
        return schema.get("type") == "map" or any(_has_map(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_map(v) for v in schema)
    return False


class Contract:
    """The schema versions of ``schemas/`` and the topics they travel on."""

    def __init__(self, registry: dict[str, Any], read_text: Any) -> None:
        common: dict[str, Any] = {}
        for path in registry["common"]:
            raw = json.loads(read_text(path))
            common[f"{raw['namespace']}.{raw['name']}"] = raw
        self.topics: dict[str, str] = dict(registry["topics"])
        self.by_id: dict[int, SchemaVersion] = {}
        self.by_fingerprint: dict[bytes, SchemaVersion] = {}
        self.latest: dict[str, SchemaVersion] = {}
        self.expanded: dict[int, dict[str, Any]] = {}
        for entry in registry["schemas"]:
            expanded = _self_contained(json.loads(read_text(entry["file"])), common, set())
            parsed = parse_schema(expanded)
            if not isinstance(parsed, dict):
                raise TypeError(f"{entry['file']} is not a record schema")
            print_fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
            version = SchemaVersion(int(entry["id"]), entry["name"], int(entry["version"]), parsed, print_fp)
            if version.schema_id in self.by_id or print_fp in self.by_fingerprint:
                raise ValueError(f"schema id or fingerprint of {entry['file']} is not unique")
            self.by_id[version.schema_id] = version
            self.by_fingerprint[print_fp] = version
            self.expanded[version.schema_id] = expanded
            newest = self.latest.get(version.name)
            if newest is None or newest.version < version.version:
                self.latest[version.name] = version
        #: Whether decoded messages can hold names that are data (a map's keys) to check for NUL.
        self.names_are_data = any(_has_map(v.parsed) for v in self.by_id.values())

    @classmethod
    def load(cls) -> Contract:
        """The contract shipped in the ``schemas`` package."""
        root = resources.files("schemas")

        def read_text(path: str) -> str:
            return root.joinpath(path).read_text(encoding="utf-8")

        return cls(json.loads(read_text("registry.json")), read_text)

    def versions_of(self, name: str) -> list[SchemaVersion]:
        return sorted((v for v in self.by_id.values() if v.name == name), key=lambda v: v.version)

    def accepts(self, topic: str, name: str) -> bool:
        """Whether messages of this type may come on this topic (one topic per upstream system)."""
        namespace = self.topics.get(topic.removesuffix(".dlq"))
        return namespace is not None and name.rsplit(".", 1)[0] == namespace

    # Reading -----------------------------------------------------------------

    def decode(self, data: bytes) -> Decoded:
        """Reads a framed message; raises :class:`UndecodableMessage` saying what is wrong."""
        if not isinstance(data, bytes | bytearray | memoryview) or not data:
            raise UnknownFraming("empty message")
        data = bytes(data)
        if data[:1] == CONFLUENT_MAGIC:
            if len(data) < 5:
                raise MalformedBody("Confluent header shorter than 5 bytes")
            (schema_id,) = struct.unpack(">I", data[1:5])
            writer = self.by_id.get(schema_id)
            if writer is None:
                raise UnknownSchema(f"schema id {schema_id}")
            body = data[5:]
        elif data[:2] == SINGLE_OBJECT_MAGIC:
            if len(data) < 10:
                raise MalformedBody("single-object header shorter than 10 bytes")
            writer = self.by_fingerprint.get(data[2:10])
            if writer is None:
                raise UnknownSchema(f"fingerprint {data[2:10].hex()}")
            body = data[10:]
        else:
            raise UnknownFraming(f"first byte 0x{data[0]:02x}")
        reader = self.latest[writer.name]
        stream = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(stream, writer.parsed, reader.parsed)
        except Exception as exc:  # noqa: BLE001 - whatever the reader fails with, the body is malformed
            # Seen: EOFError, ValueError, IndexError, TypeError, UnicodeDecodeError, and
            # OverflowError for a timestamp past year 9999 (found by the fuzz test).
            raise MalformedBody(f"{writer.short_name} v{writer.version}: {exc.__class__.__name__}") from None
        if stream.tell() != len(body):
            raise MalformedBody(f"{len(body) - stream.tell()} bytes after the {writer.short_name} record")
        if not isinstance(record, dict):
            raise MalformedBody(f"{writer.short_name} is not a record")
        if _holds_nul(record, names=self.names_are_data):
            # PostgreSQL's text and JSON values cannot keep it: the views could not show the message.
            raise MalformedBody(f"{writer.short_name} v{writer.version}: a text field holds a NUL character")
        return Decoded(writer.name, writer, record)

    # Writing (the publisher, tests, benchmarks) --------------------------------

    def _version(self, name: str, version: int | None) -> SchemaVersion:
        if version is None:
            return self.latest[name]
        for candidate in self.versions_of(name):
            if candidate.version == version:
                return candidate
        raise KeyError(f"{name} has no version {version}")

    def body(self, name: str, record: dict[str, Any], version: int | None = None) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, self._version(name, version).parsed, record)
        return out.getvalue()

    def encode_confluent(self, name: str, record: dict[str, Any], version: int | None = None) -> bytes:
        schema = self._version(name, version)
        return CONFLUENT_MAGIC + struct.pack(">I", schema.schema_id) + self.body(name, record, version)

    def encode_single_object(self, name: str, record: dict[str, Any], version: int | None = None) -> bytes:
        schema = self._version(name, version)
        return SINGLE_OBJECT_MAGIC + schema.fingerprint + self.body(name, record, version)
