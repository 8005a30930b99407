"""The ``kiroku`` command as a user runs it."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from api.auth import TokenRegistry
from kiroku.cli import main


@pytest.fixture(autouse=True)
def _no_configured_store(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "KIROKU_DATABASE_URL", "KIROKU_MASTER_KEY", "KIROKU_PSEUDONYM_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_run_walks_the_lifecycle_on_a_fresh_embedded_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "on SQLite at" in out
    for clause in ("(§3)", "(§6)", "(§4.3)", "(§11)", "(§7)", "(APPI Art. 35)"):
        assert clause in out, f"the walk shows no refusal citing {clause}"
    assert "his items now read: [erased], [erased]" in out
    assert "(duplicate: nothing changed)" in out
    assert "Bob Jones" not in out and "bob@example.org" not in out


def test_run_twice_on_one_postgres_store_tells_the_story_twice(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
    postgres_schema: str,
) -> None:
    monkeypatch.setenv("KIROKU_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("KIROKU_PSEUDONYM_KEY", base64.b64encode(os.urandom(32)).decode())
    url = f"{postgres_url}?schema={postgres_schema}"
    assert main(["demo", "--database-url", url]) == 0
    assert main(["demo", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "already published: 2018-04, 2024-04" in out
    assert out.count("Bob's record still loads; his items now read: [erased], [erased]") == 2


def test_a_bad_setting_stops_the_program_and_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--database-url", "mysql://somewhere/db"]) == 2
    assert "KIROKU_DATABASE_URL" in capsys.readouterr().err


def test_an_unreachable_database_is_reported_without_its_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIROKU_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("KIROKU_PSEUDONYM_KEY", base64.b64encode(os.urandom(32)).decode())
    assert main(["demo", "--database-url", "postgresql://u:hunter2@127.0.0.1:1/db"]) == 3
    err = capsys.readouterr().err
    assert "cannot reach PostgreSQL u@127.0.0.1:1/db" in err
    assert "hunter2" not in err


def test_a_token_is_shown_once_and_stored_only_hashed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KIROKU_DATA_DIR", str(tmp_path))
    assert main(["tokens", "add", "sato", "officer"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    stored = (tmp_path / "tokens.json").read_text()
    assert token.startswith("kiroku_") and token not in stored
    principal = TokenRegistry.load(tmp_path / "tokens.json").principal(token)
    assert principal is not None and (principal.name, principal.role) == ("sato", "officer")
    assert (tmp_path / "tokens.json").stat().st_mode & 0o077 == 0
