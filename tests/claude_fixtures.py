"""Fixtures for tests that run the real Claude Code CLI; import them into a test module::

    from .claude_fixtures import claude_home, fake_api  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .claude_cli import ClaudeHome, claude_bin
from .fakeapi import FakeAPI


@pytest.fixture
def fake_api() -> Iterator[FakeAPI]:
    """A started fake Messages API with an empty script: call ``fake_api.reset([...])`` or ``add``.

    At teardown any request the script did not expect fails the test.
    """
    claude_bin()  # a missing CLI fails here, before anything else happens
    api = FakeAPI().start()
    try:
        yield api
    finally:
        api.stop()
    api.check()


@pytest.fixture
def claude_home(tmp_path: Path) -> ClaudeHome:
    """An empty HOME (``tmp_path/home``) and working directory (``home/work``) for the CLI."""
    return ClaudeHome.create(tmp_path)
