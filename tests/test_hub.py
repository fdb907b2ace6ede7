"""The hub: deltas, ids, replay, filters, one encoding, slow subscribers."""

from __future__ import annotations

from typing import Any

from sessionwatch.hub import Filter, Hub


def sess(sid: str, **kw: Any) -> dict[str, Any]:
    base = {"id": sid, "source": "claude", "project": "/p", "status": "waiting", "tokens": {"output": 0}}
    base.update(kw)
    return base


def messages(hub: Hub, sub: Any) -> list[bytes]:
    chunk = b"".join(sub.items)
    sub.items.clear()
    return [m for m in chunk.split(b"\n\n") if m]


def test_diff_publishes_only_what_changed_with_increasing_ids() -> None:
    hub = Hub(first_id=0)
    hub.load([sess("a"), sess("b")])
    events = hub.apply({"a": sess("a", status="running"), "b": sess("b"), "c": sess("c")})
    assert [(e.type, [s["id"] for s in e.sessions]) for e in events] == [
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
    hub = Hub(first_id=0, buffer_size=2)
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
