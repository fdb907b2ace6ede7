"""Named tokens in the store (store/base.py TokenStore, store/sqlite.py): the
PostgreSQL store passes the same tests (the ``backend`` fixture, tests/stores.py)."""

from __future__ import annotations

import pytest

from sessionwatch.access import hash_token
from sessionwatch.store.base import TokenExists, TokenRow

from .stores import Backend


async def test_create_list_lookup_revoke(backend: Backend) -> None:
    store = await backend.open()
    try:
        await store.token_create(TokenRow("ann", "viewer", hash_token("t-ann"), 10.0))
        await store.token_create(TokenRow("ci", "agent", hash_token("t-ci"), 20.0))
        with pytest.raises(TokenExists, match="'ann' exists already"):
            await store.token_create(TokenRow("ann", "operator", hash_token("other"), 30.0))
        assert [(t.name, t.role, t.created_at) for t in await store.tokens()] == [("ann", "viewer", 10.0), ("ci", "agent", 20.0)]
        found = await store.token_by_hash(hash_token("t-ci"))
        assert found is not None and (found.name, found.revoked_at) == ("ci", None)
        assert await store.token_by_hash(hash_token("nope")) is None

        revoked = await store.token_revoke("ci", 40.0)
        assert revoked is not None and revoked.revoked_at == 40.0
        again = await store.token_revoke("ci", 50.0)  # a revoked token stays as it was
        assert again is not None and again.revoked_at == 40.0
        assert await store.token_revoke("nobody", 50.0) is None
        assert (await store.token_by_hash(hash_token("t-ci"))).revoked_at == 40.0  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_last_use_only_moves_forward(backend: Backend) -> None:
    store = await backend.open()
    try:
        h = hash_token("t")
        await store.token_create(TokenRow("ann", "viewer", h, 1.0))
        await store.token_touch({h: 100.0, hash_token("unknown"): 5.0})
        await store.token_touch({h: 90.0})  # an older use written late (another server) does not go back
        assert [t.last_used_at for t in await store.tokens()] == [100.0]
        await store.token_touch({})
    finally:
        await store.close()


async def test_tokens_are_shared_by_every_connection_to_the_file(backend: Backend) -> None:
    a, b = await backend.open(), await backend.open()
    try:
        await a.token_create(TokenRow("ann", "operator", hash_token("t"), 1.0))
        assert [t.name for t in await b.tokens()] == ["ann"]
        await b.token_revoke("ann", 2.0)
        assert (await a.tokens())[0].revoked_at == 2.0
    finally:
        await a.close()
        await b.close()


def test_a_listed_token_never_shows_its_hash() -> None:
    assert "hash" not in TokenRow("ann", "viewer", "abc", 1.0).to_json()


async def test_agents_their_sessions_and_commands(backend: Backend) -> None:
    store = await backend.open()
    await store.write(store.agent_seen("a1", "host-1", 3, 10.0))
    await store.write(store.agent_seen("a1", "host-1b", 2, 11.0))  # seq never lowered
    assert await store.load_agents() == [("a1", "host-1b", 3, 11.0)]
    await store.write(store.agent_sessions_put("a1", "host-1b", 4, 12.0, [("s1", b'{"id":"s1"}'), ("s2", b"{}")], []))
    await store.write(store.agent_sessions_put("a1", "host-1b", 5, 13.0, [("s1", b'{"id":"s1","v":2}')], ["s2"]))
    assert await store.load_agent_sessions() == [("s1", "a1", "host-1b", b'{"id":"s1","v":2}', 5, 13.0)]
    assert await store.agent_commands("a1", 0) == ([], 0)
    first = await store.add_agent_command("a1", "approve", b"x", 14.0)
    second = await store.add_agent_command("a1", "budget", b"y", 15.0)
    await store.add_agent_command("a2", "budget", b"z", 15.0)
    rows, latest = await store.agent_commands("a1", 0)
    assert rows == [(first, "approve", b"x"), (second, "budget", b"y")] and latest == second + 1
    rows, _ = await store.agent_commands("a1", first)  # the agent has the first: it goes
    assert rows == [(second, "budget", b"y")]
