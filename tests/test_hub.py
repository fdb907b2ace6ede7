"""The hub: deltas, ids, replay, filters, one encoding, slow subscribers."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from sessionwatch.hub.core import Hub
from sessionwatch.hub.events import Filter
from sessionwatch.model import Session

from .sessions import session


def sess(sid: str, **kw: Any) -> Session:
    return session(sid, **kw)


def messages(hub: Hub, sub: Any) -> list[bytes]:
    chunk = b"".join(sub.items)
    sub.items.clear()
    return [m for m in chunk.split(b"\n\n") if m]


def test_diff_publishes_only_what_changed_with_increasing_ids() -> None:
    hub = Hub(first_id=0)
    hub.load([sess("a"), sess("b")])
    events = hub.apply({"a": sess("a", status="running"), "b": sess("b"), "c": sess("c")})
    assert [(e.type, [s.id for s in e.sessions]) for e in events] == [
        ("session-created", ["c"]),
        ("session-updated", ["a"]),
    ]
    assert [e.id for e in events] == [1, 2]
    (deleted,) = hub.apply({"b": None, "zzz": None})
    assert deleted.type == "session-deleted" and deleted.id == 3
    assert b'"sessions":[{"id":"b"}]' in (deleted.encode() or b"")
    assert hub.apply({"a": sess("a", status="running")}) == []


def test_new_subscriber_gets_init_with_retry_and_the_current_id() -> None:
    hub = Hub(first_id=41)
    hub.load([sess("a")])
    sub = hub.subscribe()
    (init,) = messages(hub, sub)
    assert init.startswith(b"retry: 2000\nid: 41\nevent: init\ndata: ")
    assert b'"id":"a"' in init


def test_resume_replays_exactly_the_missed_events() -> None:
    hub = Hub(first_id=0)
    hub.apply({"a": sess("a")})  # id 1
    hub.apply({"a": sess("a", status="running")})  # id 2
    hub.apply({"b": sess("b")})  # id 3
    sub = hub.subscribe(last_event_id=1)
    got = messages(hub, sub)
    assert got[0] == b"retry: 2000"
    assert [m.split(b"\n")[0] for m in got[1:]] == [b"id: 2", b"id: 3"]
    assert messages(hub, hub.subscribe(last_event_id=3)) == [b"retry: 2000"]


def test_resume_from_outside_the_buffer_gets_init() -> None:
    hub = Hub(first_id=0, buffer_size=2, keep_events=0, keep_s=0)
    for i in range(5):
        hub.apply({f"s{i}": sess(f"s{i}")})
    assert b"event: init" in messages(hub, hub.subscribe(last_event_id=1))[0]
    assert b"event: init" in messages(hub, hub.subscribe(last_event_id=99))[0]  # a restarted server's ids
    replay = messages(hub, hub.subscribe(last_event_id=3))
    assert [m.split(b"\n")[0] for m in replay[1:]] == [b"id: 4", b"id: 5"]


def test_filters_apply_to_init_and_events() -> None:
    hub = Hub(first_id=0)
    hub.load([sess("a", project="/work/web"), sess("p", source="panel", project="reports")])
    sub = hub.subscribe(Filter(source="panel"))
    (init,) = messages(hub, sub)
    assert b'"id":"p"' in init and b'"id":"a"' not in init
    hub.apply({"a": sess("a", project="/work/web", status="running")})
    assert messages(hub, sub) == []
    proj = hub.subscribe(Filter(project="WEB"))
    messages(hub, proj)
    hub.apply({"a": None})
    (deleted,) = messages(hub, proj)
    assert b"session-deleted" in deleted


def test_an_event_is_encoded_once_for_all_subscribers() -> None:
    hub = Hub(first_id=0)
    subs = [hub.subscribe() for _ in range(3)]
    for s in subs:
        s.items.clear()
    (event,) = hub.apply({"a": sess("a")})
    firsts = [s.items[0] for s in subs]
    assert all(m is firsts[0] for m in firsts)  # the very same bytes object
    assert event.encode() is firsts[0]


def test_a_slow_subscriber_is_dropped_and_the_others_keep_going() -> None:
    hub = Hub(first_id=0, queue_size=5)
    slow = hub.subscribe()
    fast = hub.subscribe()
    for i in range(20):
        hub.apply({f"s{i}": sess(f"s{i}")})
        fast.items.clear()
    assert slow.dropped and slow not in hub.subscribers
    assert fast in hub.subscribers and not fast.dropped
    assert hub.metrics.dropped._value.get() == 1  # type: ignore[attr-defined]


def test_keepalive_only_for_silent_subscribers() -> None:
    hub = Hub(first_id=0)
    sub = hub.subscribe()
    sub.items.clear()
    assert hub.keepalive(3600) == 0
    sub.last_sent -= 7200
    assert hub.keepalive(3600) == 1
    (ka,) = messages(hub, sub)
    assert ka.startswith(b"event: keepalive\n") and b"id:" not in ka


# --- the replay window's memory -------------------------------------------------------

MiB = 1024 * 1024


def big(i: int, size: int, sid: str = "a", **kw: Any) -> dict[str, Any]:
    """Session ``sid`` carrying ``size`` bytes of text of its own (nothing shared)."""
    return sess(sid, title=str(i) + "x" * size, **kw)


def held_by(hub: Hub, publish: Any) -> int:
    """Bytes still allocated once ``publish()`` has run and its results are dropped."""
    gc.collect()
    tracemalloc.start()
    try:
        publish()
        gc.collect()
        return tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


def test_replay_memory_is_bounded_by_bytes_whatever_the_events_size() -> None:
    """Regression: 4,096 whole events were kept whatever their size (300 Panel
    sessions and 4,096 refreshes held 2 GB)."""
    hub = Hub(first_id=0)  # the defaults: 4,096 events, 64 MiB

    def publish() -> None:
        for i in range(400):  # 400 × 256 KiB sessions, ~200 MiB with their encodings
            hub.apply({"a": big(i, 256 * 1024)})  # the state holds one, the window many

    held = held_by(hub, publish)
    assert held <= 64 * MiB + 4 * MiB, f"{held / MiB:.0f} MiB held by the replay window"
    assert 0 < hub.replay_bytes <= 64 * MiB
    assert len(hub.buffer) < 400


def test_filtered_encodings_kept_for_replay_count_toward_the_budget() -> None:
    hub = Hub(first_id=0, buffer_bytes=8 * MiB)
    subs = [hub.subscribe(Filter(project=f"/p{n}")) for n in range(20)]  # all match "/p..."

    def publish() -> None:
        for i in range(60):
            hub.apply({"a": big(i, 64 * 1024, project="/p0/p1/p2/p3/p4/p5/p6/p7/p8/p9/p10")})
            for sub in subs:
                sub.items.clear()

    held = held_by(hub, publish)
    assert held <= 8 * MiB + 2 * MiB, f"{held / MiB:.0f} MiB held"
    assert hub.replay_bytes <= 8 * MiB


def test_resume_from_an_id_evicted_by_bytes_gets_init_and_within_replays_exactly() -> None:
    hub = Hub(first_id=0, buffer_bytes=1 * MiB)
    sent = [hub.apply({"a": big(i, 100 * 1024)})[0] for i in range(30)]  # ids 1..30
    kept = [e.id for e in hub.buffer]
    assert 0 < len(kept) < 30 and kept == list(range(kept[0], 31))
    assert hub.replay_bytes <= 1 * MiB
    evicted = kept[0] - 2  # its successor is gone too: cannot be replayed
    assert b"event: init" in messages(hub, hub.subscribe(last_event_id=evicted))[0]
    replay = messages(hub, hub.subscribe(last_event_id=kept[0] - 1))
    assert replay[0] == b"retry: 2000"
    assert replay[1:] == [(e.encode() or b"").rstrip(b"\n") for e in sent[kept[0] - 1 :]]


def test_an_event_larger_than_the_budget_is_not_kept() -> None:
    hub = Hub(first_id=0, buffer_bytes=64 * 1024)
    hub.apply({"a": sess("a")})
    hub.apply({"b": big(1, 128 * 1024)})
    assert len(hub.buffer) == 0 and hub.replay_bytes == 0
    assert b"event: init" in messages(hub, hub.subscribe(last_event_id=1))[0]
    assert messages(hub, hub.subscribe(last_event_id=2)) == [b"retry: 2000"]


def test_the_window_keeps_1000_events_and_15_minutes_beyond_the_count() -> None:
    now = [1_000_000.0]
    hub = Hub(first_id=0, buffer_size=10)
    hub.clock = lambda: now[0]
    for i in range(1500):  # all within a minute
        now[0] += 0.01
        hub.apply({"a": sess("a", tokens={"output": i})})
    assert len(hub.buffer) == 1500  # 15 minutes are kept whatever the count
    now[0] += 16 * 60  # those are old now: the count applies, down to 1,000
    hub.apply({"a": sess("a", tokens={"output": -1})})
    assert len(hub.buffer) == 1000
    assert [e.id for e in hub.buffer] == list(range(502, 1502))


def test_filtered_replay_is_what_a_live_filtered_subscriber_got() -> None:
    hub = Hub(first_id=0)
    flt = Filter(source="panel")
    live = hub.subscribe(flt)
    live.items.clear()
    hub.apply({"p": sess("p", source="panel"), "c": sess("c")})
    hub.apply({"c": sess("c", status="running")})  # nothing for panel
    hub.apply({"p": sess("p", source="panel", status="running"), "q": sess("q", source="panel")})
    hub.apply({"p": None, "c": None})
    hub.refresh([sess("q", source="panel"), sess("d")])
    got = messages(hub, live)
    assert [m.split(b"\n")[1] for m in got] == [
        b"event: session-created", b"event: session-created", b"event: session-updated",
        b"event: session-deleted", b"event: refresh",
    ]  # fmt: skip
    replay = messages(hub, hub.subscribe(flt, last_event_id=0))
    assert replay == [b"retry: 2000", *got]
    # and every subscriber resuming with the same filter shares the same bytes
    again = hub.subscribe(flt, last_event_id=0)
    assert all(a is b for a, b in zip(list(again.items)[1:], list(hub.subscribe(flt, last_event_id=0).items)[1:]))


async def test_a_dropped_subscriber_ends_its_stream_and_resumes_where_it_left() -> None:
    """The drop both stream backends rely on (stream.py ends the response when
    ``next()`` says None): a subscriber that stops taking its chunks is dropped
    once its queue is full, its stream ends, the others go on, and it resumes
    with the last id it got."""
    hub = Hub(first_id=0, queue_size=4)
    slow = hub.subscribe()
    fast = hub.subscribe()
    first = await slow.next()  # the init; then it stops reading
    assert first is not None and b"event: init" in first
    for i in range(10):
        hub.apply({f"s{i}": sess(f"s{i}")})
        assert await fast.next() is not None
    assert slow.dropped and slow not in hub.subscribers
    assert await slow.next() is None  # the response ends: the client reconnects
    assert hub.metrics.dropped._value.get() == 1  # type: ignore[attr-defined]
    hub.apply({"a": sess("a")})
    assert b'"id":"a"' in (await fast.next() or b"")
    back = messages(hub, hub.subscribe(last_event_id=0))
    assert [m.split(b"\n")[0] for m in back[1:]] == [b"id: %d" % i for i in range(1, 12)]


def test_a_status_filter_sends_a_session_that_leaves_it_as_a_deletion_and_replays_the_same() -> None:
    hub = Hub(first_id=0)
    hub.load([sess("a", status="running"), sess("b", status="waiting")])
    flt = Filter(status=frozenset({"needs_approval", "running"}))
    live = hub.subscribe(flt)
    (init,) = messages(hub, live)
    assert b'"id":"a"' in init and b'"id":"b"' not in init
    hub.apply({"a": sess("a", status="waiting")})  # id 1: leaves the view
    (gone,) = messages(hub, live)
    assert gone.startswith(b"event: session-deleted\ndata: ") and b'"sessions":[{"id":"a"}]' in gone  # no id: line
    hub.apply({"b": sess("b", status="needs_approval"), "a": sess("a", status="idle")})  # id 2: b comes in, a stays out
    got = messages(hub, live)
    assert [m.split(b"\n")[0] for m in got] == [b"event: session-deleted", b"id: 2"]
    assert b'"id":"b"' in got[1] and b'"id":"a"' not in got[1]
    hub.apply({"a": None})  # id 3: deleting an id the client may not show goes through (a no-op for it)
    (deleted,) = messages(hub, live)
    assert deleted.startswith(b"id: 3\nevent: session-deleted")
    # a client resuming from 0 gets exactly what the live one got
    replay = messages(hub, hub.subscribe(flt, last_event_id=0))
    assert replay[1:] == [gone, *got, deleted]
    # and so does one reading the events back from the log's rows
    from sessionwatch.hub.events import Kept
    from sessionwatch.store.base import LoggedEvent

    rows = [k for k in hub.buffer]
    logged = [Kept.from_log(LoggedEvent(k.id, 0, k.type, k.messages[Filter()][k.messages[Filter()].index(b"\ndata: ") + 7 : -2], k.timestamp)) for k in rows]  # type: ignore[index]
    again = [m for k in logged for m in (k.encode(flt)[0] or b"").split(b"\n\n") if m]
    assert again == [gone, *got, deleted]
