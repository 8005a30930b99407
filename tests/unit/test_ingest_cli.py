"""``kiroku consume``'s options, as the consumer gets them."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from kiroku.cli import build_parser
from kiroku.ingest_cli import ingest_settings
from kiroku.settings import Settings, SettingsError


def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "KIROKU_DATA_DIR": str(tmp_path),
            "KIROKU_GROUP_ID": "kiroku-test",
            "KIROKU_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            "KIROKU_PSEUDONYM_KEY": base64.b64encode(os.urandom(32)).decode(),
        }
    )


def test_consume_passes_its_options_to_the_consumer(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["consume", "--batch", "500", "--session-timeout-ms", "6000", "--max-poll-interval-ms", "45000"]
    )
    made = ingest_settings(args, settings(tmp_path), "127.0.0.1:9092")
    assert made.bootstrap_servers == "127.0.0.1:9092"
    assert made.group_id == "kiroku-test"
    assert (made.max_poll_records, made.session_timeout_ms, made.heartbeat_interval_ms) == (500, 6000, 600)
    assert made.max_poll_interval_ms == 45_000


def test_consume_defaults_to_kafka_pythons_poll_interval(tmp_path: Path) -> None:
    made = ingest_settings(build_parser().parse_args(["consume"]), settings(tmp_path), "b:9092")
    assert (made.max_poll_records, made.session_timeout_ms, made.max_poll_interval_ms) == (
        2000,
        10_000,
        300_000,
    )


@pytest.mark.parametrize("option", ["--batch", "--session-timeout-ms", "--max-poll-interval-ms"])
def test_consume_refuses_an_option_that_is_not_positive(tmp_path: Path, option: str) -> None:
    args = build_parser().parse_args(["consume", option, "0"])
    with pytest.raises(SettingsError, match="must be positive"):
        ingest_settings(args, settings(tmp_path), "b:9092")
