"""Advisory lock keys: 64 bits, stable, one per thing locked."""

from __future__ import annotations

from kiroku.persistence.advisory import advisory_key


def test_a_key_is_a_signed_bigint_that_depends_on_every_part() -> None:
    keys = {
        advisory_key(schema, "kiroku-view", view, str(generation))
        for schema in ("public", "kiroku_a", "kiroku_b")
        for view in ("subjects", "certificates", "audit_trail")
        for generation in range(1, 200)
    }
    assert len(keys) == 3 * 3 * 199
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert any(key < 0 for key in keys) and any(key >= 2**32 for key in keys), "all 64 bits are used"
    assert advisory_key("kiroku-ddl", "public") == advisory_key("kiroku-ddl", "public")
