"""``kiroku projections rebuild --processes N``: views shared out among processes, same rows as one."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from kiroku.bootstrap import build_ledger
from kiroku.rebuild import VIEW_WEIGHTS, rebuild_in_processes, share_out
from kiroku.settings import Settings
from projections.service import Projections
from tests.conftest import postgres_settings
from tests.helpers import T0, FakeClock, publish_policy
from tests.integration.test_projection_faults import rows
from tests.integration.test_projections import play


def test_views_are_shared_out_by_weight_and_none_is_left_out() -> None:
    groups = share_out(list(VIEW_WEIGHTS), 2)
    assert sorted(n for g in groups for n in g) == sorted(VIEW_WEIGHTS)
    weights = [sum(VIEW_WEIGHTS[n] for n in g) for g in groups]
    assert max(weights) - min(weights) <= 1
    assert share_out(["subjects"], 4) == [["subjects"]]


@pytest.mark.slow
def test_a_rebuild_in_two_processes_gives_the_rows_of_a_rebuild_in_one(
    postgres_url: str, postgres_schema: str
) -> None:
    settings = postgres_settings(postgres_url, postgres_schema)
    clock = FakeClock(T0)
    ledger = build_ledger(settings, clock=clock)
    publish_policy(ledger)
    for seed in range(3):
        play(ledger, clock, seed=900 + seed, stories=5, steps=25)
    projections = Projections(ledger, page_size=50)
    once = projections.rebuild_views()
    shared = rebuild_in_processes(settings, projections, list(projections.views), 2)
    assert set(shared) == set(projections.views)
    for name, generation in shared.items():
        active = projections.store.active(name)
        assert active is not None and active.generation == generation.generation
        assert generation.generation > once[name].generation
        assert rows(projections, name, generation) == rows(projections, name, once[name]), name
    ledger.close()


def test_the_rebuild_command_shares_views_out_and_names_unknown_ones(
    postgres_url: str, postgres_schema: str
) -> None:
    keys = {
        "KIROKU_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KIROKU_PSEUDONYM_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    env = {**os.environ, **keys, "DATABASE_URL": f"{postgres_url}?schema={postgres_schema}"}
    ledger = build_ledger(Settings.from_env(env))
    publish_policy(ledger)
    ledger.close()
    command = [sys.executable, "-m", "kiroku.cli", "projections", "rebuild"]

    def kiroku(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - the repository's own command
            [*command, *arguments], env=env, capture_output=True, text=True, check=False
        )

    done = kiroku("--processes", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    built = sorted(line.split(":")[0] for line in done.stdout.splitlines() if "built and active" in line)
    assert built == sorted(f"view {name}" for name in VIEW_WEIGHTS)
    wrong = kiroku("nosuchview")
    assert wrong.returncode == 2
    assert "no view nosuchview" in wrong.stderr
