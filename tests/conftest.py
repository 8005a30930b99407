"""Fixtures: the same ledger tests run on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``DATABASE_URL`` or ``postgresql://postgres@127.0.0.1:5432/test``.
If it cannot be reached the PostgreSQL tests fail (never skip) and say why.
Each PostgreSQL test gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql

from consumers.topics import create_topics
from domain.application import Ledger
from kiroku.bootstrap import build_ledger
from kiroku.broker import TansuBroker
from kiroku.settings import Settings
from tests.helpers import T0, FakeClock, publish_policy

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{parts.username or ''}@{host}:{parts.port or 5432}{parts.path}"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("DATABASE_URL") or DEFAULT_TEST_DATABASE_URL
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {_redacted(url)} ({exc.__class__.__name__}). "
            "Start it or point DATABASE_URL at one; these tests do not skip.",
            pytrace=False,
        )
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def _keys() -> dict[str, str]:
    return {
        "KIROKU_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KIROKU_PSEUDONYM_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    schema = f"kiroku_t_{uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"KIROKU_DATA_DIR": str(tmp_path), **_keys()})


def postgres_environ(url: str, schema: str) -> dict[str, str]:
    """The settings, as environment variables, of a store in this schema, with fresh keys."""
    separator = "&" if "?" in url else "?"
    return {"DATABASE_URL": f"{url}{separator}schema={schema}", **_keys()}


def postgres_settings(url: str, schema: str) -> Settings:
    return Settings.from_env(postgres_environ(url, schema))


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        return Settings.from_env({"KIROKU_DATA_DIR": str(tmp_path), **_keys()})
    url: str = request.getfixturevalue("postgres_url")
    schema: str = request.getfixturevalue("postgres_schema")
    return postgres_settings(url, schema)


@pytest.fixture
def ledger(settings: Settings, clock: FakeClock) -> Iterator[Ledger]:
    app = build_ledger(settings, clock=clock)
    yield app
    app.close()


@pytest.fixture
def kafka() -> Iterator[str]:
    """A Kafka-protocol broker with the upstream topics: a fresh Tansu, or KAFKA_BOOTSTRAP_SERVERS."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        create_topics(configured)
        yield configured
        return
    with TansuBroker() as broker:
        create_topics(broker.bootstrap_servers)
        yield broker.bootstrap_servers


@pytest.fixture
def pg_ledger(postgres_url: str, postgres_schema: str, clock: FakeClock) -> Iterator[Ledger]:
    """A ledger on PostgreSQL with the policy published."""
    app = build_ledger(postgres_settings(postgres_url, postgres_schema), clock=clock)
    publish_policy(app)
    yield app
    app.close()
