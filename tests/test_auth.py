"""auth.py: empty tokens are never tokens, and wrong ones are throttled (issue 8, item 13)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from sessionwatch.server.auth import BURST, Throttle, token_ok
from sessionwatch.config import Settings
from sessionwatch.errors import ConfigError

ServerFactory = Callable[..., Any]


def request_with(*headers: tuple[str, str], query: str = "") -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/all",
            "query_string": query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        }
    )


@pytest.mark.parametrize("token", ["", " ", "\t"])
def test_empty_token_is_a_config_error(token: str) -> None:
    with pytest.raises(ConfigError, match="must not be empty"):
        Settings.resolve(token=token)


def test_blank_token_from_the_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONWATCH_TOKEN", "")
    with pytest.raises(ConfigError, match="must not be empty"):
        Settings.resolve()


def test_empty_presented_token_never_matches() -> None:
    assert not token_ok(request_with(("Authorization", "Bearer ")), "")
    assert not token_ok(request_with(("Authorization", "Bearer ")), "s3cret")
    assert not token_ok(request_with(("Cookie", "sessionwatch_token=")), "")
    assert not token_ok(request_with(query="token="), "")
    assert token_ok(request_with(("Authorization", "bearer  s3cret")), "s3cret")


def test_throttle_refills_over_time() -> None:
    now = [0.0]
    t = Throttle(burst=3, per_minute=6, clock=lambda: now[0])
    for _ in range(3):
        assert t.retry_after("a") == 0
        t.failed("a")
    assert t.retry_after("a") == pytest.approx(10.0)
    assert t.retry_after("b") == 0  # per address
    now[0] = 10.0
    assert t.retry_after("a") == 0
    t.failed("a")
    assert t.retry_after("a") > 0


def test_throttle_forgets_the_oldest_address_past_its_bound() -> None:
    t = Throttle(burst=1, max_clients=100)
    for i in range(1000):
        t.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(t.buckets) == 100


def test_wrong_sign_ins_are_throttled_with_retry_after(sw_server: ServerFactory, projects: Path) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--token", "s3cret"])
    with httpx.Client(base_url=srv.url, timeout=5) as c:
        codes = [c.post("/login", json={"token": f"guess-{i}"}).status_code for i in range(BURST)]
        assert codes == [401] * BURST
        r = c.post("/login", json={"token": "guess-again"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "try again" in r.json()["error"]
        # wrong bearer tokens on the API and the stream are guesses too
        assert c.get("/all", headers={"Authorization": "Bearer guess"}).status_code == 429
        assert c.get("/stream", headers={"Authorization": "Bearer guess"}).status_code == 429
        assert c.get("/auth", headers={"Authorization": "Bearer guess"}).status_code == 429
        # a request with no token at all is simply told it needs one
        assert c.get("/all").status_code == 401
        assert c.get("/healthz").status_code == 200


def test_wrong_bearer_tokens_are_throttled(sw_server: ServerFactory, projects: Path) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--token", "s3cret"])
    codes = [httpx.get(srv.url + "/all", headers={"Authorization": f"Bearer g{i}"}, timeout=5).status_code for i in range(BURST + 5)]
    assert codes[:BURST] == [401] * BURST and set(codes[BURST:]) == {429}


def test_correct_sign_ins_are_never_throttled(sw_server: ServerFactory, projects: Path) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--token", "s3cret"])
    with httpx.Client(base_url=srv.url, timeout=5) as c:
        for _ in range(3 * BURST):
            assert c.post("/login", json={"token": "s3cret"}).status_code == 200
            assert c.get("/all", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        # a few typos on the way do not lock the owner out
        assert c.post("/login", json={"token": "s3cre"}).status_code == 401
        assert c.post("/login", json={"token": "s3cret"}).status_code == 200


def test_throttle_is_per_client_behind_a_trusted_proxy(sw_server: ServerFactory, projects: Path) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--token", "s3cret", "--trusted-proxies", "127.0.0.1"])
    attacker = {"X-Forwarded-For": "198.51.100.7"}
    owner = {"X-Forwarded-For": "192.0.2.10"}
    with httpx.Client(base_url=srv.url, timeout=5) as c:
        for i in range(BURST + 1):
            c.post("/login", json={"token": f"g{i}"}, headers=attacker)
        assert c.post("/login", json={"token": "s3cret"}, headers=attacker).status_code == 429
        assert c.post("/login", json={"token": "s3cret"}, headers=owner).status_code == 200


# --- named tokens (TokenBook) ---------------------------------------------------------


class FakeTokens:
    """A TokenStore that records the batches of last uses it is given."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows
        self.touched: list[dict[str, float]] = []

    async def tokens(self) -> list[Any]:
        return self.rows

    async def token_touch(self, uses: dict[str, float]) -> None:
        self.touched.append(dict(uses))


async def test_token_book_knows_live_named_tokens_and_the_admin() -> None:
    from sessionwatch.access import hash_token
    from sessionwatch.server.auth import TokenBook
    from sessionwatch.store.base import TokenRow

    book = TokenBook(None)
    assert not book.required
    store = FakeTokens([TokenRow("ann", "viewer", hash_token("t-ann"), 1.0), TokenRow("old", "operator", hash_token("t-old"), 1.0, revoked_at=2.0)])
    await book.load(store)  # type: ignore[arg-type]
    assert book.required
    assert book.identify("t-ann") is not None and book.identify("t-ann").name == "ann"  # type: ignore[union-attr]
    assert book.identify("t-old") is None and book.identify("") is None
    admin = TokenBook("s3cret")
    assert admin.required and admin.identify("s3cret").role == "admin"  # type: ignore[union-attr]


async def test_last_uses_are_written_at_most_once_a_minute_per_token() -> None:
    from sessionwatch.access import hash_token
    from sessionwatch.server.auth import TOUCH_S, TokenBook
    from sessionwatch.store.base import TokenRow

    now = [1000.0]
    book = TokenBook(None, clock=lambda: now[0])
    store = FakeTokens([TokenRow("ann", "viewer", hash_token("t"), 1.0)])
    await book.load(store)  # type: ignore[arg-type]
    for _ in range(100):
        book.identify("t")
    await book.touch(store)  # type: ignore[arg-type]
    assert store.touched == [{hash_token("t"): 1000.0}]  # the first use at once
    now[0] += 10
    book.identify("t")
    await book.touch(store)  # type: ignore[arg-type]
    assert len(store.touched) == 1  # within the minute: nothing written
    now[0] += TOUCH_S
    book.identify("t")
    await book.touch(store)  # type: ignore[arg-type]
    assert store.touched[-1] == {hash_token("t"): 1000.0 + 10 + TOUCH_S}
    now[0] += 1
    book.identify("t")
    await book.touch(store, everything=True)  # type: ignore[arg-type]  # shutdown: whatever is left
    assert store.touched[-1] == {hash_token("t"): now[0]} and len(store.touched) == 3
