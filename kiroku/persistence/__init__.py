"""Adapters for the event store: recorders that shred keys atomically, and the key ring."""
