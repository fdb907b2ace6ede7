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


class ApiError(SessionwatchError):
    """A request the API refuses: its HTTP ``status`` and the sentence sent
    as ``{"error": ...}``. The server raises it; a client that reads such an
    answer raises it too (:class:`sessionwatch.clients.http.ApiError` is a
    subclass), with the same status and sentence."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status = status
        self.sentence = sentence


class BadRequest(ApiError):
    """400: the request cannot be used as sent."""

    def __init__(self, sentence: str) -> None:
        super().__init__(400, sentence)


class IdTaken(ApiError):
    """409: a tracker tried to register an id a Claude session holds."""

    def __init__(self, sid: str) -> None:
        super().__init__(409, "that id belongs to a Claude session")
        self.sid = sid
