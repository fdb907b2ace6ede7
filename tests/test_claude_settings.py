"""sessionwatch's hooks in Claude Code's settings files (integrations/claude_settings.py).

The last tests install into a temporary HOME and run the real Claude Code CLI
(2.1.330) against tests/fakeapi.py: every event sessionwatch installs reaches
a recording /hooks server, in the form chosen for it, with the token.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.errors import ConfigError
from sessionwatch.integrations.claude_settings import (
    BACKUP_SUFFIX,
    EVENT_FORMS,
    HookPlan,
    Installed,
    install,
    is_ours,
    settings_path,
    status,
    uninstall,
)

from .claude_cli import ClaudeHome, run_claude
from .claude_fixtures import claude_home, fake_api  # noqa: F401 - fixtures
from .fakeapi import FakeAPI, Turn
from .hookcapture import HookRecorder

URL = "http://127.0.0.1:8765"

#: A user's own settings, formatted as a person might (4 spaces, unicode, odd key order).
USER_SETTINGS = b"""{
    "model": "claude-sonnet-4-5",
    "permissions": {"allow": ["Bash(ls:*)"]},
    "hooks": {
        "Stop": [
            {"hooks": [{"type": "command", "command": "notify-send 'Claude fini \xc3\xa9t\xc3\xa9'"}]}
        ],
        "PreToolUse": [
            {
                "matcher": "Bash",
                "hooks": [
                    {"type": "command", "command": "~/bin/check-bash.sh", "timeout": 30},
                    {"type": "http", "url": "http://127.0.0.1:9000/audit"}
                ]
            }
        ]
    },
    "env": {"FOO": "1"}
}
"""


def user_file(tmp_path: Path, content: bytes = USER_SETTINGS) -> Path:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def hooks_of(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_bytes())["hooks"])


def test_install_twice_then_uninstall_gives_back_the_users_bytes(tmp_path: Path) -> None:
    path = user_file(tmp_path)
    first = install(path, HookPlan(URL, token_env="SESSIONWATCH_TOKEN"))
    assert first.changed and first.backup == path.with_name("settings.json" + BACKUP_SUFFIX)
    assert first.backup.read_bytes() == USER_SETTINGS
    after_first = path.read_bytes()
    second = install(path, HookPlan(URL, token_env="SESSIONWATCH_TOKEN"))
    assert not second.changed and path.read_bytes() == after_first  # idempotent
    gone = uninstall(path)
    assert gone.changed and gone.removed == len(EVENT_FORMS)
    assert path.read_bytes() == USER_SETTINGS
    assert not uninstall(path).changed


def test_install_keeps_every_user_hook_where_it_was(tmp_path: Path) -> None:
    path = user_file(tmp_path)
    before = json.loads(USER_SETTINGS)
    install(path, HookPlan(URL))
    after = json.loads(path.read_bytes())
    assert {k: v for k, v in after.items() if k != "hooks"} == {k: v for k, v in before.items() if k != "hooks"}
    for event, groups in before["hooks"].items():
        assert after["hooks"][event][: len(groups)] == groups  # the user's groups first, untouched
        assert [is_ours(h) for g in after["hooks"][event][len(groups) :] for h in g["hooks"]] == [True]
    assert set(after["hooks"]) == set(before["hooks"]) | set(EVENT_FORMS)


def test_http_where_the_cli_fires_http_hooks_and_the_command_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    install(path, HookPlan(URL, hook_command=["/opt/sw env/bin/sessionwatch"], approval_wait_s=120))
    hooks = hooks_of(path)
    [[start]] = [g["hooks"] for g in hooks["SessionStart"]]
    assert start == {"type": "command", "command": "'/opt/sw env/bin/sessionwatch' hook --url http://127.0.0.1:8765 #sessionwatch", "timeout": 5}
    [[stop]] = [g["hooks"] for g in hooks["Stop"]]
    assert stop == {"type": "http", "url": "http://127.0.0.1:8765/hooks#sessionwatch", "timeout": 5}
    [[ask]] = [g["hooks"] for g in hooks["PermissionRequest"]]
    assert ask["timeout"] == 130  # waits for an answer from a dashboard (--approval-wait-s) plus a margin
    forms = {e: [h["type"] for g in groups for h in g["hooks"]] for e, groups in hooks.items()}
    assert forms == {e: [f] for e, f in EVENT_FORMS.items()}
    assert forms["SessionStart"] == ["command"]  # 2.1.330 skips http hooks for SessionStart


def test_token_goes_by_variable_name_never_by_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONWATCH_TOKEN", "s3cret-t0ken-value")
    path = tmp_path / "settings.json"
    install(path, HookPlan(URL, token_env="SESSIONWATCH_TOKEN"))
    text = path.read_text()
    assert "s3cret-t0ken-value" not in text
    [[stop]] = [g["hooks"] for g in hooks_of(path)["Stop"]]
    assert stop["headers"] == {"Authorization": "Bearer $SESSIONWATCH_TOKEN"}
    assert stop["allowedEnvVars"] == ["SESSIONWATCH_TOKEN"]
    [[start]] = [g["hooks"] for g in hooks_of(path)["SessionStart"]]
    assert "--token-env SESSIONWATCH_TOKEN" in start["command"]


@pytest.mark.parametrize("bad", ["$(rm -rf ~)", "A B", "1TOKEN", "sk-ant-api03-abc"])
def test_token_env_must_be_a_variable_name(bad: str) -> None:
    with pytest.raises(ConfigError, match="environment variable name"):
        HookPlan(URL, token_env=bad)


@pytest.mark.parametrize("bad", ["127.0.0.1:8765", "http://x/#frag", "http://a b", "file:///etc"])
def test_url_must_be_plain_http(bad: str) -> None:
    with pytest.raises(ConfigError, match="hook URL"):
        HookPlan(bad)


def test_reinstall_with_another_url_replaces_ours_in_place(tmp_path: Path) -> None:
    path = user_file(tmp_path)
    install(path, HookPlan(URL))
    change = install(path, HookPlan("http://10.0.0.5:9999", token_env="SW_TOKEN"))
    assert change.changed
    urls = {i.target for i in status(path).ours if i.form == "http"}
    assert urls == {"http://10.0.0.5:9999/hooks"}
    assert len(status(path).ours) == len(EVENT_FORMS)  # replaced, not added twice
    uninstall(path)
    assert json.loads(path.read_bytes()) == json.loads(USER_SETTINGS)


def test_user_edits_after_install_survive_uninstall(tmp_path: Path) -> None:
    path = user_file(tmp_path)
    install(path, HookPlan(URL))
    data = json.loads(path.read_bytes())
    mine = {"hooks": [{"type": "command", "command": "echo mine"}]}
    data["hooks"]["Stop"].append(mine)
    data["theme"] = "dark"
    path.write_text(json.dumps(data, indent=4))
    uninstall(path)
    after = json.loads(path.read_bytes())
    expected = json.loads(USER_SETTINGS)
    expected["hooks"]["Stop"].append(mine)
    expected["theme"] = "dark"
    assert after == expected
    assert path.read_text().startswith('{\n    "model"')  # the file's own indentation


def test_missing_file_is_created_and_removed_again(tmp_path: Path) -> None:
    path = tmp_path / "proj" / ".claude" / "settings.local.json"
    change = install(path, HookPlan(URL))
    assert change.changed and change.backup is None and path.exists()
    assert not path.with_name(path.name + BACKUP_SUFFIX).exists()
    uninstall(path)
    assert not path.exists()


def test_settings_without_hooks_get_them_and_lose_them_again(tmp_path: Path) -> None:
    original = b'{"model": "opus"}'  # no trailing newline
    path = user_file(tmp_path, original)
    install(path, HookPlan(URL))
    assert set(hooks_of(path)) == set(EVENT_FORMS)
    uninstall(path)
    assert path.read_bytes() == original


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"{not json", "not valid JSON"), (b"[]", "JSON object"), (b'{"hooks": []}', '"hooks" is not an object'), (b'{"hooks": {"Stop": {}}}', '"hooks" is not an object')],
)
def test_unusable_file_is_an_error_and_left_alone(tmp_path: Path, content: bytes, words: str) -> None:
    path = user_file(tmp_path, content)
    for command in (lambda: install(path, HookPlan(URL)), lambda: uninstall(path), lambda: status(path)):
        with pytest.raises(ConfigError, match=words):
            command()
        assert path.read_bytes() == content
    assert not path.with_name(path.name + BACKUP_SUFFIX).exists()


def test_file_mode_is_kept(tmp_path: Path) -> None:
    path = user_file(tmp_path)
    path.chmod(0o640)
    install(path, HookPlan(URL))
    assert path.stat().st_mode & 0o777 == 0o640
    assert path.with_name(path.name + BACKUP_SUFFIX).stat().st_mode & 0o777 == 0o640


def test_status_per_event_and_form(tmp_path: Path) -> None:
    path = user_file(tmp_path)
    before = status(path)
    assert before.exists and before.ours == [] and before.missing == list(EVENT_FORMS)
    assert before.others == {"Stop": 1, "PreToolUse": 2}
    install(path, HookPlan(URL, token_env="SW_T"))
    now = status(path)
    assert now.missing == [] and now.others == before.others
    by_event = {i.event: i for i in now.ours}
    assert by_event["Stop"] == Installed("Stop", "http", "http://127.0.0.1:8765/hooks", "SW_T")
    assert by_event["SessionStart"] == Installed("SessionStart", "command", "sessionwatch hook --url http://127.0.0.1:8765 --token-env SW_T", "SW_T")
    assert not status(tmp_path / "none.json").exists


def test_scopes() -> None:
    home, project = Path("/home/me"), Path("/src/app")
    assert settings_path("user", home=home) == home / ".claude" / "settings.json"
    assert settings_path("project", project=project) == project / ".claude" / "settings.json"
    assert settings_path("local", project=project) == project / ".claude" / "settings.local.json"


def test_a_users_hook_that_merely_mentions_sessionwatch_is_not_ours() -> None:
    assert not is_ours({"type": "command", "command": "echo sessionwatch"})
    assert not is_ours({"type": "command", "command": "echo '#sessionwatch'x"})
    assert not is_ours({"type": "http", "url": "http://127.0.0.1:8765/hooks"})
    assert not is_ours({"type": "prompt", "prompt": "#sessionwatch"})
    assert is_ours({"type": "http", "url": "http://h/hooks#sessionwatch"})


# --- the real CLI --------------------------------------------------------------------------


def test_installed_hooks_reach_hooks_from_the_real_cli(fake_api: FakeAPI, claude_home: ClaudeHome, tmp_path: Path) -> None:
    """Every installed event arrives at POST /hooks with the token, SessionStart through the command relay."""
    recorder = HookRecorder(tmp_path)
    try:
        base = recorder.url.removesuffix("/hooks")
        plan = HookPlan(base, token_env="SW_E2E_TOKEN", hook_command=[sys.executable, "-m", "sessionwatch.integrations.hook_command"])
        settings = settings_path("user", home=claude_home.home)
        install(settings, plan)
        fake_api.reset([Turn.tool_use("Bash", {"command": "echo hi", "description": "say hi"}), Turn.text("Done.")])
        env = {"SW_E2E_TOKEN": "e2e-token-123", "PATH": os.environ.get("PATH", "")}
        run = run_claude(claude_home, fake_api.url, "say hi", env=env).check()
        hits = recorder.wait(lambda hs: any(h.payload.get("hook_event_name") == "SessionEnd" for h in hs), 15, "SessionEnd")
    finally:
        recorder.stop()
    assert {h.form for h in hits} == {"http"}  # all of them came in over HTTP (the command relays too)
    assert {h.headers.get("Authorization") for h in hits} == {"Bearer e2e-token-123"}
    events = [h.payload["hook_event_name"] for h in hits]
    assert events[0] == "SessionStart" and events[-1] == "SessionEnd"
    assert {"UserPromptSubmit", "PreToolUse", "PostToolUse", "PostToolBatch", "Stop"} <= set(events)
    relayed = [h for h in hits if h.headers.get("User-Agent") == "sessionwatch-hook"]
    assert [h.payload["hook_event_name"] for h in relayed] == ["SessionStart"]
    assert {h.payload["session_id"] for h in hits} == {run.session_id}
