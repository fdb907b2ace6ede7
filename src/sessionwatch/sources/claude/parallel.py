"""The parallel cold scan: transcript files read by forked readers taking
them from one queue (a process with one thread: `scan`) or by spawned ones
reading fixed groups (beside threads: the server), each sending back what it
read (:class:`GroupResult`, msgpack).
"""

from __future__ import annotations

import _thread
import gc
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from sessionwatch.metrics import IndexCounts, Tally
from sessionwatch.prices import PriceTable
from sessionwatch.sources.claude.files import FileState, ReadBuffer

class GroupResult(msgspec.Struct):
    """What a reader of a parallel scan sends back."""

    #: the files read, as they now stand (sent back whole: no store rows, so
    #: the parent of a `scan` never loads the store)
    files: list[FileState]
    removed: list[str]
    partial: list[str]
    #: what the reader counted, for the scanning index's metrics
    counts: IndexCounts


Work = list[tuple[str, "FileState | None"]]


def read_group(root: str, items: Iterable[tuple[str, FileState | None]], settle_s: float) -> GroupResult:
    """Bring some files up to date in a fresh index; return them.

    ``items`` may be lazy (a forked reader's queue, :func:`_taken`): each
    file is read as it comes."""
    from sessionwatch.sources.claude.index import ClaudeIndex

    tally = Tally()
    index = ClaudeIndex(Path(root), PriceTable({"models": {}}), workers=1, metrics=tally)
    index.settle_s = settle_s
    index._buffer = ReadBuffer()
    for key, fs in items:
        if fs is not None:
            index.files[fs.path] = fs
            index._link(fs)
        index.update(Path(key))
    index._buffer = None
    files = [index.files[p] for p in index.dirty if p in index.files]
    removed = [p for p in index.removed if p not in index.files]
    return GroupResult(files, removed, sorted(index.partial), tally.counts())


def threaded() -> bool:
    """Whether this process runs other threads (then it must not fork).

    ``_thread._count()`` counts every thread started besides the main one,
    with or without the threading module (not imported by `scan`)."""
    return _thread._count() > 0 or not hasattr(os, "fork")


#: The most runs of files a forked scan's queue holds: their numbers (4 bytes
#: each) fill one page, which a pipe always holds, so they are all written
#: before the first reader starts and nothing blocks.
MAX_RUNS = 1024


def forked(root: str, items: Work, readers: int, settle_s: float) -> Iterator[GroupResult]:
    """Read ``items`` (largest first) with ``readers`` processes: this one
    and forked children. Each takes the next run of files from one queue until
    it is empty, so the readers finish together however unevenly the machine
    shares its cores among them (fixed shares left the last reader running
    alone); each child then sends what it read back through a pipe (msgpack:
    no pickle, no multiprocessing to import and start; what `scan` spends
    before reading counts)."""
    # Every reader masks titles: the module is imported once, here, and
    # inherited (transcript.py imports it on first use). Its patterns are
    # compiled only by a reader meeting a title that may hold a key (redact.py):
    # most corpora have none, and compiling them all here would cost more
    # start-up than a reader spends compiling the few it needs.
    import sessionwatch.redact  # noqa: F401

    per = max(1, -(-len(items) // MAX_RUNS))
    runs = [items[i : i + per] for i in range(0, len(items), per)]
    # The queue: a pipe holding each run's number. A read of 4 bytes takes one
    # whole number (every write and read is a multiple of 4), and once the
    # numbers are gone the reads see the end (the write end is closed first).
    queue, w = os.pipe()
    try:
        os.write(w, b"".join(i.to_bytes(4, "little") for i in range(len(runs))))
    finally:
        os.close(w)
    children: list[tuple[int, int]] = []
    sys.stdout.flush()
    sys.stderr.flush()
    # Objects that exist now are the children's too: frozen, the children's
    # collections never walk them (which would copy their pages, copy-on-write).
    gc.freeze()
    try:
        for _ in range(readers - 1):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                os.close(r)
                code = 0
                try:
                    payload = b"R" + _result_encoder.encode(read_group(root, _taken(queue, runs), settle_s))
                except BaseException as exc:  # reported by the parent
                    payload, code = b"E" + repr(exc).encode(), 1
                try:
                    with open(w, "wb") as out:
                        out.write(payload)
                finally:
                    os._exit(code)
            os.close(w)
            children.append((pid, r))
        gc.unfreeze()
        yield read_group(root, _taken(queue, runs), settle_s)
        while children:
            pid, r = children.pop(0)
            with open(r, "rb") as f:
                data = f.read()
            os.waitpid(pid, 0)
            if data[:1] != b"R":
                raise RuntimeError(f"a transcript reader failed: {data[1:].decode(errors='replace') or 'no result'}")
            yield _result_decoder.decode(memoryview(data)[1:])
    finally:
        gc.unfreeze()
        os.close(queue)
        for pid, r in children:  # only when stopped early (an error, Ctrl-C)
            os.close(r)
            os.waitpid(pid, 0)


def _taken(queue: int, runs: list[Work]) -> Iterator[tuple[str, FileState | None]]:
    """The files of each run this reader takes from the queue, until it is empty."""
    while number := os.read(queue, 4):
        yield from runs[int.from_bytes(number, "little")]


def spawned(root: str, work: list[Work], settle_s: float) -> Iterator[GroupResult]:
    """Each group in a spawned process (safe beside threads)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=len(work), mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(read_group, root, items, settle_s) for items in work]
        for future in as_completed(futures):
            yield future.result()


_result_encoder = msgspec.msgpack.Encoder()
_result_decoder = msgspec.msgpack.Decoder(GroupResult)
