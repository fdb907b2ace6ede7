"""The dashboards' connection machine: Live, Reconnecting, Polling, Offline.

The same rules as the web page's ``frontend/connection.js``, as a machine
with no I/O and no clock of its own, so both can be checked against one
file of test vectors (``tests/vectors/feed.json``, read by
``tests/js/connection.test.mjs`` and ``tests/test_feed.py``)::

  connecting --open--> live --fail--> reconnecting (1, 2, 4, 8, 16 s)
       |                 ^                 | 5 failed attempts
       +--fail-----------+-----------------+
                         |                 v
                         +--open-- polling <-> offline   (GET /all every poll_s,
                                                          the stream retried every sse_retry_s)

A driver feeds it what happened (:meth:`FeedMachine.opened`, ``failed``,
``poll_answered``...) with the current time, fires its timers with
:meth:`FeedMachine.tick` and carries out the commands each call returns:

- ``Open()``: start a stream attempt (Last-Event-ID: the driver's last id),
- ``Close()``: drop the current stream attempt,
- ``Poll(number)``: one ``GET /all``; hand the answer back with its number,
- ``State(state, forced)``: show the state (``forced``: the attempt changed).

The stream's own silence watchdog and connect timeout are the follower's
(:mod:`sessionwatch.clients.follow`); the machine arms a connect timer too,
as the web page does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sessionwatch.clients.http import BACKOFF_S

__all__ = [
    "STATES",
    "Close",
    "Command",
    "FeedMachine",
    "FeedOptions",
    "Open",
    "Poll",
    "State",
]

FeedState = Literal["connecting", "live", "reconnecting", "polling", "offline", "unauthorized"]
STATES: tuple[FeedState, ...] = (
    "connecting",
    "live",
    "reconnecting",
    "polling",
    "offline",
    "unauthorized",
)
PollAnswer = Literal["ok", "error", "auth"]


@dataclass(frozen=True)
class FeedOptions:
    """The web page's timings (connection.js, DEFAULT_OPTIONS), in seconds."""

    backoff_s: tuple[float, ...] = BACKOFF_S
    poll_s: float = 3.0
    sse_retry_s: float = 15.0
    connect_timeout_s: float = 10.0
    #: After a rejected token: None stops the machine (the web page asks the
    #: user to sign in); a number tries the stream again that often (the
    #: Panel dashboard, whose token cannot change while it runs).
    auth_retry_s: float | None = None


@dataclass(frozen=True)
class Open:
    pass


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class Poll:
    number: int


@dataclass(frozen=True)
class State:
    state: FeedState
    forced: bool = False


Command = Open | Close | Poll | State


class FeedMachine:
    """See the module's docstring. Not thread-safe: one driver calls it."""

    def __init__(self, options: FeedOptions | None = None) -> None:
        self.options = options or FeedOptions()
        self.state: FeedState | None = None
        self.attempt = 0  # reconnect attempts since the stream last opened
        self.retry_in_s: float | None = None
        self.stopped = True
        self.streaming = False  # a stream attempt is open or opening
        self.fallback = False  # polling /all, the stream retried in the background
        self._polls = 0
        self._poll_pending: int | None = None  # the number of the poll whose answer counts
        self._timers: dict[str, float] = {}  # name -> due time
        self._out: list[Command] = []

    # -- inputs ------------------------------------------------------------------

    def start(self, now: float) -> list[Command]:
        if self.stopped:
            self.stopped = False
            self.attempt = 0
            self.fallback = False
            self._set_state("connecting")
            self._open(now)
        return self._flush()

    def stop(self) -> list[Command]:
        self._stop()
        return self._flush()

    def opened(self, now: float) -> list[Command]:
        """The stream answered 200 (or sent an event)."""
        if self.streaming and not self.stopped and self.state != "live":
            for name in ("connect", "poll", "retry"):
                self._timers.pop(name, None)
            self._poll_pending = None  # a poll in flight must not overwrite the stream
            self.attempt = 0
            self.fallback = False
            self._set_state("live")
        return self._flush()

    def failed(self, now: float) -> list[Command]:
        """The stream attempt failed or the open stream ended."""
        if self.stopped or not self.streaming:
            return self._flush()
        self._close()
        self._timers.pop("connect", None)
        if self.fallback:
            self._timers["retry"] = now + self.options.sse_retry_s  # polling goes on
            return self._flush()
        backoff = self.options.backoff_s
        if self.attempt < len(backoff):
            delay = backoff[self.attempt]
            self.attempt += 1
            self.retry_in_s = delay
            self._set_state("reconnecting", forced=True)
            self._timers["retry"] = now + delay
            return self._flush()
        # Out of attempts: poll /all, keep trying the stream in the background.
        self.fallback = True
        self.retry_in_s = self.options.sse_retry_s
        self._timers["retry"] = now + self.options.sse_retry_s
        self._poll(now)
        return self._flush()

    def rejected(self, now: float) -> list[Command]:
        """The stream or /all answered 401/403: the token was rejected."""
        if self.stopped:
            return self._flush()
        retry = self.options.auth_retry_s
        if retry is None:
            self._stop()
            self._set_state("unauthorized")
            return self._flush()
        self._close()
        self._timers.pop("connect", None)
        self._timers.pop("poll", None)
        self._poll_pending = None
        self.fallback = False
        self._set_state("unauthorized")
        self._timers["retry"] = now + retry
        return self._flush()

    def wants_poll(self, number: int) -> bool:
        """Whether the answer to ``Poll(number)`` still counts (apply its
        snapshot only then: a late one must not overwrite fresher events)."""
        return not self.stopped and self.fallback and number == self._poll_pending

    def poll_answered(self, now: float, number: int, answer: PollAnswer) -> list[Command]:
        """The answer to ``Poll(number)``; ignored unless it is still wanted."""
        if not self.wants_poll(number):
            return self._flush()
        self._poll_pending = None
        if answer == "auth":
            return self.rejected(now)
        if answer == "ok":
            came_back = self.state == "offline"
            self._set_state("polling")
            # The server answers again after an outage: it is likely back
            # for the stream too, so try now rather than at the next retry.
            if came_back and not self.streaming:
                again = self.retry_now(now)  # flushes: keep what it returns
                self._out.extend(again)
        else:
            self._set_state("offline")
        if self.fallback and not self.stopped:
            self._timers["poll"] = now + self.options.poll_s
        return self._flush()

    def retry_now(self, now: float) -> list[Command]:
        """Try the stream now instead of at the next scheduled attempt."""
        if not (self.stopped or self.state == "live" or self.streaming):
            self._open(now)
        return self._flush()

    def next_due(self) -> float | None:
        """When :meth:`tick` has something to do next, or None."""
        return min(self._timers.values(), default=None)

    def tick(self, now: float) -> list[Command]:
        """Fire every timer that is due at `now`, earliest first."""
        while True:
            due = [(at, name) for name, at in self._timers.items() if at <= now]
            if not due:
                return self._flush()
            at, name = min(due)
            del self._timers[name]
            if name == "retry":
                self._open(at)
            elif name == "poll":
                self._poll(at)
            else:  # connect: a stream that has not opened in time failed
                failed = self.failed(at)  # flushes: keep what it returns
                self._out.extend(failed)

    # -- helpers -------------------------------------------------------------------

    def _open(self, now: float) -> None:
        self._timers.pop("retry", None)
        self.retry_in_s = None
        if self.streaming:
            self._out.append(Close())
        self.streaming = True
        self._out.append(Open())
        self._timers["connect"] = now + self.options.connect_timeout_s

    def _stop(self) -> None:
        self.stopped = True
        self._poll_pending = None
        self._close()
        self._timers.clear()

    def _close(self) -> None:
        if self.streaming:
            self.streaming = False
            self._out.append(Close())

    def _poll(self, now: float) -> None:
        self._timers.pop("poll", None)
        if self.stopped or not self.fallback:
            return
        self._polls += 1
        self._poll_pending = self._polls
        self._out.append(Poll(self._polls))

    def _set_state(self, state: FeedState, forced: bool = False) -> None:
        if state != self.state or forced:
            self.state = state
            self._out.append(State(state, forced))

    def _flush(self) -> list[Command]:
        out, self._out = self._out, []
        return out
