"""One transcript file's reading state and the record stored for it.

:class:`FileState`: where reading stands (identity, offset, the hash of the
last bytes read, whether an over-long line is being skipped) and the file's
totals so far; :class:`StoredFile`: what the store keeps of it between runs
(``AGG_FORMAT``); :class:`ReadBuffer`: the memory a scan's reads reuse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

try:  # the one hash used; hashlib would load OpenSSL first (17 ms of a scan's start)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - CPython always has it
    from hashlib import blake2b

from sessionwatch.sources.claude.transcript import FileAgg, Kind

if TYPE_CHECKING:
    from io import FileIO

    # Imported where rows are made (the server's path): `scan` never loads
    # the store, its SQLite and asyncio.
    from sessionwatch.store.sqlite import TranscriptRow

#: How many bytes before the offset are hashed to tell an append from a rewrite.
TAIL_HASH_BYTES = 4096


def tail_hash(tail: bytes) -> str:
    return blake2b(tail, digest_size=8).hexdigest()


def advance(fs: FileState, tail: bytes, data: bytes | bytearray, lo: int, hi: int) -> bytes:
    """Move the offset past ``data[lo:hi]``; returns the new last bytes read
    (at most ``TAIL_HASH_BYTES``, copied: ``data`` may be a reused buffer)."""
    fs.offset += hi - lo
    if hi - lo >= TAIL_HASH_BYTES:
        return bytes(data[hi - TAIL_HASH_BYTES : hi])
    return (tail + data[lo:hi])[-TAIL_HASH_BYTES:]


class ReadBuffer:
    """Memory that reads of a scan reuse.

    ``f.read`` of a whole file allocates new memory for it each time; when
    the allocator maps fresh pages for it, every 4 KiB costs a page fault and
    a zeroed page (reading 200 MB that way: ≈ 0.17 s of system time against
    ≈ 0.06 s into one reused buffer). ``fill`` reads into one buffer, grown
    (replaced, never resized: parsed lines may still hold views of it) only
    when a read needs more. Its bytes are valid until the next ``fill``.
    """

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = bytearray()

    def fill(self, f: FileIO, carry: bytes, want: int) -> tuple[bytearray, int]:
        """``carry`` then up to ``want`` bytes read from ``f``; returns the
        buffer and how far it holds them."""
        k = len(carry)
        need = k + want
        if len(self.data) < need:
            self.data = bytearray(need)
        data = self.data
        if k:
            data[:k] = carry
        hi = k
        with memoryview(data) as view:
            while hi < need:
                n = f.readinto(view[hi:need])
                if not n:
                    break
                hi += n
        return data, hi


#: The format of the record stored with each file (:class:`StoredFile`).
#: Earlier versions stored a bare ``FileAgg`` (format 1, with the reading
#: state among the totals, or an ``S`` prefix for "skipping"); such a record
#: is not read, and its file is read again from 0. Format 3: ``FileAgg.slots``
#: (usage per quarter hour, for ``GET /stats``' days) and the quarter hour of
#: each remembered response.
AGG_FORMAT = 3


class StoredFile(msgspec.Struct, forbid_unknown_fields=True):
    """The stored record of one file: how its reading stands, and its totals."""

    format: int
    #: a hash of the last bytes before the offset, to notice a file rewritten
    #: in place rather than appended to (issue 8, item 4); None at offset 0
    tail_hash: str | None
    #: reading stopped inside an over-long line: skip to the next newline
    skipping: bool
    agg: FileAgg


_stored_encoder = msgspec.json.Encoder()
_stored_decoder = msgspec.json.Decoder(StoredFile)


class FileState(msgspec.Struct):
    path: str
    kind: Kind
    session_id: str | None
    dev: int = 0
    ino: int = 0
    size: int = 0
    mtime: float = 0.0
    offset: int = 0
    #: the totals so far
    agg: FileAgg = msgspec.field(default_factory=FileAgg)
    #: how the reading stands: see :class:`StoredFile`
    tail_hash: str | None = None
    skipping: bool = False

    def parent(self) -> str | None:
        return self.session_id if self.kind == "main" else (self.session_id or self.agg.session_id)

    def row(self) -> TranscriptRow:
        from sessionwatch.store.sqlite import TranscriptRow

        record = StoredFile(AGG_FORMAT, self.tail_hash, self.skipping, self.agg)
        return TranscriptRow(
            self.path, self.kind, self.parent(), self.dev, self.ino, self.size, self.mtime,
            self.offset, _stored_encoder.encode(record),
        )

    @classmethod
    def from_row(cls, row: TranscriptRow) -> FileState:
        kind: Kind = "main" if row.kind == "main" else "subagent"
        try:
            record: StoredFile | None = _stored_decoder.decode(row.agg)
        except (msgspec.DecodeError, msgspec.ValidationError):
            record = None  # unreadable, or an earlier format
        if (
            record is None
            or record.format != AGG_FORMAT
            or (row.offset > 0 and record.tail_hash is None)
        ):
            # Nothing stored can be trusted to continue from: read it again from 0.
            return cls(row.path, kind, row.session_id, row.dev, row.ino)
        return cls(
            row.path, kind, row.session_id, row.dev, row.ino, row.size, row.mtime, row.offset,
            record.agg, record.tail_hash, record.skipping,
        )
