"""Generations no one reads or builds again: a failed rebuild drops its own, ``prune`` the rest."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from domain.application import Ledger
from kiroku.bootstrap import build_ledger
from kiroku.cli import main
from kiroku.settings import Settings
from projections.runner import ViewRunner, locks_of
from projections.service import Projections, Pruned
from projections.sql import Writer
from projections.store import GENERATIONS, Generation, PostgresViewStore, ViewStopped, ViewStore
from projections.view import Notified, View
from tests.conftest import postgres_environ
from tests.helpers import FakeClock, publish_policy
from tests.integration.proxy import Proxy
from tests.integration.test_projection_faults import rows
from tests.integration.test_projections import play


class Interrupted(Exception):
    """Stands for whatever ends a rebuild half-way (the database gone, an operator's Ctrl-C)."""


def tables(store: ViewStore, view: str) -> set[str]:
    """The tables of a view's generations that exist now, unqualified."""
    with store.reading() as cursor:
        if isinstance(store, PostgresViewStore):
            cursor.execute(
                "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = %s",
                (store.datastore.schema,),
            )
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        names = {row["name"] for row in cursor.fetchall()}
    return {name for name in names if name.startswith(f"kv_{view}_g")}


def numbers(store: ViewStore, view: str) -> dict[int, str]:
    return {g.generation: g.state for g in store.generations(view)}


def generation_tables(projections: Projections, view: str, generation: int) -> set[str]:
    return {f"kv_{view}_g{generation}_{t.name}" for t in projections.views[view].tables}


def caught_up(
    ledger: Ledger,
    clock: FakeClock,
    seeds: Iterable[int],
    *,
    stories: int,
    steps: int = 25,
    page_size: int = 1000,
) -> Projections:
    """A history played with these seeds (``play``), and every view built from it."""
    for seed in seeds:
        play(ledger, clock, seed=seed, stories=stories, steps=steps)
    projections = Projections(ledger, page_size=page_size)
    projections.catch_up()
    return projections


def built(ledger: Ledger, clock: FakeClock) -> Projections:
    publish_policy(ledger)
    return caught_up(ledger, clock, [71], stories=3, page_size=25)


def test_a_rebuild_that_fails_drops_the_generations_it_left_unfinished(
    ledger: Ledger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kiroku.projections")
    projections = built(ledger, clock)
    before = {name: rows(projections, name, Generation(name, 1, 0, "active")) for name in projections.views}
    pages: list[int] = []

    def interrupt_after_two_pages(done: int, head: int, rate: float) -> None:
        pages.append(done)
        if len(pages) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        projections.rebuild_views(None, interrupt_after_two_pages)
    assert len(pages) == 2 and pages[-1] < (ledger.recorder.max_notification_id() or 0)
    for name in projections.views:
        assert numbers(projections.store, name) == {1: "active"}, name
        assert tables(projections.store, name) == generation_tables(projections, name, 1), name
        assert projections.store.position(Generation(name, 2, 0, "building")) is None, name
        assert rows(projections, name, Generation(name, 1, 0, "active")) == before[name]
    dropped = [r.getMessage() for r in caplog.records if "left unfinished, is dropped" in r.getMessage()]
    assert len(dropped) == len(projections.views)
    # The next rebuild starts clean (it takes the dropped generation's number again).
    rebuilt = projections.rebuild_views()
    for name, generation in rebuilt.items():
        assert generation.generation == 2
        assert rows(projections, name, generation) == before[name], name


def test_a_view_that_stops_in_a_rebuild_leaves_no_generation_behind(ledger: Ledger, clock: FakeClock) -> None:
    projections = built(ledger, clock)
    name = "certificates"
    view = projections.views[name]
    original = view.apply
    applied: list[int] = []

    def refuse_the_fifth(notified: Notified, rows: Writer) -> None:
        if len(applied) < 5:
            applied.append(notified.notification_id)
        if len(applied) == 5 and notified.notification_id == applied[4]:
            raise ValueError("cannot apply")
        original(notified, rows)

    view.apply = refuse_the_fifth  # type: ignore[method-assign]
    with pytest.raises(ViewStopped, match=r"view certificates \(generation 2\) stopped at ") as stopped:
        projections.rebuild_views([name, "requests"])
    assert f"stopped at notification {applied[4]} " in str(stopped.value)
    assert numbers(projections.store, name) == {1: "active"}
    assert tables(projections.store, name) == generation_tables(projections, name, 1)
    assert numbers(projections.store, "requests") == {1: "retired", 2: "active"}, "the other view was rebuilt"


def test_a_rebuild_locks_each_generation_before_it_makes_it(ledger: Ledger, clock: FakeClock) -> None:
    """No moment in which a runner (or prune) could find a rebuild's new generation unlocked."""
    projections = built(ledger, clock)
    store = projections.store
    made_unlocked: list[Generation] = []
    original = store.new_generation

    def checked(view: View, *, only: Any = None, number: int | None = None) -> Generation:
        assert number is not None, "a rebuild names the generation it has locked"
        with locks_of(store, [Generation(view.name, number, view.schema, "building")]) as got:
            made_unlocked.extend(got)  # taken here: nobody held it
        return original(view, only=only, number=number)

    store.new_generation = checked  # type: ignore[method-assign]
    rebuilt = projections.rebuild_views(["certificates", "requests"])
    assert {name: g.generation for name, g in rebuilt.items()} == {"certificates": 2, "requests": 2}
    assert made_unlocked == []


def test_prune_drops_what_no_one_reads_or_builds_and_keeps_the_rest(ledger: Ledger, clock: FakeClock) -> None:
    projections = built(ledger, clock)
    store, name = projections.store, "certificates"
    view = projections.views[name]
    rebuilt = projections.rebuild(name)  # generation 2 active, 1 retired just now
    # Generation 3: what a rebuild killed half-way leaves (building, a page applied, no lock held).
    killed = projections.new_generation(name)
    ViewRunner(ledger, store, view, killed, page_size=10).run_once()
    assert store.position(killed) == 10
    # Generation 4: a rebuild at work (building, its lock held).
    at_work = projections.new_generation(name)
    serving = rows(projections, name, rebuilt)

    with locks_of(store, [at_work]) as held:
        assert held == [at_work]
        looked_at = projections.prune([name], retired_for=300, dry_run=True)
        assert looked_at == [
            Pruned(name, 1, "retired", False, looked_at[0].reason),
            Pruned(name, 3, "building", True, "left unfinished"),
            Pruned(name, 4, "building", False, "its lock is held (a rebuild or a runner is on it)"),
        ]
        assert looked_at[0].reason.startswith("retired at ") and "under 300 s ago" in looked_at[0].reason
        assert numbers(store, name) == {1: "retired", 2: "active", 3: "building", 4: "building"}, "a dry run"
        assert tables(store, name) == set().union(
            *(generation_tables(projections, name, n) for n in (1, 2, 3, 4))
        )

        looked_at = projections.prune([name], retired_for=0)
        assert [(p.generation, p.dropped) for p in looked_at] == [(1, True), (3, True), (4, False)]
        assert numbers(store, name) == {2: "active", 4: "building"}
        assert tables(store, name) == generation_tables(projections, name, 2) | generation_tables(
            projections, name, 4
        )
        assert store.position(killed) is None, "the dropped generation's tracking record went with it"
        assert (
            store.position(at_work) is None
            and store.position(rebuilt) == ledger.recorder.max_notification_id()
        )

    # The rebuild at work is gone (killed too): now its generation goes, and readers never noticed.
    assert [(p.generation, p.dropped) for p in projections.prune([name], retired_for=0)] == [(4, True)]
    assert numbers(store, name) == {2: "active"}
    assert tables(store, name) == generation_tables(projections, name, 2)
    assert rows(projections, name, rebuilt) == serving
    assert projections.prune([name], retired_for=0) == []


def test_a_generation_of_a_view_with_no_active_one_is_kept(ledger: Ledger, clock: FakeClock) -> None:
    publish_policy(ledger)
    play(ledger, clock, seed=72, stories=1)
    projections = Projections(ledger, page_size=10)
    name = "requests"
    building = projections.new_generation(name)
    ViewRunner(ledger, projections.store, projections.views[name], building, page_size=10).run_once()
    looked_at = projections.prune([name], retired_for=0)
    assert looked_at == [
        Pruned(name, 1, "building", False, "its view has no active generation; runners build it")
    ]
    assert numbers(projections.store, name) == {1: "building"}
    assert projections.store.position(building) == 10


def test_a_store_made_before_retired_times_gains_the_column_and_its_retired_count_as_old(
    ledger: Ledger, clock: FakeClock
) -> None:
    projections = built(ledger, clock)
    name = "certificates"
    projections.rebuild(name)
    store = projections.store
    with store.transaction() as cursor:
        cursor.execute(f"ALTER TABLE {store.qualified(GENERATIONS.name)} DROP COLUMN retired_at")
    again = Projections(ledger)  # opening the store again adds the column
    assert [(g.generation, g.state, g.retired_at) for g in again.store.generations(name)] == [
        (1, "retired", None),
        (2, "active", None),
    ]
    assert [(p.generation, p.dropped) for p in again.prune([name], retired_for=300)] == [(1, True)]
    again.rebuild(name)
    retired = again.store.generations(name)[0]
    assert (retired.generation, retired.state) == (2, "retired") and retired.retired_at is not None
    assert [p.dropped for p in again.prune([name], retired_for=300)] == [False]


def test_the_prune_command_says_what_it_drops_and_keeps(
    cli_store: Ledger, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    projections = caught_up(cli_store, clock, [73], stories=2)
    projections.rebuild("certificates")
    capsys.readouterr()

    assert main(["projections", "prune", "certificates", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("view certificates: generation 1 (retired): kept: retired at ")
    assert main(["projections", "prune", "--retired-for", "0", "--dry-run", "--json"]) == 0
    would = json.loads(capsys.readouterr().out)
    assert {(p["name"], p["generation"], p["dropped"]) for p in would} == {("certificates", 1, True)}
    assert main(["projections", "prune", "--retired-for", "0"]) == 0
    assert capsys.readouterr().out == "view certificates: generation 1 (retired): dropped (retired)\n"
    assert [g.generation for g in projections.store.generations("certificates")] == [2]
    assert main(["projections", "prune"]) == 0
    assert capsys.readouterr().out == "no retired or unfinished generation\n"

    assert main(["projections", "prune", "certificate"]) == 2
    assert "no view certificate; the views are " in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["projections", "prune", "--retired-for", "-1"])
    assert refused.value.code == 2
    assert "'-1' is not a number of seconds (0 or more)" in capsys.readouterr().err


def rebuild_under_way(
    ledger: Ledger, clock: FakeClock, seeds: range, environ: dict[str, str], *options: str
) -> tuple[Projections, subprocess.Popen[str]]:
    """A history played with these seeds, its views built; then `kiroku projections rebuild` in a
    process (its standard error piped), once it has applied a page of generation 2."""
    publish_policy(ledger)
    projections = caught_up(ledger, clock, seeds, stories=8, steps=30)
    command = [sys.executable, "-m", "kiroku.cli", "projections", "--page-size", "5", "rebuild", *options]
    process = subprocess.Popen(command, env=environ, stderr=subprocess.PIPE, text=True)  # noqa: S603
    deadline = time.monotonic() + 120
    while projections.store.position(Generation("certificates", 2, 0, "building")) is None:
        assert process.poll() is None, "the rebuild ended before it was interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return projections, process


@pytest.mark.slow
def test_a_rebuild_killed_half_way_is_seen_as_building_and_pruned(
    postgres_url: str,
    postgres_schema: str,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The process killed outright drops nothing; its generations show as building until pruned."""
    environ = postgres_environ(postgres_url, postgres_schema)
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("KIROKU_DATABASE_URL", raising=False)
    ledger = build_ledger(Settings.from_env(environ), clock=clock)
    projections, process = rebuild_under_way(ledger, clock, range(80, 84), dict(os.environ), "--progress")
    head = ledger.recorder.max_notification_id() or 0
    process.kill()
    process.communicate(timeout=30)
    left = {name: numbers(projections.store, name) for name in projections.views}
    assert all(states == {1: "active", 2: "building"} for states in left.values()), left
    assert (projections.store.position(Generation("certificates", 2, 0, "building")) or 0) < head

    capsys.readouterr()
    assert main(["projections", "prune"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(out) == sorted(
        f"view {name}: generation 2 (building): dropped (left unfinished)" for name in projections.views
    )
    for name in projections.views:
        assert numbers(projections.store, name) == {1: "active"}
        assert tables(projections.store, name) == generation_tables(projections, name, 1)
    ledger.close()


def test_a_rebuild_that_finds_another_starting_says_so_and_makes_nothing(
    cli_store: Ledger, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    projections = caught_up(cli_store, clock, [74], stories=1)
    store = projections.store
    planned = Generation("certificates", store.next_generation_number("certificates"), 0, "building")
    capsys.readouterr()
    with locks_of(store, [planned]) as held:  # as another rebuild holds it, about to make it
        assert held == [planned]
        assert main(["projections", "rebuild", "certificates"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "kiroku projections rebuild: view certificates generation 2 is locked: another rebuild of the view "
        "is starting; nothing was rebuilt\n"
    )
    assert numbers(store, "certificates") == {1: "active"}
    assert tables(store, "certificates") == generation_tables(projections, "certificates", 1)


def test_a_generation_made_again_under_a_dropped_ones_number_is_not_dropped_for_it(
    ledger: Ledger, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two prunes look at a view at once; the first drops a rebuild's leftover, a rebuild makes a new
    generation under its number and activates it; the second, going by what it looked at, must not
    drop the new one."""
    projections = built(ledger, clock)
    store, name = projections.store, "certificates"
    view = projections.views[name]
    leftover = projections.new_generation(name)  # generation 2, building, no lock: a dead rebuild's
    looked_at = store.generations(name)
    assert [(g.generation, g.state) for g in looked_at] == [(1, "active"), (2, "building")]

    assert [(p.generation, p.dropped) for p in projections.prune([name], retired_for=0)] == [(2, True)]
    remade = projections.rebuild(name)
    assert remade.generation == leftover.generation == 2
    serving = rows(projections, name, remade)

    assert not store.drop_generation(view, leftover), "no longer the generation looked at"
    stale = {name: looked_at}
    # The second prune: what it looks at is what the store held before the first one.
    monkeypatch.setattr(store, "generations", lambda n: stale.pop(n, None) or ViewStore.generations(store, n))
    assert projections.prune([name], retired_for=0) == [
        Pruned(name, 2, "building", False, "it changed since it was looked at")
    ]
    monkeypatch.undo()
    assert numbers(store, name) == {1: "retired", 2: "active"}
    assert tables(store, name) == generation_tables(projections, name, 1) | generation_tables(
        projections, name, 2
    )
    assert rows(projections, name, remade) == serving

    # A retired generation is dropped only as retired when it was looked at.
    retired = next(g for g in store.generations(name) if g.state == "retired")
    assert not store.drop_generation(
        view, Generation(name, 1, retired.schema_version, "retired", "2000-01-01")
    )
    assert store.drop_generation(view, retired)
    assert numbers(store, name) == {2: "active"}


def test_running_views_prune_their_generations_as_often_as_asked(
    ledger: Ledger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    projections = built(ledger, clock)
    store, name = projections.store, "certificates"
    rebuilt = projections.rebuild(name)  # generation 1 retired now, 2 active
    projections.new_generation(name)  # 3: a dead rebuild's leftover
    serving = rows(projections, name, rebuilt)
    caplog.set_level(logging.INFO, logger="kiroku.projections")

    def running(**kwargs: Any) -> None:
        projections.stop_event.clear()
        thread = threading.Thread(target=projections.run, args=([name],), kwargs=kwargs)
        thread.start()
        try:
            deadline = time.monotonic() + 1.0
            while numbers(store, name) != {2: "active"} and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            projections.stop()
            thread.join(10)
        assert not thread.is_alive()

    running(prune_every=0.0, retired_for=0)
    assert numbers(store, name) == {1: "retired", 2: "active", 3: "building"}, "never, unless asked"
    running(prune_every=0.05, retired_for=3600)
    assert numbers(store, name) == {1: "retired", 2: "active"}, "the leftover, not the recently retired"

    real_prune = projections.prune
    calls: list[float] = []

    def failing_once(*args: Any, **kwargs: Any) -> list[Pruned]:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise OperationalError("the database went away")
        return real_prune(*args, **kwargs)

    projections.prune = failing_once  # type: ignore[method-assign]
    running(prune_every=0.05, retired_for=0)
    assert len(calls) >= 2, "the failed round did not end the pruning"
    assert numbers(store, name) == {2: "active"}
    assert tables(store, name) == generation_tables(projections, name, 2)
    assert rows(projections, name, rebuilt) == serving
    said = [r.getMessage() for r in caplog.records if r.name == "kiroku.projections"]
    assert "view certificates: generation 3 (building) dropped: left unfinished" in said
    assert "view certificates: generation 1 (retired) dropped: retired" in said
    assert "pruning the views' generations failed (OperationalError); tried again in 0.05 s" in said


def test_the_run_command_prunes_on_its_schedule(cli_store: Ledger, clock: FakeClock) -> None:
    projections = caught_up(cli_store, clock, [75], stories=1)
    projections.rebuild("certificates")
    command = [sys.executable, "-m", "kiroku.cli", "projections", "run", "certificates"]
    process = subprocess.Popen(  # noqa: S603 - this repository's command
        [*command, "--prune-every", "0.2", "--retired-for", "0"],
        env=dict(os.environ),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while numbers(projections.store, "certificates") != {2: "active"} and time.monotonic() < deadline:
            assert process.poll() is None, "the runner ended by itself"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert numbers(projections.store, "certificates") == {2: "active"}
    assert "view certificates: generation 1 (retired) dropped: retired" in err
    with pytest.raises(SystemExit) as refused:
        main([*command[3:], "--prune-every", "-5"])
    assert refused.value.code == 2


@pytest.mark.slow
def test_a_rebuild_that_loses_the_database_says_so_in_a_line_and_prune_drops_what_it_left(
    proxied_environ: tuple[dict[str, str], dict[str, str], Proxy], clock: FakeClock
) -> None:
    direct, through_proxy, proxy = proxied_environ
    ledger = build_ledger(Settings.from_env(direct), clock=clock)
    environ = {k: v for k, v in os.environ.items() if k != "KIROKU_DATABASE_URL"}
    projections, process = rebuild_under_way(ledger, clock, range(90, 93), {**environ, **through_proxy})
    try:
        proxy.cut()
        started = time.monotonic()
        _, err = process.communicate(timeout=300)
        gave_up_after = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 3, err
    assert "kiroku: the database became unreachable (" in err and "); the command stopped" in err
    assert "Traceback" not in err
    assert gave_up_after < 180
    left = {name: numbers(projections.store, name) for name in projections.views}
    assert all(states == {1: "active", 2: "building"} for states in left.values()), left

    proxy.restore()
    looked_at = projections.prune()
    assert {(p.name, p.generation, p.dropped) for p in looked_at} == {(n, 2, True) for n in projections.views}
    ledger.close()
