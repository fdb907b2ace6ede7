"""Current sessions, diffs into events, the event log and the fan-out to subscribers."""

from sessionwatch.hub.core import Hub
from sessionwatch.hub.events import Filter

__all__ = ["Filter", "Hub"]
