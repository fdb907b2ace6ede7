"""Transcript decoding: dedupe, subagents, titles, status kinds, bad lines."""

from __future__ import annotations

import json
from typing import Any

from sessionwatch.claude import FileAgg, classify, one_line, parse_bytes, recent_activity
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
