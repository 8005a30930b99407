"""The kind of a stored event read in PostgreSQL is the one Python reads from its topic."""

from __future__ import annotations

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from kiroku.persistence.recorders import event_type_of, event_type_sql

# Topics as the library writes them ("module:Aggregate.Event"), and anything else a row could hold.
_TEXT = st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"])
_PARTS = st.text(alphabet=_TEXT, max_size=12)
TOPICS = st.one_of(
    st.builds(lambda m, e: f"{m}:{e}", _PARTS, _PARTS),
    st.lists(_PARTS, max_size=4).map(":".join),
    st.sampled_from(["", ":", "::", "domain.subject:DataSubject.Registered", "no colon"]),
)


def test_the_sql_kind_of_a_topic_is_pythons(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:

        @settings(max_examples=300, deadline=None)
        @given(topics=st.lists(TOPICS, min_size=1, max_size=20))
        def same(topics: list[str]) -> None:
            row = connection.execute(
                f"SELECT array_agg({event_type_sql('t')} ORDER BY n) FROM unnest(%s::text[]) "
                "WITH ORDINALITY AS u(t, n)",
                (topics,),
            ).fetchone()
            assert row is not None
            assert row[0] == [event_type_of(t) for t in topics]

        same()
