"""One settings object, read from the environment and checked at start-up.

A bad setting stops the program with a message that names it (never its value
when the value is a secret).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: How long, by default, a connection may hear nothing from PostgreSQL before it counts as dead
#: (``KIROKU_DATABASE_DEAD_AFTER``; ``kiroku.persistence.live.keepalive``).
DEAD_AFTER_S = 30


class SettingsError(Exception):
    """Raised when a setting is missing or malformed; the message names the setting."""


@dataclass(frozen=True)
class Database:
    """Where the event store lives: ``sqlite`` (a file) or ``postgres``."""

    backend: str
    sqlite_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    schema: str = ""
    #: Seconds of silence from PostgreSQL after which a connection counts as dead (a dark network).
    dead_after_s: int = DEAD_AFTER_S

    def eventsourcing_env(self) -> dict[str, str]:
        """The environment the ``eventsourcing`` library reads to build the recorders."""
        if self.backend == "sqlite":
            assert self.sqlite_path is not None
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.sqlite_path),
                "SQLITE_LOCK_TIMEOUT": "10",
                "PROCESS_RECORDER_TOPIC": "kiroku.persistence.recorders:KirokuSQLiteRecorder",
                "SNAPSHOT_RECORDER_TOPIC": "kiroku.persistence.recorders:KirokuSQLiteSnapshotRecorder",
            }
        return {
            "PERSISTENCE_MODULE": "kiroku.persistence.factory:KirokuPostgresFactory",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_SCHEMA": self.schema,
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_POOL_SIZE": "4",
            "POSTGRES_MAX_OVERFLOW": "4",
            "POSTGRES_LOCK_TIMEOUT": "10",
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
            "KIROKU_DATABASE_DEAD_AFTER": str(self.dead_after_s),
            "PROCESS_RECORDER_TOPIC": "kiroku.persistence.recorders:KirokuPostgresRecorder",
            "SNAPSHOT_RECORDER_TOPIC": "eventsourcing.postgres:PostgresAggregateRecorder",
        }

    def describe(self) -> str:
        """Where the store is, without the password."""
        if self.backend == "sqlite":
            return f"SQLite at {self.sqlite_path}"
        schema = f" schema {self.schema}" if self.schema else ""
        return f"PostgreSQL {self.user}@{self.host}:{self.port}/{self.dbname}{schema}"


def parse_database_url(url: str, *, data_dir: Path, setting: str = "DATABASE_URL") -> Database:
    """``postgresql://user:pw@host:port/db?schema=s``, ``sqlite:///path`` or ``sqlite://`` (data dir)."""
    parts = urlsplit(url)
    if parts.scheme in {"postgres", "postgresql"}:
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise SettingsError(f"{setting}: the PostgreSQL URL names no database")
        try:
            port = parts.port or 5432
        except ValueError:
            raise SettingsError(f"{setting}: the port is not a number") from None
        schema = ""
        for pair in parts.query.split("&") if parts.query else []:
            key, _, value = pair.partition("=")
            if key == "schema":
                schema = unquote(value)
            else:
                raise SettingsError(f"{setting}: unknown URL parameter {key!r} (only 'schema')")
        return Database(
            backend="postgres",
            host=unquote(parts.hostname or "") or "127.0.0.1",
            port=port,
            dbname=dbname,
            user=unquote(parts.username or "") or os.environ.get("USER", "postgres"),
            password=unquote(parts.password or ""),
            schema=schema,
        )
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        return Database(backend="sqlite", sqlite_path=Path(path) if path else data_dir / "kiroku.sqlite3")
    raise SettingsError(f"{setting}: expected a postgresql:// or sqlite:// URL, got scheme {parts.scheme!r}")


def _decode_key(name: str, value: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(f"{name}: not valid base64") from None
    if len(key) != 32:
        raise SettingsError(f"{name}: must be 32 bytes (base64 of 32 random bytes)")
    return key


def _local_key(path: Path) -> bytes:
    """Reads, or on first use creates, a key file only the owner can read."""
    if path.exists():
        return _decode_key(str(path), path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(key).decode() + "\n")
    return key


_EPOCH = re.compile(r"[A-Za-z0-9._-]{1,64}")


def parse_bootstrap_servers(value: str, setting: str = "KAFKA_BOOTSTRAP_SERVERS") -> str:
    """``host:port[,host:port…]``, checked so a typo fails at start-up, not at the first poll."""
    servers = [part.strip() for part in value.split(",") if part.strip()]
    if not servers:
        raise SettingsError(f"{setting}: no broker address")
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"{setting}: {server!r} is not host:port")
    return ",".join(servers)


@dataclass(frozen=True)
class Settings:
    """Everything kiroku reads from its environment."""

    database: Database
    data_dir: Path
    master_key: bytes = field(repr=False)
    pseudonym_key: bytes = field(repr=False)
    kafka_bootstrap_servers: str | None = None
    group_id: str = "kiroku"
    #: The name ingest records its positions under; a new one starts over on what the broker holds.
    ingest_epoch: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    tokens_file: Path = Path(".kiroku/tokens.json")

    @property
    def stream_prefix(self) -> str:
        """What the names of ingest's tracking records start with (``consumers.ingest``)."""
        return f"{self.ingest_epoch}:" if self.ingest_epoch else ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("KIROKU_DATA_DIR") or ".kiroku")
        url = env.get("KIROKU_DATABASE_URL") or env.get("DATABASE_URL") or "sqlite://"
        name = "KIROKU_DATABASE_URL" if env.get("KIROKU_DATABASE_URL") else "DATABASE_URL"
        database = parse_database_url(url, data_dir=data_dir, setting=name)
        dead_after = env.get("KIROKU_DATABASE_DEAD_AFTER") or str(DEAD_AFTER_S)
        if not dead_after.isdigit() or not 4 <= int(dead_after) <= 3600:
            raise SettingsError("KIROKU_DATABASE_DEAD_AFTER: must be a whole number of seconds, 4-3600")
        database = replace(database, dead_after_s=int(dead_after))
        keys: dict[str, bytes] = {}
        for setting, filename in (
            ("KIROKU_MASTER_KEY", "master.key"),
            ("KIROKU_PSEUDONYM_KEY", "pseudonym.key"),
        ):
            value = env.get(setting)
            if value:
                keys[setting] = _decode_key(setting, value)
            elif database.backend == "sqlite":
                # The embedded default keeps its keys beside its database.
                keys[setting] = _local_key(data_dir / filename)
            else:
                raise SettingsError(f"{setting}: required when the event store is PostgreSQL")
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")
        group_id = env.get("KIROKU_GROUP_ID") or "kiroku"
        if len(group_id) > 200 or not group_id.strip():
            raise SettingsError("KIROKU_GROUP_ID: must be 1-200 characters")
        epoch = env.get("KIROKU_INGEST_EPOCH") or ""
        if epoch and not _EPOCH.fullmatch(epoch):
            raise SettingsError(
                "KIROKU_INGEST_EPOCH: must be 1-64 of the characters A-Z, a-z, 0-9, '.', '_', '-'"
            )
        port_text = env.get("KIROKU_HTTP_PORT") or "8000"
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise SettingsError("KIROKU_HTTP_PORT: must be a port number (1-65535)")
        host = (env.get("KIROKU_HTTP_HOST") or "127.0.0.1").strip()
        if not host:
            raise SettingsError("KIROKU_HTTP_HOST: must not be empty")
        return cls(
            database=database,
            data_dir=data_dir,
            master_key=keys["KIROKU_MASTER_KEY"],
            pseudonym_key=keys["KIROKU_PSEUDONYM_KEY"],
            kafka_bootstrap_servers=parse_bootstrap_servers(bootstrap) if bootstrap else None,
            group_id=group_id.strip(),
            ingest_epoch=epoch,
            http_host=host,
            http_port=int(port_text),
            tokens_file=Path(env.get("KIROKU_TOKENS_FILE") or data_dir / "tokens.json"),
        )
