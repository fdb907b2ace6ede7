"""The parallel cold scan: groups of transcript files read by forked
readers (a process with one thread: `scan`) or spawned ones (beside threads:
the server), each sending back what it read (:class:`GroupResult`, msgpack).
"""

from __future__ import annotations

import _thread
import gc
import os
import sys
from collections.abc import Iterator
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


def read_group(root: str, items: Work, settle_s: float) -> GroupResult:
    """Bring some files up to date in a fresh index; return them."""
    from sessionwatch.sources.claude.index import ClaudeIndex

    tally = Tally()
    index = ClaudeIndex(Path(root), PriceTable({"models": {}}), workers=1, metrics=tally)
    index.settle_s = settle_s
    for _, fs in items:
        if fs is not None:
            index.files[fs.path] = fs
            index._link(fs)
    index._buffer = ReadBuffer()
    for key, _ in items:
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


def forked(root: str, work: list[Work], settle_s: float) -> Iterator[GroupResult]:
    """Read the first group here and each other in a forked child, which sends
    its result back through a pipe (msgpack: no pickle, no multiprocessing to
    import and start; what `scan` spends before reading counts)."""
    # Every reader masks titles: the patterns are compiled once, here, and
    # inherited, not once per reader (transcript.py imports redact on first use).
    import sessionwatch.redact  # noqa: F401

    children: list[tuple[int, int]] = []
    sys.stdout.flush()
    sys.stderr.flush()
    # Objects that exist now are the children's too: frozen, the children's
    # collections never walk them (which would copy their pages, copy-on-write).
    gc.freeze()
    try:
        for items in work[1:]:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                os.close(r)
                code = 0
                try:
                    payload = b"R" + _result_encoder.encode(read_group(root, items, settle_s))
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
        yield read_group(root, work[0], settle_s)
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
        for pid, r in children:  # only when stopped early (an error, Ctrl-C)
            os.close(r)
            os.waitpid(pid, 0)


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
