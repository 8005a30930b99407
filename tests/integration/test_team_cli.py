"""The terminal commands of the compliance team, on the store the printed demo leaves behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiroku.cli import main


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    for name in ("DATABASE_URL", "KIROKU_DATABASE_URL", "KIROKU_MASTER_KEY", "KIROKU_PSEUDONYM_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KIROKU_DATA_DIR", str(tmp_path))
    assert main(["demo", "--keep"]) == 0
    capsys.readouterr()
    return tmp_path


def test_subject_shows_items_in_a_table_and_records_the_access(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["subject", "--email", "taro.yamada@example.co.jp"]) == 0
    out = capsys.readouterr().out
    assert "山田 太郎" in out and "value" in out.splitlines()[0]
    assert main(["audit", "--event-type", "AccessRecord.Recorded", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["clause"] for r in rows] == ["§8, §10"]
    assert rows[0]["actor"].startswith("cli:")


def test_an_erased_subject_shows_only_its_state(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["subject", "--name", "Bob Jones"]) == 1  # erased: the blind index no longer finds him
    assert "no data subject found" in capsys.readouterr().out


def test_ledger_as_a_table_json_and_csv(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", "--category", "4.4", "--json"]) == 0
    [ct] = json.loads(capsys.readouterr().out)
    assert ct["foreign_recipient"] is True and ct["country"] == "US"
    assert main(["ledger", "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("provision_id,") and len(lines) >= 4
    assert main(["ledger", "--foreign-only"]) == 0
    assert "US" in capsys.readouterr().out


def test_a_disclosure_from_the_terminal(
    store: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["disclosure", "open", "--email", "taro.yamada@example.co.jp"]) == 0
    request_id = capsys.readouterr().out.split(": ")[1].split(" ")[0]
    assert (
        main(["disclosure", "fulfil", request_id, "--out", str(tmp_path / "p.json")]) == 4
    )  # identity first (§7)
    assert "§7" in capsys.readouterr().err
    assert main(["disclosure", "request-verification", request_id, "--method", "documents"]) == 0
    assert main(["disclosure", "verified", request_id, "--evidence", "case-9"]) == 0
    assert main(["disclosure", "fulfil", request_id, "--out", str(tmp_path / "p.json")]) == 0
    package = json.loads((tmp_path / "p.json").read_text())
    assert any(r["items"].get("name") == "山田 太郎" for r in package["records"])
    capsys.readouterr()
    assert main(["disclosure", "list", "--state", "all", "--json"]) == 0
    assert any(
        r["request_id"] == request_id and r["state"] == "fulfilled"
        for r in json.loads(capsys.readouterr().out)
    )


def test_certificate_and_audit_tables(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--event-type", "CertificateRecord.Collected", "--json"]) == 0
    collected = json.loads(capsys.readouterr().out)
    assert collected and all(r["clause"] == "§5" for r in collected)
    record_id = collected[0]["certificate_record_id"]
    assert main(["certificate", record_id]) == 0
    out = capsys.readouterr().out
    assert "common_name" in out and "status" in out
