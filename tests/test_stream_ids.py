"""A resume id the server cannot use gets ``init``, never an error (issue 8,
item 22): a browser's EventSource takes any answer but 200 as final."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from .sse import SSEClient


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?last_event_id=abc", {}),
        ("?last_event_id=12abc", {}),
        ("?last_event_id=1e3", {}),
        ("?last_event_id=" + "9" * 5000, {}),
        ("", {"Last-Event-ID": "not-a-number"}),
        ("?last_event_id=999999999999999999", {}),  # past the latest id
        ("", {"Last-Event-ID": "999999999999999999"}),
    ],
)
def test_unusable_last_event_id_gets_init_not_400(
    sw_server: Callable[..., Any], projects: Path, query: str, headers: dict[str, str]
) -> None:
    srv = sw_server(projects_dir=projects)
    latest = httpx.get(srv.url + "/all", timeout=5).json()["last_event_id"]
    client = SSEClient(srv.url + "/stream" + query, headers=headers).start()
    try:
        event = client.next()
        assert client.status == 200
        assert event.event == "init" and len(event.data["sessions"]) == 15
        assert event.id == str(latest)
    finally:
        client.stop()
