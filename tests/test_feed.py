"""clients/feed.py against the fallback specification the web page shares
(tests/vectors/feed.json; tests/js/connection.test.mjs runs the same cases)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.clients.feed import Command, FeedMachine, FeedOptions, Open, Poll

VECTORS = json.loads((Path(__file__).parent / "vectors" / "feed.json").read_text())


class Driver:
    """Runs a FeedMachine on virtual time; /all answers at once."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.machine = FeedMachine(
            FeedOptions(
                backoff_s=tuple(ms / 1000 for ms in options["backoff_ms"]),
                poll_s=options["poll_ms"] / 1000,
                sse_retry_s=options["sse_retry_ms"] / 1000,
                connect_timeout_s=options["connect_timeout_ms"] / 1000,
            )
        )
        self.now = 0.0
        self.streams = 0
        self.polls = 0
        self.all = "error"

    def run(self, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, Open):
                self.streams += 1
            elif isinstance(command, Poll):
                self.polls += 1
                self.run(self.machine.poll_answered(self.now, command.number, self.all))  # type: ignore[arg-type]

    def wait(self, seconds: float) -> None:
        until = self.now + seconds
        while (due := self.machine.next_due()) is not None and due <= until + 1e-9:
            self.now = max(self.now, due)
            self.run(self.machine.tick(self.now))
        self.now = until

    def step(self, step: dict[str, Any]) -> None:
        m, now = self.machine, self.now
        match step["do"]:
            case "start":
                self.run(m.start(now))
            case "open":
                self.run(m.opened(now))
            case "fail":
                self.run(m.failed(now))
            case "wait":
                self.wait(step["ms"] / 1000)
            case "all":
                self.all = step["with"]
            case "retry_now":
                self.run(m.retry_now(now))
            case other:
                raise AssertionError(f"unknown step {other}")

    def observed(self) -> dict[str, Any]:
        return {
            "state": self.machine.state,
            "attempt": self.machine.attempt,
            "streams": self.streams,
            "polls": self.polls,
        }


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_feed_machine_follows_the_shared_vectors(case: dict[str, Any]) -> None:
    driver = Driver(VECTORS["options"])
    driver.all = case.get("all", "error")
    for number, step in enumerate(case["steps"]):
        driver.step(step)
        expected = step.get("expect", {})
        seen = {key: driver.observed()[key] for key in expected}
        assert seen == expected, f"step {number} {step}"


def test_poll_answer_that_lands_after_the_stream_opened_is_ignored() -> None:
    machine = FeedMachine(FeedOptions(backoff_s=(1.0,)))
    machine.start(0)
    machine.failed(0)
    machine.tick(1)
    commands = machine.failed(1)
    poll = next(c for c in commands if isinstance(c, Poll))
    machine.retry_now(1)
    machine.opened(1)
    assert machine.poll_answered(1, poll.number, "error") == []
    assert machine.state == "live"


def test_rejected_stream_retries_slowly_when_asked() -> None:
    machine = FeedMachine(FeedOptions(auth_retry_s=15.0))
    machine.start(0)
    machine.rejected(0)
    assert machine.state == "unauthorized" and machine.next_due() == 15.0
    assert any(isinstance(c, Open) for c in machine.tick(15.0))
