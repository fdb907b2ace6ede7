"""Claude Code transcripts: decoding lines into per-file aggregates.

A transcript is JSON lines under ``<projects>/<folder>/``:

- ``<session-id>.jsonl`` is a session's main transcript;
- ``agent-*.jsonl`` (Claude Code 2.0.x, flat) and
  ``<session-id>/subagents/agent-*.jsonl`` (2.1.x, nested) are subagent
  transcripts: their usage and tool calls belong to the parent session named
  by their lines' ``sessionId`` (or the nesting folder).

Everything here is pure: bytes in, :class:`FileAgg` updated. Reading files,
offsets and persistence live in ``sources/claude/index.py``.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec

if TYPE_CHECKING:
    import logging


def _log() -> logging.Logger:
    """This module's logger; ``logging`` (and traceback) load only when
    something is logged: `scan` start-up counts."""
    import logging

    return logging.getLogger(__name__)

TITLE_MAX = 120
#: Recent ``(message.id, requestId)`` groups remembered per file. Claude Code
#: writes one line per content block of a response, back to back, so a short
#: window catches every repeat while keeping memory per file bounded.
DEDUPE_WINDOW = 16
#: A line longer than this is skipped and counted: no real entry is this
#: large, and it bounds what one bad file can make us hold in memory.
MAX_LINE_BYTES = 64 * 1024 * 1024

Kind = Literal["main", "subagent"]
#: What decoding a bad line raises: malformed or mistyped JSON, and nesting
#: deeper than msgspec recurses (a RecursionError, seen with 100,000 levels).
BAD_LINE = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


# --- the fields we decode; msgspec skips everything else without allocating ---
#
# Fields are declared in the order Claude Code writes them (``isSidechain``,
# ``cwd``, ``sessionId``, ... ``timestamp``; a usage's ``input_tokens`` first):
# msgspec looks each key up from the field after the last one found, so keys
# in that order are found at the first try (≈ 2 % of a read's instructions).
# Not garbage-collected (``gc=False``): decoded data holds no cycles.


#: A token count: a negative or absurd one makes the line bad instead of
#: poisoning a session's totals (or overflowing a 64-bit integer downstream).
Tokens = Annotated[int, msgspec.Meta(ge=0, lt=2**48)]


class CacheCreation(msgspec.Struct, gc=False):
    ephemeral_5m_input_tokens: Tokens | None = None
    ephemeral_1h_input_tokens: Tokens | None = None


class Usage(msgspec.Struct, gc=False):
    input_tokens: Tokens | None = None
    cache_creation_input_tokens: Tokens | None = None
    cache_read_input_tokens: Tokens | None = None
    cache_creation: CacheCreation | None = None
    output_tokens: Tokens | None = None
    speed: str | None = None


class Block(msgspec.Struct, gc=False):
    type: str | None = None
    id: str | None = None
    name: str | None = None
    #: left undecoded (a slice of the line) until a prompt's text is wanted:
    #: most text blocks are replies whose words we never look at
    text: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    is_error: bool | None = None

    def text_str(self) -> str | None:
        if not self.text:
            return None
        try:
            value = msgspec.json.decode(self.text)
        except UnicodeDecodeError:
            # a raw byte that is not UTF-8 inside the string (issue 8, item 1)
            try:
                value = msgspec.json.decode(_replace_bad_utf8(bytes(self.text)))
            except BAD_LINE:
                return None
        except BAD_LINE:
            return None
        return value if isinstance(value, str) else None


class Message(msgspec.Struct, gc=False):
    id: str | None = None
    role: str | None = None
    model: str | None = None
    content: str | list[Block] | None = None
    stop_reason: str | None = None
    usage: Usage | None = None


class Line(msgspec.Struct, gc=False):
    isSidechain: bool | None = None
    cwd: str | None = None
    sessionId: str | None = None
    version: str | None = None
    gitBranch: str | None = None
    type: str | None = None
    message: Message | str | None = None
    requestId: str | None = None
    timestamp: str | None = None
    subtype: str | None = None
    isMeta: bool | None = None
    isCompactSummary: bool | None = None
    summary: str | None = None
    customTitle: str | None = None
    aiTitle: str | None = None
    title: str | None = None


class Stamp(msgspec.Struct, gc=False):
    """All a progress line tells us: when, and for which session."""

    sessionId: str | None = None
    timestamp: str | None = None


_decode_line_strict = msgspec.json.Decoder(Line).decode
_decode_lines = msgspec.json.Decoder(Line).decode_lines
_decode_stamp_strict = msgspec.json.Decoder(Stamp).decode


def _replace_bad_utf8(raw: bytes | memoryview) -> bytes:
    return bytes(raw).decode("utf-8", "replace").encode("utf-8")


def _decode_line(raw: bytes | memoryview) -> Line:
    """Decode one line; bytes that are not UTF-8 become U+FFFD (issue 8, item 1).

    msgspec raises ``UnicodeDecodeError`` (not ``DecodeError``) for them; the
    slow path runs only then, so valid lines cost nothing extra.
    """
    try:
        return _decode_line_strict(raw)
    except UnicodeDecodeError:
        return _decode_line_strict(_replace_bad_utf8(raw))


def _decode_stamp(raw: bytes | memoryview) -> Stamp:
    try:
        return _decode_stamp_strict(raw)
    except UnicodeDecodeError:
        return _decode_stamp_strict(_replace_bad_utf8(raw))

#: Progress lines (tool output streaming in, 2.1.x) are close to half of all
#: lines and say nothing but "still active": line by line (:func:`_parse_each`),
#: only the last one of a read is decoded, for its timestamp. Claude Code writes
#: compact JSON, so the top-level type appears exactly like this; anything else
#: takes the full path.
_PROGRESS = b'"type":"progress"'
#: The top-level "type" comes before "data" (seen at bytes 189-302 in real
#: files); looking only this far keeps the check off the bulk of long lines.
_PROGRESS_WITHIN = 1024


class FileAgg(msgspec.Struct):
    """What one transcript file contributes to its session.

    ``buckets`` maps ``"<model>|<long>|<fast>"`` to
    ``[input, output, cache_write_5m, cache_write_1h, cache_read]`` so cost is
    computed at read time from whatever price table is loaded.
    """

    session_id: str | None = None
    cwd: str | None = None
    git_branch: str | None = None
    model: str | None = None
    version: str | None = None
    first_ts: float | None = None
    last_ts: float | None = None
    #: the same two as written (ISO 8601 from one writer compares as text), so
    #: each line costs a string comparison instead of a date parse
    first_raw: str | None = None
    last_raw: str | None = None
    messages: int = 0
    tool_calls: int = 0
    buckets: dict[str, list[int]] = msgspec.field(default_factory=dict)
    #: the same usage by when it was written: ``"<slot>|<bucket key>"``, a slot
    #: being a UTC quarter hour (Unix time // 900). Every time zone's offset is
    #: a whole number of quarter hours, so each slot lies in one local day:
    #: ``GET /stats`` adds them up per local day (server/stats.py).
    slots: dict[str, list[int]] = msgspec.field(default_factory=dict)
    custom_title: str | None = None
    ai_title: str | None = None
    summary: str | None = None
    first_prompt: str | None = None
    first_command: str | None = None
    last_kind: str | None = None
    recent: dict[str, list[int]] = msgspec.field(default_factory=dict)
    recent_tools: list[str] = msgspec.field(default_factory=list)
    lines: int = 0
    bad_lines: int = 0


class ParseResult(msgspec.Struct):
    lines: int = 0
    bad: int = 0


# --- status --------------------------------------------------------------------
#
# The last meaningful entry of the main transcript says whose turn it is:
#   user prompt, tool result, assistant tool_use  -> "running" (agent mid-turn)
#   assistant text/thinking reply, end-of-turn system entries (turn_duration,
#   stop_hook_summary), an interrupt                -> "waiting" (needs the user)
# Progress, snapshots, queue operations, titles and summaries say nothing about
# the turn and are ignored. Then the file's age wins: a transcript unchanged for
# --idle-after-s is "idle" whatever its last entry (see Index.status()).

RUNNING_KINDS = frozenset({"prompt", "tool_result", "tool_use"})

_NOT_A_PROMPT = re.compile(
    r"^\s*(<command-name>|<command-message>|<local-command-stdout>|<local-command-stderr>|"
    r"<bash-input>|<bash-stdout>|<system-reminder>|Caveat: The messages below)"
)
#: User lines Claude Code writes in the person's name (issue 8, item 25): shown
#: in ``recent`` as what they are, never a title. ``isMeta`` and
#: ``isCompactSummary`` lines say so in a field; these two only in their text.
_INTERRUPT = "[Request interrupted by user"
_TASK = "<task-notification>"
_TASK_SUMMARY = re.compile(r"<summary>(.*?)</summary>", re.S)
_TASK_STATUS = re.compile(r"<status>(.*?)</status>", re.S)
_COMMAND = re.compile(r"<command-name>([^<]*)</command-name>(?:.*?<command-args>([^<]*)</command-args>)?", re.S)
_WS = re.compile(r"\s+")
#: Enough text to fill any summary line once whitespace is collapsed.
_SHOWN_SOURCE = 16 * 1024


def one_line(text: str, limit: int = TITLE_MAX) -> str:
    """Collapse whitespace and cut to ``limit`` characters (with an ellipsis)."""
    flat = _WS.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def shown(text: str, limit: int = TITLE_MAX) -> str:
    """``one_line`` with keys, tokens and passwords masked (issue 8, item 19).

    Every title and summary cut from a transcript goes through here. Masking
    comes before the cut so that a key the limit would cut in half is still
    recognised and masked whole.
    """
    # Imported here: only the first call pays for it (its patterns are
    # compiled only for a text that may hold a key: redact.may_hold_secret).
    from sessionwatch.redact import mask

    return one_line(mask(one_line(text[:_SHOWN_SOURCE], limit + 1024)), limit)


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):
        return None


def _prompt_text(content: str | list[Block] | None) -> str | None:
    """The text of a user line, or None for tool results and command noise.

    Still includes interrupts and task notifications: see :func:`_user_kind`.
    """
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        if any(b.type == "tool_result" for b in content):
            return None
        parts = [t for b in content if b.type == "text" and (t := b.text_str())]
        if not parts:
            return None
        text = "\n".join(parts)
    else:
        return None
    if not text.strip() or _NOT_A_PROMPT.match(text):
        return None
    return text


def _user_kind(text: str) -> str:
    """``prompt`` for what a person typed, else what Claude Code wrote for them."""
    if text.startswith(_INTERRUPT):
        return "interrupt"
    if text.lstrip().startswith(_TASK):
        return "task"
    return "prompt"


def _task_summary(text: str) -> str:
    found = _TASK_SUMMARY.search(text)
    if found is not None and found.group(1).strip():
        return found.group(1)
    status = _TASK_STATUS.search(text)
    return f"background task {status.group(1).strip() if status else 'finished'}"


def _command(content: str | list[Block] | None) -> str | None:
    """``/init`` for a slash-command line: a title when nobody typed a prompt."""
    if isinstance(content, list):
        content = "\n".join(t for b in content if b.type == "text" and (t := b.text_str()))
    if not isinstance(content, str):
        return None
    found = _COMMAND.search(content)
    if found is None:
        return None
    return shown(f"{found.group(1)} {found.group(2) or ''}")


#: How much :func:`parse_bytes` decodes in one call: a stretch of whole
#: lines about this long. Bounds the entries alive at once (a few MiB of
#: structs per MiB of transcript) and what one bad line sends down the
#: line-by-line path.
BATCH_BYTES = 1024 * 1024


def parse_bytes(
    agg: FileAgg,
    data: bytes | bytearray,
    *,
    kind: Kind,
    source: str = "",
    start: int = 0,
    stop: int | None = None,
) -> ParseResult:
    """Fold complete JSON lines from ``data[start:stop]`` into ``agg``.

    That range must end at a line boundary (``data`` may be a reused read
    buffer holding more: nothing past ``stop`` is looked at). Lines that are
    not JSON objects of the expected shape are counted in ``agg.bad_lines``
    and skipped; the first of each file is logged (``source`` names the file).

    Stretches of about :data:`BATCH_BYTES` are decoded by one call of
    msgspec's ``decode_lines``, in place (a memoryview of ``data``): finding
    each line in Python and decoding it by itself cost a third of a read.
    A stretch holding anything that is not an entry (a bad line, bytes that
    are not UTF-8) is read again line by line (:func:`_parse_each`), which
    skips and counts exactly the bad lines. ``decode_lines`` reads JSON
    values between whitespace, so a line holding two whole entries (a write
    torn just before its newline) counts as both, here and line by line.
    """
    size = len(data) if stop is None else stop
    main = kind == "main"
    view = memoryview(data)
    rfind = data.rfind
    result = ParseResult()
    pos = start
    while pos < size:
        cut = size
        if size - pos > BATCH_BYTES:
            cut = rfind(b"\n", pos, pos + BATCH_BYTES) + 1
            if cut <= 0:  # one line longer than a batch: up to its end
                cut = data.find(b"\n", pos + BATCH_BYTES, size) + 1 or size
        lines: list[Line] | None = None
        if cut - pos <= MAX_LINE_BYTES:  # longer: one line over the limit, skipped and counted line by line
            try:
                lines = _decode_lines(view[pos:cut])
            except (*BAD_LINE, UnicodeDecodeError):
                pass  # a bad line in it: line by line
        if lines is None:
            one = _parse_each(agg, data, main, source, pos, cut)
            result.lines += one.lines
            result.bad += one.bad
        else:
            _fold(agg, lines, main)
            result.lines += len(lines)
        pos = cut
    _convert_stamps(agg)
    agg.lines += result.lines
    return result


def _fold(agg: FileAgg, lines: list[Line], main: bool) -> None:
    """Fold decoded entries into ``agg``.

    Progress lines (tool output streaming in, 2.1.x: close to half of all
    lines) say nothing but "still active": once a file has a first time,
    only the last one's time counts (the same as :func:`_parse_each`)."""
    apply = _apply
    progress = None
    for line in lines:
        if line.type == "progress" and agg.first_raw is not None:
            progress = line
            continue
        apply(agg, line, main)
    if progress is not None:
        _stamp(agg, progress.timestamp)


def _parse_each(agg: FileAgg, data: bytes | bytearray, main: bool, source: str, start: int, size: int) -> ParseResult:
    """:func:`parse_bytes`, one line at a time: for a stretch with a bad line.

    Lines are found with ``find`` and decoded from a memoryview of ``data``:
    no line is copied, and progress lines are looked at in place.
    """
    result = ParseResult()
    last_progress = -1, -1
    lines = 0
    view = memoryview(data)
    find = data.find
    decode = _decode_line_strict
    apply = _apply
    pos = start
    while pos < size:
        start = pos
        end = find(b"\n", start, size)
        if end < 0:
            end = size
        pos = end + 1
        if end == start:
            continue
        first = data[start]
        if first in _SPACE and data[start:end].isspace():
            continue
        lines += 1
        if end - start > MAX_LINE_BYTES:
            _bad(agg, result, source, f"line of {end - start} bytes exceeds the limit")
            continue
        if (
            first == 0x7B  # {
            and data[end - 1] == 0x7D  # }
            and agg.first_raw is not None
            # found past ``end`` is in a later line or past ``stop`` (the pattern
            # has no newline, and the range ends at a line boundary)
            and 0 <= find(_PROGRESS, start, start + _PROGRESS_WITHIN) < end
        ):
            last_progress = start, end
            continue
        try:  # _decode_line, inline
            line = decode(view[start:end])
        except UnicodeDecodeError:
            try:
                line = decode(_replace_bad_utf8(view[start:end]))
            except BAD_LINE as exc:
                _bad(agg, result, source, str(exc))
                continue
        except BAD_LINE as exc:
            # two whole entries on one line (a write torn just before its
            # newline): both count, as in parse_bytes' batches
            try:
                torn = _decode_lines(view[start:end])
            except BAD_LINE:
                _bad(agg, result, source, str(exc))
                continue
            lines += len(torn) - 1
            _fold(agg, torn, main)
            continue
        apply(agg, line, main)
    if last_progress[0] >= 0:
        try:
            stamp = _decode_stamp(view[last_progress[0] : last_progress[1]])
        except BAD_LINE as exc:
            _bad(agg, result, source, str(exc))
        else:
            _stamp(agg, stamp.timestamp)
    result.lines = lines
    return result


#: The bytes ``bytes.isspace`` counts as whitespace: a line starting with one
#: is checked for being blank.
_SPACE = frozenset(b" \t\n\r\x0b\x0c")


def _stamp(agg: FileAgg, ts: str | None) -> None:
    if not ts or not ts[:1].isdigit():
        return
    if agg.first_raw is None or ts < agg.first_raw:
        agg.first_raw = ts
    if agg.last_raw is None or ts > agg.last_raw:
        agg.last_raw = ts


def _convert_stamps(agg: FileAgg) -> None:
    first = _ts(agg.first_raw)
    if first is not None:
        agg.first_ts = first
    last = _ts(agg.last_raw)
    if last is not None:
        agg.last_ts = last


def _bad(agg: FileAgg, result: ParseResult, source: str, why: str) -> None:
    if agg.bad_lines == 0:
        _log().warning("skipping bad transcript line in %s: %s", source or "transcript", why[:200])
    agg.bad_lines += 1
    result.bad += 1


def apply_line(agg: FileAgg, line: Line, *, kind: Kind) -> None:
    """Fold one decoded line into ``agg``."""
    _apply(agg, line, kind == "main")


def _apply(agg: FileAgg, line: Line, main: bool) -> None:
    """:func:`apply_line` for a file whose kind is known (``main``).

    Runs once per user and assistant line of every transcript, so the common
    path calls no helpers (each call costs as much as a field's handling) and
    makes no generators or temporary lists.
    """
    t = line.type
    if t != "assistant" and t != "user":
        if t == "summary":
            if line.summary:
                agg.summary = shown(line.summary)
            return
        if t == "custom-title":
            if line.customTitle:
                agg.custom_title = shown(line.customTitle)
            return
        if t == "ai-title":
            text = line.aiTitle or line.title
            if text:
                agg.ai_title = shown(text)
            return

    sid = line.sessionId
    if sid and agg.session_id is None:
        agg.session_id = sid
    ts = line.timestamp
    if ts and ts[:1].isdigit():  # _stamp, inline
        first = agg.first_raw
        if first is None or ts < first:
            agg.first_raw = ts
        last = agg.last_raw
        if last is None or ts > last:
            agg.last_raw = ts
    value = line.cwd
    if value:
        agg.cwd = value
    value = line.gitBranch
    if value:
        agg.git_branch = value
    value = line.version
    if value:
        agg.version = value

    main_turn = main and not line.isSidechain
    msg = line.message
    if msg is None or isinstance(msg, str):
        if t == "system" and main_turn and line.subtype in ("turn_duration", "stop_hook_summary"):
            agg.last_kind = "end"
        return
    if t == "assistant":
        _assistant(agg, line, msg, main_turn)
    elif t == "user":
        if line.isMeta or line.isCompactSummary:
            return
        content = msg.content
        if isinstance(content, list):
            for block in content:
                if block.type == "tool_result":
                    if main_turn:
                        agg.last_kind = "tool_result"
                        agg.messages += 1
                    return
        text = _prompt_text(content)
        if main_turn and text is None and agg.first_command is None:
            agg.first_command = _command(content)
        if main_turn and text is not None:
            said = _user_kind(text)
            if said == "interrupt":
                agg.last_kind = "interrupt"
            else:
                # a task notification starts a turn too: the agent answers it
                agg.messages += 1
                agg.last_kind = "prompt"
                if said == "prompt" and agg.first_prompt is None:
                    agg.first_prompt = shown(text)
    elif t == "system" and main_turn:
        if line.subtype in ("turn_duration", "stop_hook_summary"):
            agg.last_kind = "end"


SLOT_S: Final = 900
#: ISO minute prefix ("2026-01-01T00:00") of a UTC time → its slot and the
#: slot's key prefix ("1767225600|" style: ``"<slot>|"``); bounded
_slot_cache: dict[str, tuple[int, str]] = {}
_NOT_A_SLOT: Final = (-1, "")
#: where the growth of a response without a time goes (it is in no quarter hour)
_NO_SLOT: list[int] = [0, 0, 0, 0, 0]


def slot_of(ts: str | None) -> int:
    """The quarter hour (Unix time // 900) of an entry's ``timestamp``; -1 if it has none."""
    return _slot(ts)[0]


def _slot(ts: str | None) -> tuple[int, str]:
    """:func:`slot_of` and the slot's key prefix in ``FileAgg.slots``."""
    if not ts or not ts[:1].isdigit():
        return _NOT_A_SLOT
    if ts[-1:] == "Z" and len(ts) >= 17:
        prefix = ts[:16]
        found = _slot_cache.get(prefix)
        if found is None:
            when = _ts(prefix + ":00Z")
            if when is None:
                return _NOT_A_SLOT
            if len(_slot_cache) > 65536:
                _slot_cache.clear()
            slot = int(when // SLOT_S)
            found = _slot_cache[prefix] = (slot, f"{slot}|")
        return found
    when = _ts(ts)
    if when is None:
        return _NOT_A_SLOT
    slot = int(when // SLOT_S)
    return slot, f"{slot}|"


#: The end of a bucket key (``"<model>|<long>|<fast>"``), by ``2 * long + fast``.
_LONG_FAST: Final = ("|0|0", "|0|1", "|1|0", "|1|1")


def _assistant(agg: FileAgg, line: Line, msg: Message, main_turn: bool) -> None:
    model = msg.model
    if model == "<synthetic>":
        # Made locally by Claude Code (errors, interrupts): no real usage.
        if main_turn:
            agg.last_kind = "reply"
        return
    if model:
        agg.model = model

    new_response = True
    usage = msg.usage
    mid = msg.id
    if usage is not None and model:
        # Lines sharing ``message.id`` + ``requestId`` are one response: its
        # usage is counted once, keeping the largest seen for the group
        # (streamed lines grow ``output_tokens``).
        inp = usage.input_tokens or 0
        out = usage.output_tokens or 0
        cr = usage.cache_read_input_tokens or 0
        split = usage.cache_creation
        if split is not None:
            w5 = split.ephemeral_5m_input_tokens or 0
            w1 = split.ephemeral_1h_input_tokens or 0
            total = usage.cache_creation_input_tokens
            if total is not None and total > w5 + w1:
                w5 = total - w1  # an unsplit remainder is priced as 5-minute writes
        else:
            w5, w1 = usage.cache_creation_input_tokens or 0, 0
        long = 1 if inp + w5 + w1 + cr > 200_000 else 0
        fast = 1 if usage.speed == "fast" else 0
        bucket_key = model + _LONG_FAST[long + long + fast]
        buckets = agg.buckets
        bucket = buckets.get(bucket_key)
        if bucket is None:
            bucket = buckets[bucket_key] = [0, 0, 0, 0, 0]
        recent = agg.recent
        key: str | None = f"{mid}:{line.requestId}" if mid else None
        old = recent.get(key) if key is not None else None
        if old is None:
            bucket[0] += inp
            bucket[1] += out
            bucket[2] += w5
            bucket[3] += w1
            bucket[4] += cr
            ts = line.timestamp  # _slot, inline when cached
            found = _slot_cache.get(ts[:16]) if ts and ts[-1:] == "Z" else None
            slot, slot_prefix = found if found is not None else _slot(ts)
            if slot >= 0:
                skey = slot_prefix + bucket_key
                slots = agg.slots
                sb = slots.get(skey)
                if sb is None:
                    sb = slots[skey] = [0, 0, 0, 0, 0]
                sb[0] += inp
                sb[1] += out
                sb[2] += w5
                sb[3] += w1
                sb[4] += cr
            if key is not None:  # _remember, inline
                recent[key] = [inp, out, w5, w1, cr, long, fast, slot]
                if len(recent) > DEDUPE_WINDOW:
                    del recent[next(iter(recent))]
        else:
            new_response = False
            # Same response in another bucket never happens in practice: keep the first.
            if len(old) == 8 and old[5] == long and old[6] == fast:
                # the response's usage stays in the quarter hour of its first line
                slot = old[7]
                sb = agg.slots.get(f"{slot}|{bucket_key}") if slot >= 0 else None
                if sb is None:
                    sb = _NO_SLOT
                if inp > old[0]:
                    bucket[0] += inp - old[0]
                    sb[0] += inp - old[0]
                    old[0] = inp
                if out > old[1]:
                    bucket[1] += out - old[1]
                    sb[1] += out - old[1]
                    old[1] = out
                if w5 > old[2]:
                    bucket[2] += w5 - old[2]
                    sb[2] += w5 - old[2]
                    old[2] = w5
                if w1 > old[3]:
                    bucket[3] += w1 - old[3]
                    sb[3] += w1 - old[3]
                    old[3] = w1
                if cr > old[4]:
                    bucket[4] += cr - old[4]
                    sb[4] += cr - old[4]
                    old[4] = cr
    elif mid:
        key = f"{mid}:{line.requestId}"
        new_response = key not in agg.recent
        if new_response:
            _remember(agg, key, [0, 0, 0, 0, 0, 0, 0])
    if main_turn and new_response:
        agg.messages += 1

    content = msg.content
    has_tool_use = False
    if isinstance(content, list):
        for block in content:
            if block.type == "tool_use":
                has_tool_use = True
                bid = block.id
                if bid is None:
                    agg.tool_calls += 1
                else:
                    tools = agg.recent_tools
                    if bid not in tools:
                        agg.tool_calls += 1
                        tools.append(bid)
                        if len(tools) > DEDUPE_WINDOW:
                            del tools[0]
    if main_turn:
        if has_tool_use or msg.stop_reason == "tool_use":
            agg.last_kind = "tool_use"
        elif content:
            agg.last_kind = "reply"


def _remember(agg: FileAgg, key: str, value: list[int]) -> None:
    agg.recent[key] = value
    if len(agg.recent) > DEDUPE_WINDOW:
        del agg.recent[next(iter(agg.recent))]


# --- locating transcripts ------------------------------------------------------


class TranscriptPath(msgspec.Struct, frozen=True):
    path: Path
    kind: Kind
    #: the session id for main transcripts, the parent for nested subagents,
    #: None for flat subagents (known only from their lines).
    session_id: str | None


def classify(path: Path, root: Path) -> TranscriptPath | None:
    """Say what a path under the projects dir is, or None if it is no transcript."""
    if path.suffix != ".jsonl":
        return None
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    name = path.stem
    if len(parts) == 2:
        if name.startswith("agent-"):
            return TranscriptPath(path, "subagent", None)
        return TranscriptPath(path, "main", name)
    if len(parts) == 4 and parts[2] == "subagents":
        return TranscriptPath(path, "subagent", parts[1])
    return None


# --- recent activity (read on demand, never stored) ----------------------------


def recent_activity(data: bytes, limit: int = 10) -> list[dict[str, Any]]:
    """Short one-line summaries of the last prompts, tool calls and replies.

    Only names and the first words are kept, with secrets masked: transcripts
    hold secrets, and the detail endpoint must not leak whole message bodies.
    Kinds: ``prompt`` (typed by a person), ``task`` (a background task's
    notification), ``interrupt``, ``compact`` (the conversation was
    summarised), ``tool`` and ``reply``.
    """
    items: list[tuple[str | None, str, str]] = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            line = _decode_line(raw)
        except BAD_LINE:
            continue
        msg = line.message if isinstance(line.message, Message) else None
        if msg is None or line.isMeta or line.isSidechain:
            continue
        when = line.timestamp
        if line.type == "user":
            if line.isCompactSummary:
                items.append((when, "compact", "conversation compacted"))
                continue
            text = _prompt_text(msg.content)
            if text is None:
                continue
            kind = _user_kind(text)
            if kind == "interrupt":
                text = text.strip().strip("[]")
            elif kind == "task":
                text = _task_summary(text)
            items.append((when, kind, text))
        elif line.type == "assistant" and isinstance(msg.content, list):
            for block in msg.content:
                if block.type == "tool_use":
                    items.append((when, "tool", block.name or "tool"))
                elif block.type == "text" and (text := block.text_str()):
                    items.append((when, "reply", text))
    # summarised last: masking costs more than cutting, and most items are dropped
    return [
        {"timestamp": when, "kind": kind, "summary": shown(text, 80)}
        for when, kind, text in items[-limit:]
    ]
