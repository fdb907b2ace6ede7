"""A clock for the engine that moves only when a test says so."""

from __future__ import annotations

import anyio


class FakeClock:
    def __init__(self, now: float) -> None:
        self.t = now
        self._moved = anyio.Event()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        until = self.t + seconds
        while self.t < until:
            await self._moved.wait()

    def set(self, now: float) -> None:
        self.t = now
        self._moved.set()
        self._moved = anyio.Event()
