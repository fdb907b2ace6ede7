"""Reference for the memory figure: the leanest SSE endpoint uvicorn can serve.

``python -m bench.lean_stream PORT`` runs a bare ASGI app (no Starlette, no
sse-starlette) whose ``/stream`` sends the headers and one ``init`` event and
then waits on one shared event: what a connection costs in uvicorn + h11 +
asyncio alone, to compare with sessionwatch's own ``/stream``.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

import uvicorn

STOP: asyncio.Event | None = None
INIT = b'event: init\ndata: {"type":"init","sessions":[]}\n\n'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global STOP
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                STOP = asyncio.Event()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                assert STOP is not None
                STOP.set()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/healthz":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
    await send({"type": "http.response.body", "body": INIT, "more_body": True})
    assert STOP is not None
    await STOP.wait()
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    gc.freeze()
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
                timeout_graceful_shutdown=1)
