"""Filesystem changes as batches of paths, from watchfiles.

Two watchers feed one stream: the projects dir (recursive, transcripts and
``sessions-index.json`` only) and the database's directory (not recursive,
only the database and its WAL: that is how direct-mode trackers are noticed).
A projects dir that does not exist yet is waited for, then watched; one that
is removed (or removed and created again) is noticed and watched again.

``WATCHFILES_FORCE_POLLING`` is honoured by watchfiles itself (``force_polling``
stays None), for network filesystems where notify events never arrive.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path

import anyio
from anyio.abc import ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream
from watchfiles import Change, awatch

log = logging.getLogger(__name__)

#: How often a missing projects dir is looked for.
WAIT_FOR_DIR_S = 1.0
#: How often, in silence, the watched projects dir is checked to still be the
#: one watched (it may have been removed, or removed and created again).
CHECK_ROOT_S = 1.0


def transcript_filter(change: Change, path: str) -> bool:
    if path.endswith(".jsonl") or path.endswith("sessions-index.json"):
        return True
    # A new directory (a new project, a session's subagents/ folder): files
    # written into it before inotify watches it are never reported, so the
    # directory itself is passed on and scanned.
    return change == Change.added and os.path.isdir(path)


def projects_filter(root: Path) -> Callable[[Change, str], bool]:
    """Transcripts, new directories, and any change to the root itself (its
    removal is how a watch that went dead shows)."""
    top = str(root)

    def accept(change: Change, path: str) -> bool:
        return path == top or transcript_filter(change, path)

    return accept


def db_filter(db: Path) -> object:
    names = {db.name, db.name + "-wal"}

    def accept(change: Change, path: str) -> bool:
        return Path(path).name in names

    return accept


@asynccontextmanager
async def watching(
    projects_dir: Path,
    db: Path | None,
    *,
    debounce_ms: int = 500,
    step_ms: int = 50,
    stop_event: anyio.Event | None = None,
) -> AsyncIterator[MemoryObjectReceiveStream[set[Path]]]:
    """Watch both places; the body iterates sets of changed paths.

    Once the watch is up, and whenever the projects dir appears after start
    (or comes back after being removed), the dir itself is sent: callers
    rescan it, so nothing written before the watch was up is missed.

    A context manager rather than a generator, so the watchers' task group is
    always entered and left by the same task, however the caller stops.
    """
    stop = stop_event or anyio.Event()
    send, receive = anyio.create_memory_object_stream[set[Path]](16)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_projects, projects_dir, debounce_ms, step_ms, stop, send.clone())
        if db is not None:  # None: PostgreSQL, whose changes arrive as events
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
    # inotify watches an inode, not a name: once the root is removed, awatch
    # goes on waiting on the dead directory without a word (its only sign is
    # a ``deleted`` event for the root itself), and a directory created again
    # under the same name is never watched. So an event for the root ends the
    # watch, and so does a root found missing or replaced (another inode)
    # after any batch or CHECK_ROOT_S of silence. Then the root is sent
    # (callers rescan: sessions of removed files go) and the watch starts
    # again, waiting for the root if need be.
    async with send:
        # Send the root once the watch is up, the first time too: whatever was
        # written between the caller's start-up scan and now is then rescanned.
        announce = True
        while not stop.is_set():
            if not root.is_dir():
                log.info("waiting for %s to appear", root)
                while not root.is_dir():
                    if stop.is_set():
                        return
                    with anyio.move_on_after(WAIT_FOR_DIR_S):
                        await stop.wait()
                log.info("%s appeared, watching it", root)
                announce = True
            identity = _identity(root)
            if identity is None:
                continue  # gone again already
            watcher = awatch(
                root,
                watch_filter=projects_filter(root),
                debounce=debounce_ms,
                step=step_ms,
                stop_event=stop,
                rust_timeout=int(CHECK_ROOT_S * 1000),
                yield_on_timeout=True,
                recursive=True,
                ignore_permission_denied=True,
            )
            async with aclosing(watcher):
                # The first batch (or the first timeout) comes once the watch is
                # up: a rescan asked for then misses nothing written meanwhile.
                async for changes in watcher:
                    paths = {Path(p) for _, p in changes}
                    # An event for the root itself is its removal or a move:
                    # its inode may already be reused by a new directory of
                    # the same name, so that alone means the watch is dead.
                    gone = root in paths or _identity(root) != identity
                    if announce or gone:
                        paths.add(root)
                        announce = False
                    if paths:
                        await send.send(paths)
                    if gone:
                        log.warning("%s was removed or replaced; watching it again when it is back", root)
                        announce = True
                        break


def _identity(path: Path) -> tuple[int, int] | None:
    """The directory's (device, inode), or None if it is not a directory now."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


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
