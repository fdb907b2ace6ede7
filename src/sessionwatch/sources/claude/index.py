"""The Claude index: which transcript files exist, how far each was read,
and the sessions they add up to.

Incremental by construction: each file keeps ``(dev, ino, size, offset)``; a
change reads only the bytes after ``offset`` up to the last complete line, so
appending one line to a 500 MB transcript costs work proportional to the line.
A file that shrank, changed identity or whose bytes before ``offset`` changed
(rewritten in place: the hash of its last 4 KiB read differs) is read again
from 0.

What is stored per file (the store's ``transcripts`` rows) is its identity and
offset as columns, and a record holding the reading state and the file's
totals (files.py). A cold scan of many bytes is read by several processes
(parallel.py). The index is also the Claude source of the engine: each
session's facet (:meth:`ClaudeIndex.facet`) and its status from the
transcript alone.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from sessionwatch.sources.claude import parallel
from sessionwatch.sources.claude.files import TAIL_HASH_BYTES, FileState, ReadBuffer, advance, tail_hash
from sessionwatch.sources.claude.transcript import (
    MAX_LINE_BYTES,
    RUNNING_KINDS,
    classify,
    parse_bytes,
    recent_activity,
    shown,
)
from sessionwatch.metrics import IndexMetrics, add_counts
from sessionwatch.model import Session, Status, Tokens, iso, to_dict
from sessionwatch.prices import PriceTable

if TYPE_CHECKING:
    import logging

    # Imported where rows are made (the server's path): `scan` never loads
    # the store, its SQLite and asyncio.
    from sessionwatch.store.sqlite import TranscriptRow


def _log() -> logging.Logger:
    """This module's logger; ``logging`` (and traceback) load only when
    something is logged: `scan` start-up counts."""
    import logging

    return logging.getLogger(__name__)


CHUNK = 16 * 1024 * 1024
#: Below this much to read, one process is faster than starting workers
#: (spawned ones: a new interpreter each, as when the server has threads).
PARALLEL_MIN_BYTES = 64 * 1024 * 1024
#: The same for forked readers (a process with one thread, as `scan`): a fork
#: costs a few milliseconds, so they pay off on much less.
FORK_MIN_BYTES = 16 * 1024 * 1024
#: The most forked readers started (a process with one thread, as `scan`),
#: whatever the core count (``workers`` if more). Reading is CPU-bound and a
#: busy machine shares its cores among runnable processes: as many readers as
#: cores get a shrinking part of them while other work runs (ccusage, with its
#: many threads, does not; at load 7.5, 2 readers took 0.84 s for 200 MB and
#: 3 to 6 readers 0.58-0.62 s). On an idle machine an extra reader costs its
#: fork, not CPU time: the same bytes are parsed, by more processes taking
#: turns from one queue. Spawned readers (a process with threads: the server)
#: stay at ``workers``: each imports the package.
FORKED_READERS = 4
#: Readers beyond ``workers`` are started only for this many bytes each
#: (``_forked_readers``; on 2 cores: 3 for 200 MB, 4 for 1 GB).
FORK_BYTES_PER_READER = 48 * 1024 * 1024
#: A last line without its newline is complete once the file has been quiet
#: this long and the line is a whole JSON object (hand-made files often lack
#: the final newline; Claude Code itself always writes one).
SETTLE_S = 3.0
RECENT_TAIL_BYTES = 256 * 1024
class Hint(msgspec.Struct):
    """What a ``sessions-index.json`` says of a session: used only as a fallback."""

    title: str | None = None
    project: str | None = None


class ClaudeIndex:
    """Transcript files → Claude sessions."""

    def __init__(
        self,
        root: Path,
        prices: PriceTable,
        *,
        idle_after_s: float = 300.0,
        metrics: IndexMetrics | None = None,
        progress: Callable[[int, int], None] | None = None,
        workers: int | None = None,
    ) -> None:
        self.root = root
        self._root_prefix = len(str(root)) + 1
        self.prices = prices
        self.idle_after_s = idle_after_s
        if metrics is None:
            from sessionwatch.metrics import Metrics

            metrics = Metrics()
        self.metrics = metrics
        self.progress = progress
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self.files: dict[str, FileState] = {}
        self.members: dict[str, set[str]] = {}
        self.hints: dict[str, Hint] = {}
        self.dirty: set[str] = set()
        self.removed: set[str] = set()
        self._warned: set[tuple[str, str]] = set()
        #: files whose last line still waits for its newline
        self.partial: set[str] = set()
        self.settle_s = SETTLE_S
        #: reused by the reads of one scan (None: each read has its own)
        self._buffer: ReadBuffer | None = None

    # --- loading and scanning -------------------------------------------------------

    def load(self, rows: Iterable[TranscriptRow]) -> None:
        """Resume from stored offsets and aggregates."""
        for row in rows:
            fs = FileState.from_row(row)
            self.files[fs.path] = fs
            self._link(fs)

    def discover(self) -> list[Path]:
        """Every transcript path under the root (main, flat and nested subagents)."""
        found: list[Path] = []
        try:
            projects = list(os.scandir(self.root))
        except OSError:
            return found
        for project in projects:
            if not _is_dir(project):
                continue
            try:
                entries = list(os.scandir(project.path))
            except OSError as exc:
                self._bad_file(project.path, "unreadable", exc)
                continue
            for entry in entries:
                if entry.name.endswith(".jsonl"):
                    found.append(Path(entry.path))
                elif entry.name == "sessions-index.json":
                    self.read_hints(Path(entry.path))
                elif _is_dir(entry):
                    sub = os.path.join(entry.path, "subagents")
                    try:
                        found.extend(
                            Path(e.path) for e in os.scandir(sub) if e.name.endswith(".jsonl")
                        )
                    except OSError:
                        pass
        return found

    def scan(self) -> set[str]:
        """Bring every file up to date and forget files that vanished.

        When there is a lot to read (a first start, a big catch-up) the files
        are read by one process per core: decoding is CPU-bound and Python
        runs it on one core per process.
        """
        paths = self.discover()
        touched: set[str] = set()
        seen = {str(p) for p in paths}
        for gone in [p for p in self.files if p not in seen]:
            touched |= self.forget(gone)
        if self.workers > 1:
            pending, current = self._pending(paths)
            least = PARALLEL_MIN_BYTES if parallel.threaded() else min(PARALLEL_MIN_BYTES, FORK_MIN_BYTES)
            if pending and sum(pending.values()) >= least:
                touched |= self._scan_parallel(pending)
                current |= set(pending)
            # files stat-ed above and found unchanged need no second stat
            paths = [p for p in paths if str(p) not in current]
        total = len(paths)
        last_report = time.monotonic()
        self._buffer = ReadBuffer()
        try:
            for n, path in enumerate(paths, 1):
                touched |= self.update(path)
                if self.progress is not None and time.monotonic() - last_report > 0.2:
                    self.progress(n, total)
                    last_report = time.monotonic()
        finally:
            self._buffer = None  # a long-lived index keeps no scan-sized buffer
        if self.progress is not None:
            self.progress(total, total)
        return touched

    def _pending(self, paths: list[Path]) -> tuple[dict[str, int], set[str]]:
        """Bytes left to read per transcript with something to read, and the
        transcripts that are already up to date (what ``update`` would skip)."""
        pending: dict[str, int] = {}
        current: set[str] = set()
        for path in paths:
            key = str(path)
            try:
                st = os.stat(key)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            fs = self.files.get(key)
            same = fs is not None and (fs.dev, fs.ino) == (st.st_dev, st.st_ino) and st.st_size >= fs.offset
            left = st.st_size - (fs.offset if same and fs is not None else 0)
            if left > 0:
                pending[key] = left
            elif (
                same
                and fs is not None
                and fs.offset > 0
                and st.st_size == fs.size
                and st.st_mtime == fs.mtime
            ):
                current.add(key)
        return pending, current

    def _scan_parallel(self, pending: dict[str, int]) -> set[str]:
        # fork is cheapest, but only safe while this process has one thread
        largest_first = sorted(pending, key=lambda k: -pending[k])
        results: Iterator[parallel.GroupResult]
        if parallel.threaded():
            n = self.workers
            groups: list[list[str]] = [[] for _ in range(n)]
            loads = [0] * n
            for key in largest_first:
                i = loads.index(min(loads))
                groups[i].append(key)
                loads[i] += pending[key]
            work = [[(k, self.files.get(k)) for k in group] for group in groups if group]
            results = parallel.spawned(str(self.root), work, self.settle_s)
        else:
            items = [(k, self.files.get(k)) for k in largest_first]
            results = parallel.forked(str(self.root), items, self._forked_readers(pending), self.settle_s)
        touched: set[str] = set()
        done = 0
        for result in results:
            touched |= self._merge(result)
            done += len(result.files) + len(result.removed)
            if self.progress is not None:
                self.progress(done, len(pending))
        return touched

    def _forked_readers(self, pending: dict[str, int]) -> int:
        """How many processes read a forked scan of ``pending``: ``workers``
        (one per core), and more, up to FORKED_READERS, as the bytes allow
        FORK_BYTES_PER_READER each."""
        by_bytes = sum(pending.values()) // FORK_BYTES_PER_READER
        return min(len(pending), max(self.workers, min(FORKED_READERS, by_bytes)))

    def _merge(self, result: parallel.GroupResult) -> set[str]:
        touched: set[str] = set()
        for fs in result.files:
            old = self.files.get(fs.path)
            before = old.parent() if old is not None else None
            after = fs.parent()
            if before is not None and before != after:
                self.members.get(before, set()).discard(fs.path)
                touched.add(before)
            self.files[fs.path] = fs
            self._link(fs)
            self.dirty.add(fs.path)
            if after is not None:
                touched.add(after)
        for path in result.removed:
            touched |= self.forget(path)
        self.partial |= set(result.partial)
        add_counts(self.metrics, result.counts)
        return touched

    def scan_dir(self, directory: Path) -> set[str]:
        """Read every transcript under a directory that just appeared."""
        touched: set[str] = set()
        try:
            paths = [
                p for p in directory.rglob("*")
                if p.name.endswith(".jsonl") or p.name == "sessions-index.json"
            ]
        except OSError:
            return touched
        # the index hint first, so titles are there when sessions first show
        for p in sorted(paths, key=lambda p: (p.name != "sessions-index.json", p)):
            touched |= self.update(p)
        return touched

    def read_hints(self, path: Path) -> None:
        """Read ``sessions-index.json``; stale in recent Claude Code, so a hint only."""
        import json

        try:
            data = json.loads(path.read_bytes())
            entries = data.get("entries", []) if isinstance(data, dict) else []
            original = data.get("originalPath") if isinstance(data, dict) else None
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("sessionId"), str):
                    continue
                title = entry.get("summary") or entry.get("firstPrompt")
                project = entry.get("projectPath") or original
                self.hints[entry["sessionId"]] = Hint(
                    shown(title) if isinstance(title, str) else None,
                    project if isinstance(project, str) else None,
                )
        except (OSError, ValueError, AttributeError, TypeError, RecursionError) as exc:
            self._bad_file(str(path), "bad-index", exc)

    # --- one file -------------------------------------------------------------------

    def update(self, path: Path, *, force: bool = False) -> set[str]:
        """Read what was appended to ``path``; returns the sessions it touched.

        A file whose size and mtime are those last read is skipped unless
        ``force`` (a partial last line that may now count as complete).
        """
        key = str(path)
        if path.name == "sessions-index.json":
            self.read_hints(path)
            return {sid for sid in self.hints if sid in self.members}
        info = classify(path, self.root)
        if info is None:
            return set()
        try:
            st = os.stat(key)
        except FileNotFoundError:
            return self.forget(key)
        except OSError as exc:
            self._bad_file(key, "unreadable", exc)
            return set()
        if not stat.S_ISREG(st.st_mode):
            self._bad_file(key, "not-a-file", None)
            return self.forget(key)

        fs = self.files.get(key)
        if fs is None or (fs.dev, fs.ino) != (st.st_dev, st.st_ino) or st.st_size < fs.offset:
            touched = self.forget(key) if fs is not None else set()
            fs = FileState(key, info.kind, info.session_id, st.st_dev, st.st_ino)
            self.files[key] = fs
        else:
            touched = set()
        if not force and st.st_size == fs.size and st.st_mtime == fs.mtime and fs.offset > 0:
            return touched
        before = fs.parent()
        settled = time.time() - st.st_mtime >= self.settle_s
        try:
            if not self._read(fs, st.st_size, settled):
                # Same inode and no shorter, but not what was read: rewritten
                # in place, so not an append (issue 8, item 4).
                _log().info("%s was rewritten in place; reading it again from the start", key)
                touched |= self.forget(key)
                fs = FileState(key, info.kind, info.session_id, st.st_dev, st.st_ino)
                self.files[key] = fs
                before = None
                self._read(fs, st.st_size, settled)
        except FileNotFoundError:
            return touched | self.forget(key)
        except OSError as exc:
            self._bad_file(key, "unreadable", exc)
            return touched
        fs.size, fs.mtime = st.st_size, st.st_mtime
        self.dirty.add(key)
        after = fs.parent()
        if before != after and before is not None:
            self.members.get(before, set()).discard(key)
            touched.add(before)
        self._link(fs)
        if after is not None:
            touched.add(after)
        return touched

    def _read(self, fs: FileState, size: int, settled: bool) -> bool:
        """Read from ``fs.offset`` to ``size``; False, reading nothing, if the
        bytes before the offset are no longer the ones read (a rewrite)."""
        started = time.perf_counter()
        lines = bad = 0
        agg = fs.agg
        buffer = self._buffer if self._buffer is not None else ReadBuffer()
        with open(fs.path, "rb", buffering=0) as f:
            tail = b""
            if fs.offset > 0:
                f.seek(max(0, fs.offset - TAIL_HASH_BYTES))
                tail = f.read(min(fs.offset, TAIL_HASH_BYTES)) or b""
                self.metrics.bytes_read.inc(len(tail))
                if fs.tail_hash is None or tail_hash(tail) != fs.tail_hash:
                    return False
            carry = b""
            while fs.offset + len(carry) < size:
                # data[:hi] is the carried partial line, then what was just read
                data, hi = buffer.fill(f, carry, min(CHUNK, size - fs.offset - len(carry)))
                if hi == len(carry):
                    break
                self.metrics.bytes_read.inc(hi - len(carry))
                lo = 0
                if fs.skipping:  # nothing is carried while skipping
                    nl = data.find(b"\n", 0, hi)
                    if nl < 0:
                        tail = advance(fs, tail, data, 0, hi)
                        continue
                    tail = advance(fs, tail, data, 0, nl + 1)
                    fs.skipping = False
                    lo = nl + 1
                end = data.rfind(b"\n", lo, hi)
                if end < 0:
                    carry = bytes(data[lo:hi])
                    if len(carry) > MAX_LINE_BYTES:
                        # An endless line: skip it and count it once, not per read.
                        agg.bad_lines += 1
                        bad += 1
                        self._warn(fs.path, "huge", "line over the size limit skipped")
                        tail = advance(fs, tail, carry, 0, len(carry))
                        fs.skipping = True
                        carry = b""
                    continue
                result = parse_bytes(agg, data, kind=fs.kind, source=fs.path, start=lo, stop=end + 1)
                lines += result.lines
                bad += result.bad
                tail = advance(fs, tail, data, lo, end + 1)
                carry = bytes(data[end + 1 : hi])
            # A partial last line stays unread until its newline arrives, or
            # until the file has settled with a whole JSON object there.
            self.partial.discard(fs.path)
            if carry and not fs.skipping:
                if settled and carry.rstrip().endswith(b"}") and _is_object(carry):
                    result = parse_bytes(agg, carry, kind=fs.kind, source=fs.path)
                    lines += result.lines
                    tail = advance(fs, tail, carry, 0, len(carry))
                else:
                    self.partial.add(fs.path)
        fs.tail_hash = tail_hash(tail) if fs.offset > 0 else None
        self.metrics.lines.inc(lines)
        if bad:
            self.metrics.bad_lines.inc(bad)
        self.metrics.parse_seconds.observe(time.perf_counter() - started)
        return True

    def settle(self, now: float) -> set[str]:
        """Re-read files whose unterminated last line has had time to settle."""
        touched: set[str] = set()
        for path in list(self.partial):
            fs = self.files.get(path)
            if fs is None:
                self.partial.discard(path)
                continue
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                mtime = fs.mtime
            if now - mtime >= self.settle_s:
                touched |= self.update(Path(path), force=True)
        return touched

    def forget(self, key: str) -> set[str]:
        """Drop a file that is gone; returns the session it belonged to."""
        self.partial.discard(key)
        fs = self.files.pop(key, None)
        self.dirty.discard(key)
        if fs is None:
            return set()
        self.removed.add(key)
        parent = fs.parent()
        if parent is None:
            return set()
        members = self.members.get(parent)
        if members is not None:
            members.discard(key)
            if not members:
                del self.members[parent]
        return {parent}

    def _link(self, fs: FileState) -> None:
        parent = fs.parent()
        if parent is not None:
            self.members.setdefault(parent, set()).add(fs.path)

    def _bad_file(self, path: str, reason: str, exc: BaseException | None) -> None:
        self.metrics.bad_files.labels(reason).inc()
        self._warn(path, reason, str(exc) if exc else reason)

    def _warn(self, path: str, reason: str, text: str) -> None:
        if (path, reason) not in self._warned:
            self._warned.add((path, reason))
            _log().warning("%s: %s", path, text)

    def take_changes(self) -> tuple[list[TranscriptRow], list[str]]:
        """Rows to persist since the last call, and paths to delete."""
        rows = [self.files[p].row() for p in self.dirty if p in self.files]
        # a file forgotten and read again (replaced, rewritten) is upserted, not
        # deleted: the store applies deletes after upserts
        removed = [p for p in self.removed if p not in self.files]
        self.dirty.clear()
        self.removed.clear()
        return rows, removed

    # --- sessions -----------------------------------------------------------------

    def session_ids(self) -> list[str]:
        return [sid for sid in self.members if self._main(sid) is not None]

    def _main(self, sid: str) -> FileState | None:
        found = self._files_of(sid)
        return found[0] if found is not None else None

    def files_of(self, sid: str) -> list[FileState]:
        """The files whose usage adds up to ``sid`` (copies in other folders left out); [] if none."""
        found = self._files_of(sid)
        return found[1] if found is not None else []

    def _files_of(self, sid: str) -> tuple[FileState, list[FileState]] | None:
        """A session's main transcript and the files that add up to it.

        One session id can have main transcripts in several project folders:
        the same transcript copied (a project moved, a backup restored beside
        it) holds the same responses, so adding the copies would count each
        response twice (issue 8, item 20). The copies cannot be told apart
        response by response without keeping every response id, so the
        session is read from one project folder: the one whose main
        transcript has the most lines (a copy is a prefix of the file that
        went on growing), then the most lines in all, subagents included,
        then the path, so the choice is stable. Files of the session in other
        folders are copies and are left out.
        """
        groups: dict[str, list[FileState]] = {}
        mains: dict[str, FileState] = {}
        for path in self.members.get(sid, ()):
            fs = self.files.get(path)
            if fs is None:
                continue
            folder = self._folder(path)
            groups.setdefault(folder, []).append(fs)
            if fs.kind == "main" and fs.agg.first_ts is not None:
                mains[folder] = fs
        if not mains:
            return None
        if len(mains) == 1:
            ((folder, main),) = mains.items()
        else:
            folder, main = max(
                mains.items(),
                key=lambda fm: (fm[1].agg.lines, sum(f.agg.lines for f in groups[fm[0]]), fm[1].path),
            )
        return main, groups[folder]

    def _folder(self, path: str) -> str:
        """The project folder under the root that ``path`` is in."""
        return path[self._root_prefix :].split(os.sep, 1)[0]

    #: This source's name in the facet rules (facets.py).
    name = "claude"

    def ids(self) -> list[str]:
        return self.session_ids()

    def claims(self, sid: str) -> bool:
        """Whether any transcript is named by ``sid``, timestamped or not yet."""
        return sid in self.members

    def status(self, sid: str, now: float) -> Status:
        """running / waiting / idle: see the rules beside RUNNING_KINDS in transcript.py."""
        found = self._files_of(sid)
        if found is None:
            return "idle"
        return self._status(found[0], found[1], now)

    def _status(self, main: FileState, files: list[FileState], now: float) -> Status:
        # Activity is the newest entry's own timestamp, never the file's mtime:
        # a transcript copied or restored today whose last entry is a year old
        # is idle (issue 8, item 23).
        newest = max((f.agg.last_ts for f in files if f.agg.last_ts is not None), default=None)
        if newest is None or now - newest >= self.idle_after_s:
            return "idle"
        return "running" if main.agg.last_kind in RUNNING_KINDS else "waiting"

    def shows(self, sid: str) -> bool:
        """Whether :meth:`facet` has a Session for ``sid`` (a transcript with a timestamped line)."""
        return self._files_of(sid) is not None

    def last_ts(self, sid: str) -> float | None:
        """The newest entry's timestamp over the session's files (its activity), or None."""
        found = self._files_of(sid)
        if found is None:
            return None
        return max((f.agg.last_ts for f in found[1] if f.agg.last_ts is not None), default=None)

    def session(self, sid: str, now: float) -> dict[str, Any] | None:
        """:meth:`facet` as plain data (``scan --json``), or None."""
        s = self.facet(sid, now)
        return None if s is None else to_dict(s)

    def facet(self, sid: str, now: float) -> Session | None:
        """The contract's Session for a Claude session, or None if it is not one."""
        found = self._files_of(sid)
        if found is None:
            return None
        main, files = found
        agg = main.agg
        parts = [f.agg for f in files]
        t_in = t_out = t_create = t_read = 0
        cost: float | None = 0.0
        tool_calls = 0
        first = agg.first_ts
        last = agg.last_ts
        for part in parts:
            tool_calls += part.tool_calls
            if part.first_ts is not None and (first is None or part.first_ts < first):
                first = part.first_ts
            if part.last_ts is not None and (last is None or part.last_ts > last):
                last = part.last_ts
            for bucket_key, bucket in part.buckets.items():
                t_in += bucket[0]
                t_out += bucket[1]
                t_create += bucket[2] + bucket[3]
                t_read += bucket[4]
                model, long, fast = bucket_key.rsplit("|", 2)
                usd = self.prices.cost(model, bucket, long=long == "1", fast=fast == "1")
                cost = None if usd is None or cost is None else cost + usd
        hint = self.hints.get(sid, Hint())
        title = (
            agg.custom_title
            or agg.ai_title
            or agg.summary
            or agg.first_prompt
            or agg.first_command
            or hint.title
        )
        return Session(
            id=sid,
            source="claude",
            project=agg.cwd or hint.project or Path(main.path).parent.name,
            title=title,
            status=self._status(main, files, now),
            current_task=None,
            user=None,
            host=None,
            git_branch=agg.git_branch,
            model=agg.model,
            version=agg.version,
            started_at=iso(first),
            last_activity=iso(last),
            duration_seconds=round((last or 0) - (first or 0), 3),
            message_count=agg.messages,
            tool_calls=tool_calls,
            tokens=Tokens(t_in, t_out, t_create, t_read),
            cost_usd=None if cost is None else round(cost, 6),
            kill_requested=False,
            is_stale=False,
        )

    def recent(self, sid: str, limit: int = 10) -> list[dict[str, Any]]:
        """Recent activity of a session, read from the tail of its main transcript."""
        main = self._main(sid)
        if main is None:
            return []
        try:
            with open(main.path, "rb") as f:
                start = max(0, main.offset - RECENT_TAIL_BYTES)
                f.seek(start)
                data = f.read(main.offset - start)
        except OSError:
            return []
        if start > 0:
            data = data[data.find(b"\n") + 1 :]
        return recent_activity(data, limit)


def _is_object(data: bytes) -> bool:
    try:
        return isinstance(msgspec.json.decode(data), dict)
    except msgspec.DecodeError:
        return False


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
