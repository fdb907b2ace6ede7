"""Filesystem changes as batches of paths, from watchfiles.

Two watchers feed one stream: the projects dir (recursive, transcripts and
``sessions-index.json`` only) and the database's directory (not recursive,
only the database and its WAL: that is how direct-mode trackers are noticed).
A projects dir that does not exist yet is waited for, then watched.

``WATCHFILES_FORCE_POLLING`` is honoured by watchfiles itself (``force_polling``
stays None), for network filesystems where notify events never arrive.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio.abc import ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream
from watchfiles import Change, awatch

log = logging.getLogger(__name__)

#: How often a missing projects dir is looked for.
WAIT_FOR_DIR_S = 1.0


def transcript_filter(change: Change, path: str) -> bool:
    if path.endswith(".jsonl") or path.endswith("sessions-index.json"):
        return True
    # A new directory (a new project, a session's subagents/ folder): files
    # written into it before inotify watches it are never reported, so the
    # directory itself is passed on and scanned.
    return change == Change.added and os.path.isdir(path)


def db_filter(db: Path) -> object:
    names = {db.name, db.name + "-wal"}

    def accept(change: Change, path: str) -> bool:
        return Path(path).name in names

    return accept


@asynccontextmanager
async def watching(
    projects_dir: Path,
    db: Path,
    *,
    debounce_ms: int = 500,
    step_ms: int = 50,
    stop_event: anyio.Event | None = None,
) -> AsyncIterator[MemoryObjectReceiveStream[set[Path]]]:
    """Watch both places; the body iterates sets of changed paths.

    When the projects dir appears after start (or comes back after being
    removed), the dir itself is sent once: callers rescan it.

    A context manager rather than a generator, so the watchers' task group is
    always entered and left by the same task, however the caller stops.
    """
    stop = stop_event or anyio.Event()
    send, receive = anyio.create_memory_object_stream[set[Path]](16)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_projects, projects_dir, debounce_ms, step_ms, stop, send.clone())
        tg.start_soon(_watch_db, db, debounce_ms, step_ms, stop, send.clone())
        send.close()
        try:
            async with receive:
                yield receive
        finally:
            stop.set()
            tg.cancel_scope.cancel()


async def _watch_projects(
    root: Path, debounce_ms: int, step_ms: int, stop: anyio.Event, send: ObjectSendStream[set[Path]]
) -> None:
    async with send:
        first = True
        while not stop.is_set():
            if not root.is_dir():
                log.info("waiting for %s to appear", root)
                while not root.is_dir():
                    if stop.is_set():
                        return
                    with anyio.move_on_after(WAIT_FOR_DIR_S):
                        await stop.wait()
                log.info("%s appeared, watching it", root)
                await send.send({root})  # callers rescan the whole dir
            elif not first:
                await send.send({root})
            first = False
            async for changes in awatch(
                root,
                watch_filter=transcript_filter,
                debounce=debounce_ms,
                step=step_ms,
                stop_event=stop,
                recursive=True,
                ignore_permission_denied=True,
            ):
                await send.send({Path(p) for _, p in changes})
                if not root.is_dir():
                    break  # the dir itself went away: wait for it again


async def _watch_db(
    db: Path, debounce_ms: int, step_ms: int, stop: anyio.Event, send: ObjectSendStream[set[Path]]
) -> None:
    async with send:
        async for changes in awatch(
            db.parent,
            watch_filter=db_filter(db),  # type: ignore[arg-type]
            debounce=debounce_ms,
            step=step_ms,
            stop_event=stop,
            recursive=False,
            ignore_permission_denied=True,
        ):
            await send.send({Path(p) for _, p in changes})
