"""The upstream topics and their dead-letter topics."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

UPSTREAM_TOPICS = ("acme.events", "registrar.events")


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


def create_topics(
    bootstrap_servers: str, topics: Sequence[str] = UPSTREAM_TOPICS, partitions: int = 3
) -> list[str]:
    """Creates each topic and its dead-letter topic unless it exists; returns those created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="kiroku-admin")
    try:
        existing = set(admin.list_topics())
        wanted = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        wanted += [
            NewTopic(dead_letter_topic(t), 1, 1) for t in topics if dead_letter_topic(t) not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile by someone else
                admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        admin.close()
