"""The buffered view writer leaves the same rows as one that writes each operation at once."""

from __future__ import annotations

import random
from typing import Any

import pytest

from domain.application import Ledger
from projections.runner import view_store_for
from projections.sql import Rows, Table, Writer, create_statements
from projections.store import ViewStore

TABLE = Table(
    "things",
    [("a", "text"), ("b", "text"), ("c", "int"), ("d", "text")],
    ["a", "b"],
    indexes=[["d"]],
)


def random_operations(chance: random.Random, count: int) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Operations on a few keys, so that they often meet: (kind, row or where, changes)."""
    operations: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    inserted: set[tuple[str, str]] = set()
    for number in range(count):
        a, b = chance.choice("xyz"), chance.choice("pq")
        whole = {"a": a, "b": b, "c": number, "d": chance.choice(["m", "n", None])}
        pick = chance.random()
        if pick < 0.35:
            operations.append(("upsert", whole, {}))
        elif pick < 0.45:
            operations.append(("upsert", {"a": a, "b": b, "c": number}, {}))  # not every column
        elif pick < 0.65:
            operations.append(("delete", {"a": a, "b": b}, {}))  # by primary key
        elif pick < 0.72:
            operations.append(("delete", {"a": a}, {}))  # not by primary key
        elif pick < 0.85:
            operations.append(("update", {"a": a, "b": b}, {"c": -number}))
        elif pick < 0.93:
            fresh = (f"new{number}", b)
            inserted.add(fresh)
            operations.append(("insert", {**whole, "a": fresh[0]}, {}))
        else:
            operations.append(("select", {"b": b}, {}))
    return operations


def apply(writer: Writer, operations: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> list[Any]:
    seen: list[Any] = []
    for kind, row, changes in operations:
        if kind == "upsert":
            writer.upsert("things", row, key=["a", "b"])
        elif kind == "delete":
            writer.delete("things", row)
        elif kind == "update":
            writer.update("things", row, changes)
        elif kind == "insert":
            writer.insert("things", row)
        else:
            seen.append(writer.select("things", row, order_by="a, b"))
    writer.flush()
    seen.append(writer.select("things", {}, order_by="a, b"))
    return seen


def make_table(store: ViewStore, bare: str) -> dict[str, str]:
    with store.transaction() as cursor:
        for statement in create_statements(TABLE, store.qualified(bare), bare, store.dialect):
            cursor.execute(statement)
    return {"things": store.qualified(bare)}


@pytest.mark.parametrize("seed", range(20))
def test_held_operations_leave_the_rows_that_direct_ones_do(ledger: Ledger, seed: int) -> None:
    store = view_store_for(ledger)
    operations = random_operations(random.Random(seed), 200)
    results = []
    for buffered in (False, True):
        names = make_table(store, f"writer_{seed}_{'held' if buffered else 'direct'}")
        with store.transaction() as cursor:
            writer = Writer(cursor, store.dialect, names, buffered=buffered, tables=[TABLE])
            results.append(apply(writer, operations))
    direct, held = results
    assert held == direct
    assert direct[-1], "the operations should leave some rows"


def test_a_condition_on_the_rows_of_other_tables_selects_what_python_would(ledger: Ledger) -> None:
    store = view_store_for(ledger)
    names = {
        "things": make_table(store, "in_any_things")["things"],
        "others": make_table(store, "in_any_others")["things"],
        "links": make_table(store, "in_any_links")["things"],
    }
    things = [{"a": f"t{n}", "b": "x", "c": n, "d": f"d{n % 3}"} for n in range(12)]
    others = [{"a": f"t{n}", "b": "o", "c": n, "d": "mine" if n % 4 == 0 else "theirs"} for n in range(12)]
    links = [{"a": f"k{n}", "b": "l", "c": n, "d": f"t{n + 1}"} for n in range(0, 12, 5)]
    with store.transaction() as cursor:
        writer = Writer(cursor, store.dialect, names)
        for table, rows in (("things", things), ("others", others), ("links", links)):
            for row in rows:
                writer.insert(table, row)
        linked_to = {"k0", "k10"}
        conditions = [
            (
                "a",
                "in_any",
                [
                    Rows("others", "a", {"d": "mine"}),
                    Rows("links", "d", {}, [("a", "in", sorted(linked_to))]),
                    Rows("others", "a", {}, [("a", "in", [])]),  # can match nothing: left out
                ],
            )
        ]
        found = writer.select("things", {"b": "x"}, order_by="c", conditions=conditions)
        nothing = writer.select(
            "things", {}, conditions=[("a", "in_any", [Rows("others", "a", {}, [("a", "in", [])])])]
        )
    mine = {o["a"] for o in others if o["d"] == "mine"}
    through_links = {link["d"] for link in links if link["a"] in linked_to}
    assert [r["a"] for r in found] == [t["a"] for t in things if t["a"] in mine | through_links]
    assert [r["a"] for r in found] == ["t0", "t1", "t4", "t8", "t11"]
    assert nothing == []
