"""``kiroku projections run`` killed at random points and restarted ends with exactly the rebuilt views."""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from domain.application import Ledger
from kiroku.bootstrap import build_ledger
from kiroku.settings import Settings
from projections.service import Projections
from projections.sql import Writer
from projections.store import Generation
from tests.helpers import T0, FakeClock, publish_policy
from tests.integration.test_projections import play


def rows(projections: Projections, name: str, generation: Generation) -> dict[str, list[dict[str, Any]]]:
    view = projections.views[name]
    names = projections.store.table_names(view, generation.generation)
    with projections.store.reading() as cursor:
        writer = Writer(cursor, projections.store.dialect, names)
        return {t.name: writer.select(t.name, {}, order_by=", ".join(t.primary_key)) for t in view.tables}


def caught_up(projections: Projections) -> bool:
    return all(s.state == "active" and s.lag == 0 for s in projections.status())


def applied_and_left(projections: Projections) -> tuple[int, int]:
    """Events applied over every view generation being kept up, and events still to apply."""
    status = projections.status()
    return sum(s.position for s in status), sum(s.lag for s in status)


def kill_mid_build(projections: Projections, chance: random.Random, process: subprocess.Popen[bytes]) -> bool:
    """Kills the process once it has applied a random share of what is left; False if it caught up first.

    By progress, not by time: the views build in a second or two, so a kill
    after a fixed pause would often come after the end.
    """
    start, left = applied_and_left(projections)
    target = start + max(1, int(left * chance.uniform(0.1, 0.3)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if caught_up(projections):
            return False
        if applied_and_left(projections)[0] >= target:
            break
        time.sleep(0.01)
    process.kill()
    process.wait(30)
    return True


@pytest.mark.slow
def test_a_projection_process_killed_and_restarted_ends_as_the_rebuild(
    postgres_url: str, postgres_schema: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"{postgres_url}?schema={postgres_schema}",
        "KIROKU_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KIROKU_PSEUDONYM_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    clock = FakeClock(T0)
    ledger: Ledger = build_ledger(Settings.from_env(env), clock=clock)
    publish_policy(ledger)
    for seed in range(6):
        play(ledger, clock, seed=500 + seed, stories=8, steps=30)
    projections = Projections(ledger)
    command = [
        sys.executable,
        "-m",
        "kiroku.cli",
        "projections",
        "--page-size",
        "15",
        "--poll-interval",
        "0.2",
        "run",
    ]
    chance = random.Random(7)
    kills = 0
    log = (tmp_path / "projections.log").open("ab")
    for _ in range(4):
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        if not kill_mid_build(projections, chance, process):
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            break
        kills += 1
    else:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + 300
        while not caught_up(projections) and time.monotonic() < deadline:
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert kills >= 2, "the process should have been killed mid-build several times"
    assert caught_up(projections)
    for name in projections.views:
        active = projections.store.active(name)
        assert active is not None
        survived = rows(projections, name, active)
        rebuilt = projections.rebuild(name)
        assert rows(projections, name, rebuilt) == survived, f"view {name} differs from its rebuild"
    ledger.close()
