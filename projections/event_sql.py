"""SQL expressions for views applied inside PostgreSQL, over the event store's JSON.

The event store keeps each event's state as the JSON the library's transcoder
wrote (``convert_from(state, 'UTF8')::jsonb``): a UUID is
``{"_type_": "uuid_hex", "_data_": hex}``, a time
``{"_type_": "datetime_iso", "_data_": iso}``. These turn such values into the
text the Python views write (``projections.sql.utc_text`` and ``id_text``).
"""

from __future__ import annotations

from kiroku.persistence.recorders import event_type_sql

#: ``utc_text``'s format, for ``to_char``.
_UTC_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def utc(text: str) -> str:
    """An ISO time as ``utc_text`` writes it (fixed-width UTC); NULL stays NULL."""
    return f"to_char(({text})::timestamptz AT TIME ZONE 'UTC', '{_UTC_FORMAT}')"


def uuid(text: str) -> str:
    """A UUID held as hex, as ``id_text`` writes it (lower case, with hyphens); NULL stays NULL."""
    return f"({text})::uuid::text"


def page(events: str, kinds: str | None = None) -> str:
    """The events ``%(first)s`` to ``%(last)s``, each with its kind and its state parsed once (``s``).

    ``kinds``: an SQL list of the kinds (``Aggregate.Event``) to keep, or None for all.
    """
    kind = event_type_sql("e.topic")
    only = f" AND {kind} IN ({kinds})" if kinds else ""
    return f"""
    SELECT e.notification_id, j.kind, e.originator_id::text AS aggregate_id, j.s
    FROM {events} AS e
    -- OFFSET 0 keeps the parsed state one value, not an expression repeated at each use.
    CROSS JOIN LATERAL (
        SELECT convert_from(e.state, 'UTF8')::jsonb AS s, {kind} AS kind OFFSET 0
    ) AS j
    WHERE e.notification_id BETWEEN %(first)s AND %(last)s{only}"""
