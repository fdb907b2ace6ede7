"""Current sessions, diffs into events, the event log and the fan-out to subscribers."""

from sessionwatch.hub.core import Filter, Hub

__all__ = ["Filter", "Hub"]
