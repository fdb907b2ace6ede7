"""Transcript decoding: dedupe, subagents, titles, status kinds, bad lines."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import pytest

from sessionwatch.sources.claude import transcript
from sessionwatch.sources.claude.transcript import FileAgg, classify, one_line, parse_bytes, recent_activity
from sessionwatch.prices import PriceTable

from .conftest import FIXTURES


def line(**fields: Any) -> bytes:
    base = {"sessionId": "s1", "timestamp": "2026-01-01T00:00:00Z", "cwd": "/work/app"}
    base.update(fields)
    return json.dumps(base).encode() + b"\n"


def assistant(mid: str, req: str, out: int, *, model: str = "claude-sonnet-4-5", block: dict[str, Any] | None = None, **usage: Any) -> bytes:
    u = {"input_tokens": 10, "output_tokens": out, **usage}
    return line(
        type="assistant",
        requestId=req,
        message={"id": mid, "model": model, "role": "assistant", "content": [block or {"type": "text", "text": "ok"}], "usage": u},
    )


def user(text: str, **extra: Any) -> bytes:
    return line(type="user", message={"role": "user", "content": text}, **extra)


def test_lines_of_one_response_count_once_keeping_the_largest_usage() -> None:
    agg = FileAgg()
    data = assistant("m1", "r1", 30) + assistant("m1", "r1", 30) + assistant("m1", "r1", 285) + assistant("m2", "r2", 5)
    parse_bytes(agg, data, kind="main")
    (bucket,) = agg.buckets.values()
    assert bucket[0] == 20  # input once per response
    assert bucket[1] == 290  # 285 (largest of m1) + 5
    assert agg.messages == 2


def test_same_message_id_with_another_request_is_another_response() -> None:
    agg = FileAgg()
    parse_bytes(agg, assistant("m1", "r1", 7) + assistant("m1", "r2", 7), kind="main")
    assert next(iter(agg.buckets.values()))[1] == 14


def test_synthetic_lines_carry_no_usage() -> None:
    agg = FileAgg()
    parse_bytes(agg, assistant("m1", "r1", 50, model="<synthetic>"), kind="main")
    assert agg.buckets == {}
    assert agg.model is None


def test_cache_writes_are_split_by_ttl_and_unsplit_writes_are_5_minute() -> None:
    agg = FileAgg()
    split = {"cache_creation_input_tokens": 300, "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200}}
    parse_bytes(agg, assistant("m1", "r1", 1, **split) + assistant("m2", "r2", 1, cache_creation_input_tokens=50), kind="main")
    (bucket,) = agg.buckets.values()
    assert bucket[2:4] == [150, 200]


def test_titles_prefer_custom_then_ai_then_summary_then_first_prompt() -> None:
    agg = FileAgg()
    parse_bytes(agg, user("<command-name>/clear</command-name>") + user("  Fix   the\nlogin bug  ") + user("second"), kind="main")
    assert agg.first_prompt == "Fix the login bug"
    parse_bytes(agg, b'{"type":"summary","summary":"Login fix","leafUuid":"x"}\n', kind="main")
    assert agg.summary == "Login fix"
    parse_bytes(agg, b'{"type":"custom-title","customTitle":"My title","sessionId":"s1"}\n', kind="main")
    assert agg.custom_title == "My title"


def test_title_is_cut_to_120_characters() -> None:
    assert len(one_line("x" * 500)) == 120


def test_status_kinds_follow_the_turn() -> None:
    agg = FileAgg()
    parse_bytes(agg, user("do it"), kind="main")
    assert agg.last_kind == "prompt"
    parse_bytes(agg, assistant("m1", "r1", 1, block={"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}), kind="main")
    assert agg.last_kind == "tool_use"
    tool_result = line(type="user", message={"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]})
    parse_bytes(agg, tool_result, kind="main")
    assert agg.last_kind == "tool_result"
    parse_bytes(agg, assistant("m2", "r2", 1), kind="main")
    assert agg.last_kind == "reply"
    # progress and snapshots say nothing about whose turn it is
    parse_bytes(agg, line(type="progress", data={"type": "x"}), kind="main")
    assert agg.last_kind == "reply"
    assert agg.tool_calls == 1


def test_tool_use_repeated_on_streamed_lines_counts_once() -> None:
    agg = FileAgg()
    block = {"type": "tool_use", "id": "t1", "name": "Read", "input": {}}
    parse_bytes(agg, assistant("m1", "r1", 1, block=block) + assistant("m1", "r1", 9, block=block), kind="main")
    assert agg.tool_calls == 1


def test_bad_lines_are_counted_and_the_rest_is_kept() -> None:
    agg = FileAgg()
    data = user("first") + b'"massive error"\n42\n[1]\n{not json\n\xff\xfe\x00garbage\n' + user("second")
    result = parse_bytes(agg, data, kind="main")
    assert result.bad == 5
    assert agg.bad_lines == 5
    assert agg.messages == 2


def _line_by_line(data: bytes, *, kind: str) -> FileAgg:
    """What parse_bytes folds when it reads every line by itself."""
    agg = FileAgg()
    result = transcript._parse_each(agg, data, kind == "main", "", 0, len(data))
    transcript._convert_stamps(agg)
    agg.lines += result.lines
    return agg


@pytest.mark.parametrize("batch", [transcript.BATCH_BYTES, 4096, 1])
def test_batches_fold_every_fixture_as_line_by_line_does(batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """One decode_lines call per stretch gives exactly the totals, titles,
    times and counts of decoding each line: on every real transcript, with
    stretches of every size (1 byte: each line its own stretch)."""
    monkeypatch.setattr(transcript, "BATCH_BYTES", batch)
    files = sorted(FIXTURES.rglob("*.jsonl"))
    assert len(files) >= 20
    for path in files:
        data = path.read_bytes()
        kind = "main" if classify(path, FIXTURES) and not path.name.startswith("agent-") else "subagent"
        agg = FileAgg()
        result = parse_bytes(agg, data, kind=kind)  # type: ignore[arg-type]
        expected = _line_by_line(data, kind=kind)
        assert msgspec.structs.asdict(agg) == msgspec.structs.asdict(expected), path
        assert result.lines == expected.lines and result.bad == expected.bad_lines


def test_a_bad_line_sends_only_its_stretch_line_by_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcript, "BATCH_BYTES", 2048)
    good = [user(f"prompt {i}", timestamp=f"2026-01-01T00:{i:02d}:00Z") for i in range(40)]
    data = b"".join(good[:20]) + b"{not json\n" + b"".join(good[20:])
    seen: list[tuple[int, int]] = []
    each = transcript._parse_each

    def spy(agg: FileAgg, data: bytes, main: bool, source: str, start: int, size: int) -> Any:
        seen.append((start, size))
        return each(agg, data, main, source, start, size)

    monkeypatch.setattr(transcript, "_parse_each", spy)
    agg = FileAgg()
    result = parse_bytes(agg, data, kind="main")
    assert (result.lines, result.bad, agg.bad_lines, agg.messages) == (41, 1, 1, 40)
    assert agg.first_raw == "2026-01-01T00:00:00Z" and agg.last_raw == "2026-01-01T00:39:00Z"
    assert len(seen) == 1 and seen[0][1] - seen[0][0] <= 2048 + len(good[0])


def test_a_line_over_the_limit_is_skipped_and_counted_in_a_batch_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcript, "MAX_LINE_BYTES", 2000)
    monkeypatch.setattr(transcript, "BATCH_BYTES", 500)
    huge = user("x" * 3000)  # valid JSON, but longer than any real entry may be
    agg = FileAgg()
    result = parse_bytes(agg, user("first") + huge + user("third"), kind="main")
    assert (result.lines, result.bad, agg.messages, agg.first_prompt) == (3, 1, 2, "first")


def test_a_write_torn_before_its_newline_keeps_both_entries() -> None:
    """Two whole entries on one line (the newline of the first never
    written) are both read, whether or not their stretch has a bad line."""
    torn = user("first").rstrip(b"\n") + user("second")
    for extra, bad in ((b"", 0), (b"{not json\n", 1)):
        agg = FileAgg()
        result = parse_bytes(agg, torn + extra + user("third"), kind="main")
        assert (agg.messages, agg.first_prompt, result.bad, result.lines) == (3, "first", bad, 3 + bad)


def test_wrongly_typed_fields_are_a_bad_line_not_a_crash() -> None:
    agg = FileAgg()
    parse_bytes(agg, b'{"type":"assistant","message":{"usage":{"input_tokens":"many"}}}\n', kind="main")
    assert agg.bad_lines == 1


def test_classify_main_flat_and_nested_subagents(tmp_path: Any) -> None:
    root = tmp_path
    assert classify(root / "p" / "abc.jsonl", root).kind == "main"  # type: ignore[union-attr]
    flat = classify(root / "p" / "agent-1.jsonl", root)
    assert flat is not None and flat.kind == "subagent" and flat.session_id is None
    nested = classify(root / "p" / "abc" / "subagents" / "agent-2.jsonl", root)
    assert nested is not None and nested.kind == "subagent" and nested.session_id == "abc"
    assert classify(root / "p" / "notes.txt", root) is None
    assert classify(root / "p" / "x" / "y.jsonl", root) is None


def test_recent_activity_is_one_line_summaries_without_bodies() -> None:
    data = user("please read the secrets file and then do a lot of other things " * 5) + assistant(
        "m1", "r1", 1, block={"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/etc/secret"}}
    )
    items = recent_activity(data)
    assert [i["kind"] for i in items] == ["prompt", "tool"]
    assert items[1]["summary"] == "Read"
    assert len(items[0]["summary"]) <= 80
    assert "/etc/secret" not in json.dumps(items)


def test_every_fixture_transcript_parses_and_every_model_has_a_price() -> None:
    prices = PriceTable.embedded()
    files = sorted(FIXTURES.rglob("*.jsonl"))
    assert len(files) >= 15
    for path in files:
        agg = FileAgg()
        parse_bytes(agg, path.read_bytes() + b"\n", kind="main")
        for key in agg.buckets:
            model = key.rsplit("|", 2)[0]
            assert prices.lookup(model) is not None, f"{path.name}: no price for {model}"


# --- issue 8: bytes that are not UTF-8 ---------------------------------------------


def test_invalid_utf8_byte_in_a_prompt_is_replaced_not_fatal() -> None:
    agg = FileAgg()
    bad = user("caf\u00e9 au lait").replace("caf\\u00e9".encode(), b"caf\xe9")
    assert b"\xe9" in bad
    result = parse_bytes(agg, user("first") + bad + user("third"), kind="main")
    assert result.bad == 0
    assert agg.messages == 3
    assert agg.first_prompt == "first"
    alone = FileAgg()
    parse_bytes(alone, bad, kind="main")
    assert alone.first_prompt == "caf\ufffd au lait"


def test_invalid_utf8_byte_in_a_reply_does_not_break_recent_activity() -> None:
    reply = assistant("m1", "r1", 3, block={"type": "text", "text": "voil\u00e0"}).replace("voil\\u00e0".encode(), b"voil\xe0")
    assert b"\xe0" in reply
    items = recent_activity(user("go") + reply)
    assert [(i["kind"], i["summary"]) for i in items] == [("prompt", "go"), ("reply", "voil\ufffd")]
    agg = FileAgg()
    parse_bytes(agg, reply, kind="main")
    assert agg.bad_lines == 0 and next(iter(agg.buckets.values()))[1] == 3


def test_absurd_lines_are_bad_lines_not_exceptions() -> None:
    deep = b'{"type":"user","message":' * 100_000 + b"1" + b"}" * 100_000
    huge = assistant("m1", "r1", 1).replace(b'"input_tokens": 10', b'"input_tokens": 1e400')
    negative = assistant("m2", "r2", -5)
    far = user("x", timestamp="0001-01-01T00:00:00+01:00")
    agg = FileAgg()
    result = parse_bytes(agg, b"\n".join([deep, huge, negative, far]) + b"\n", kind="main")
    assert result.bad == 3 and agg.messages == 1
    assert recent_activity(deep + b"\n" + far) == [{"timestamp": "0001-01-01T00:00:00+01:00", "kind": "prompt", "summary": "x"}]


def test_random_bytes_in_a_transcript_never_raise() -> None:
    """Fuzz-ish: random bytes spliced into a real transcript are replaced or skipped, never raised."""
    rng = random.Random(8)
    base = (FIXTURES / "-tmp" / "representative_messages.jsonl").read_bytes()
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        data += rng.randbytes(rng.randint(0, 64)) + b"\n"
        agg = FileAgg()
        parse_bytes(agg, bytes(data), kind="main")
        recent_activity(bytes(data))


# --- issue 8: lines nobody typed, secrets ---------------------------------------------

TASK = (
    "<task-notification>\n<task-id>b0be39e</task-id>\n<status>completed</status>\n"
    '<summary>Background command "npm test" completed (exit code 0)</summary>\n</task-notification>\n'
    "Read the output file to retrieve the result: /tmp/x.output"
)


def test_task_notifications_interrupts_and_compact_summaries_are_not_typed_prompts() -> None:
    interrupt = line(type="user", message={"role": "user", "content": [{"type": "text", "text": "[Request interrupted by user for tool use]"}]})
    compact = user("This session is being continued from a previous conversation. Summary: ...", isCompactSummary=True)
    meta = user("Caveat: The messages below were generated by the user while running local commands.", isMeta=True)
    data = user(TASK) + interrupt + compact + meta + user("the prompt I typed")
    agg = FileAgg()
    parse_bytes(agg, data, kind="main")
    assert agg.first_prompt == "the prompt I typed"
    items = recent_activity(data)
    assert [i["kind"] for i in items] == ["task", "interrupt", "compact", "prompt"]
    assert items[0]["summary"] == 'Background command "npm test" completed (exit code 0)'
    assert items[1]["summary"] == "Request interrupted by user for tool use"
    # nothing typed at all: no prompt title either
    only = FileAgg()
    parse_bytes(only, user(TASK) + compact, kind="main")
    assert only.first_prompt is None


def test_a_task_notification_starts_the_agent_again() -> None:
    agg = FileAgg()
    parse_bytes(agg, user("go") + assistant("m1", "r1", 1) + user(TASK), kind="main")
    assert agg.last_kind == "prompt"


SECRETS = {
    "AKIAIOSFODNN7EXAMPLE": "use key AKIAIOSFODNN7EXAMPLE for the bucket",
    "sk-proj-Ab12Cd34Ef56Gh78Ij90KlMn": "my key is sk-proj-Ab12Cd34Ef56Gh78Ij90KlMn please",
    "hunter2": "the db says password: hunter2 ok",
    "Sup3rS3cret": "export PASSWORD=Sup3rS3cret",
}


def test_secrets_typed_in_prompts_are_masked_in_titles_and_recent() -> None:
    for secret, text in SECRETS.items():
        agg = FileAgg()
        data = user(text) + b'{"type":"summary","summary":"' + text.encode() + b'"}\n'
        parse_bytes(agg, data, kind="main")
        assert secret not in (agg.first_prompt or "") and "••••" in (agg.first_prompt or "")
        assert secret not in (agg.summary or "")
        assert secret not in json.dumps(recent_activity(data), ensure_ascii=False)


def test_secrets_in_replies_and_command_args_are_masked() -> None:
    reply = assistant("m1", "r1", 1, block={"type": "text", "text": "Done. The new password: hunter2 is set."})
    command = user("<command-name>/deploy</command-name>\n<command-args>--db-password=Tr0ub4dor&3 --env prod</command-args>")
    agg = FileAgg()
    parse_bytes(agg, command + reply, kind="main")
    assert agg.first_command == "/deploy --db-password=•••• --env prod"
    assert "hunter2" not in json.dumps(recent_activity(command + reply))


def test_a_secret_cut_by_the_title_limit_is_still_masked() -> None:
    agg = FileAgg()
    parse_bytes(agg, user("x" * 110 + " AKIAIOSFODNN7EXAMPLE"), kind="main")
    assert "AKIAIOS" not in (agg.first_prompt or "")


def test_parse_bytes_reads_only_its_range_of_a_buffer() -> None:
    """The index parses ranges of a reused read buffer: bytes outside the
    range (another file's, left from an earlier read) are never looked at."""
    first = b'{"type":"user","sessionId":"s1","timestamp":"2026-01-01T00:00:00Z","message":{"role":"user","content":"hi"}}\n'
    # compact, as Claude Code writes it: recognised as progress by its bytes
    progress = b'{"type":"progress","sessionId":"s1","timestamp":"2026-01-02T00:00:00Z","data":{}}\n'
    stale = b'{"type":"progress","sessionId":"s1","timestamp":"2026-09-09T00:00:00Z","data":{}}\n' + user("stale")
    body = first + progress + first.replace(b'"hi"', b'"again"')
    alone = FileAgg()
    parse_bytes(alone, body, kind="main")
    buffer = bytearray(b"x" * 7 + b"\n" + body + stale)
    ranged = FileAgg()
    result = parse_bytes(ranged, buffer, kind="main", start=8, stop=8 + len(body))
    assert result.lines == 3 and result.bad == 0
    assert ranged == alone
    assert ranged.last_raw == "2026-01-02T00:00:00Z" and ranged.messages == 2
