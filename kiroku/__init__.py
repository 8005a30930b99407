"""kiroku (記録): an event-sourced data-lifecycle service for certificate information."""

__version__ = "0.1.0"
