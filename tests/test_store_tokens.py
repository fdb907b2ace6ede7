"""Named tokens in the store (store/base.py TokenStore, store/sqlite.py): the
PostgreSQL store is to pass the same tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessionwatch.access import hash_token
from sessionwatch.store.base import TokenExists, TokenRow
from sessionwatch.store.sqlite import Store


async def test_create_list_lookup_revoke(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "a.db")
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


async def test_last_use_only_moves_forward(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "a.db")
    try:
        h = hash_token("t")
        await store.token_create(TokenRow("ann", "viewer", h, 1.0))
        await store.token_touch({h: 100.0, hash_token("unknown"): 5.0})
        await store.token_touch({h: 90.0})  # an older use written late (another server) does not go back
        assert [t.last_used_at for t in await store.tokens()] == [100.0]
        await store.token_touch({})
    finally:
        await store.close()


async def test_tokens_are_shared_by_every_connection_to_the_file(tmp_path: Path) -> None:
    a, b = await Store.open(tmp_path / "a.db"), await Store.open(tmp_path / "a.db")
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
