"""The small family of errors a user can meet."""

from __future__ import annotations


class SessionwatchError(Exception):
    """Base class: the message is one sentence meant for the user."""


class ConfigError(SessionwatchError):
    """A flag, environment variable or file given by the user is not usable."""


class StoreClosedError(SessionwatchError):
    """The store was used after `close()`."""


class PricesError(ConfigError):
    """A `--prices` file could not be read."""
