"""README's flag tables against the real ``--help`` output, both ways.

The pattern of datasette's ``tests/test_docs.py``, hand-written rather than
generated with cog: the README's "meaning" column says more than ``--help``
does (why a default, what a value allows), so the tables stay prose a person
wrote, and this test holds them to the parser. Each table follows a marker
``<!-- flags: sessionwatch [COMMAND] -->``; for every command:

- every flag ``--help`` prints is a row of its table, and every row is a flag
  ``--help`` prints;
- a default the table states as one literal (```8765```, ```~/.claude/projects```)
  is the default the command really uses with no ``SESSIONWATCH_*`` variable
  set, and "none" / "off" mean no value; the same holds for a ``(default X)``
  in a flag's own help text. Prose defaults ("loopback names", "embedded")
  are not checked.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.cli import build_parser
from sessionwatch import config
from sessionwatch.cli import agent as agent_cli
from sessionwatch.cli import hooks as hooks_cli
from sessionwatch.config import Settings
from sessionwatch.integrations import hook_command

README = Path(__file__).resolve().parent.parent / "README.md"

#: Defaults that live in a subcommand's code, not in the parser or Settings
#: (the parser's default stays None so that a SESSIONWATCH_* variable can win).
CODE_DEFAULTS: dict[tuple[str, str], Any] = {
    ("serve", "--log-level"): config.DEFAULT_LOG_LEVEL,
    ("dashboard", "--server"): config.DEFAULT_SERVER_URL,
    ("hooks", "--scope"): hooks_cli.DEFAULT_SCOPE,
    ("hooks", "--server"): hooks_cli.DEFAULT_URL,
    ("hooks", "--approval-wait-s"): hooks_cli.DEFAULT_APPROVAL_WAIT_S,
    ("hook", "--server"): hook_command.DEFAULT_URL,
    ("hook", "--token-env"): hook_command.DEFAULT_TOKEN_ENV,
    ("hook", "--timeout"): hook_command.DEADLINE_S,
    ("run", "--server"): config.DEFAULT_SERVER_URL,
    ("mcp", "--server"): config.DEFAULT_SERVER_URL,
    ("agent", "--server"): config.DEFAULT_SERVER_URL,
    ("agent", "--queue"): agent_cli.default_queue(),
    ("agent", "--log-level"): config.DEFAULT_LOG_LEVEL,
}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


COMMANDS = ["", *_subparsers(build_parser())]


def _name(command: str) -> str:
    return f"sessionwatch {command}".strip()


def readme_table(command: str) -> dict[str, str]:
    """The flag table after ``<!-- flags: sessionwatch COMMAND -->``: flag → default cell."""
    lines = README.read_text(encoding="utf-8").splitlines()
    marker = f"<!-- flags: {_name(command)} -->"
    where = [i for i, line in enumerate(lines) if line.strip() == marker]
    assert len(where) == 1, f"README.md needs exactly one {marker} before the table of {_name(command)}"
    table = []
    for line in lines[where[0] + 1 :]:
        if not line.startswith("|"):
            break
        table.append(line)
    assert table[:2] == ["| flag | default | meaning |", "|---|---|---|"], table[:2]
    rows: dict[str, str] = {}
    for line in table[2:]:
        m = re.match(r"^\| `(--[a-z][a-z-]*)` \|([^|]*)\|", line)
        assert m, f"not a flag row: {line}"
        assert m.group(1) not in rows, f"{m.group(1)} twice in the table of {_name(command)}"
        rows[m.group(1)] = m.group(2).strip()
    return rows


def help_flags(command: str) -> set[str]:
    """The long flags the real ``sessionwatch [COMMAND] --help`` prints (``--help`` aside)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    env["COLUMNS"] = "100"
    args = [sys.executable, "-m", "sessionwatch", *command.split(), "--help"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    # An option line is indented two spaces; wrapped help text is indented more.
    flags = set(re.findall(r"^  (?:-\w, )?(--[a-z][a-z-]*)", r.stdout, re.MULTILINE))
    return flags - {"--help"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SESSIONWATCH_"):
            monkeypatch.delenv(key)


def effective_defaults(command: str) -> dict[str, tuple[Any, str]]:
    """Flag → (the value the command uses when the flag is not given, the flag's help)."""
    parser = build_parser()
    if command:
        parser = _subparsers(parser)[command]
    settings = Settings.resolve()
    out: dict[str, tuple[Any, str]] = {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs or longs[0] == "--help":
            continue
        flag = longs[0]
        if (command, flag) in CODE_DEFAULTS:
            value = CODE_DEFAULTS[command, flag]
        elif action.default not in (None, argparse.SUPPRESS):
            value = action.default
        else:
            value = getattr(settings, action.dest, None)
        out[flag] = (value, action.help or "")
    return out


def same_default(literal: str, value: Any) -> bool:
    if literal in ("none", "off"):
        return not value
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float)):
        try:
            return float(literal) == float(value)
        except ValueError:
            return False
    if isinstance(value, Path):
        import platformdirs

        data_dir = platformdirs.user_data_dir("sessionwatch", appauthor=False)
        path = Path(literal.replace("<user data dir>/sessionwatch", data_dir)).expanduser()
        return path.resolve() == value
    return bool(literal == str(value))


def test_every_command_has_one_table() -> None:
    text = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^<!-- flags: (sessionwatch(?: [a-z]+)?) -->$", text, re.MULTILINE))
    assert documented == {_name(c) for c in COMMANDS}


@pytest.mark.parametrize("command", COMMANDS, ids=[_name(c) for c in COMMANDS])
def test_readme_table_lists_exactly_the_help_flags(command: str) -> None:
    table = set(readme_table(command))
    offered = help_flags(command)
    assert offered - table == set(), f"in `{_name(command)} --help` but not in README.md's table"
    assert table - offered == set(), f"in README.md's table but not in `{_name(command)} --help`"


@pytest.mark.parametrize("command", COMMANDS, ids=[_name(c) for c in COMMANDS])
def test_defaults_in_readme_and_help_are_the_real_ones(command: str, clean_env: None) -> None:
    defaults = effective_defaults(command)
    for flag, cell in readme_table(command).items():
        value, help_text = defaults[flag]
        literal = re.fullmatch(r"`([^`]+)`", cell)
        if literal or cell in ("none", "off"):
            stated = literal.group(1) if literal else cell
            assert same_default(stated, value), f"README: {_name(command)} {flag} default {cell}, really {value!r}"
        in_help = re.search(r"\(default ([^\s)$][^\s)]*)\)", help_text)  # $VAR: not a value
        if in_help:
            assert same_default(in_help.group(1), value), f"--help: {flag} {in_help.group(0)}, really {value!r}"


def test_a_missing_row_is_caught(tmp_path: Path) -> None:
    """The check can fail: a table without one of the flags does not match --help."""
    rows = readme_table("serve")
    del rows["--port"]
    assert help_flags("serve") - set(rows) == {"--port"}


def test_stream_memory_figure_is_the_measured_one() -> None:
    """README and server/stream.py state the lean stream's memory per connection
    as the benchmark last measured it (rounded), and the same: they said 14 KiB
    while stream.py had said 10 and the benchmark 14.8 (issue 9)."""
    import json

    repo = README.parent
    rows = json.loads((repo / "docs" / "benchmarks.json").read_text())["benchmarks"]["memory"]["rows"]
    measured = [row[1] for row in rows if row[0] == "memory per SSE connection, 10000 idle clients"]
    assert len(measured) == 1, "docs/benchmarks.json lost the 10,000-client memory row"
    kib = round(float(measured[0].split()[0]))
    readme = " ".join(README.read_text(encoding="utf-8").split())
    stream = " ".join((repo / "src" / "sessionwatch" / "server" / "stream.py").read_text(encoding="utf-8").split())
    assert f"one task per connection, about {kib} KiB each" in readme
    assert f"holds a connection in about {kib} KiB instead of" in readme
    assert f"Measured at about {kib} KiB per idle connection" in stream
    assert len(set(re.findall(r"about (\d+) KiB", readme)) - {"48"}) == 1, "README states two figures"


#: A value for each serve flag's SESSIONWATCH_* variable that differs from its default.
ENV_VALUES = {
    "--host": "127.0.0.2",
    "--port": "9999",
    "--projects-dir": "{tmp}/projects",
    "--claude-dir": "{tmp}/claude",
    "--db": "{tmp}/x.db",
    "--token": "t0ken",
    "--allowed-hosts": "watch.example.com",
    "--trusted-proxies": "10.0.0.1",
    "--debounce-ms": "7",
    "--keepalive-s": "7",
    "--stale-after-s": "7",
    "--agent-stale-after-s": "7",
    "--cleanup-after-s": "7",
    "--idle-after-s": "7",
    "--prices": "{tmp}/prices.json",
    "--approval-wait-s": "7",
    "--max-cost-usd": "7",
    "--max-daily-cost-usd": "7",
    "--webhook": "http://127.0.0.1:9/hook",
    "--max-managed": "7",
    "--default-max-cost-usd": "7",
    "--log-retention-days": "3",
    "--claude-bin": "{tmp}/claude",
    "--workspace-root": "{tmp}",
    "--allow-bypass-permissions": "1",
}


def test_every_serve_flag_reads_its_variable(clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """README: "Every flag can also be set with SESSIONWATCH_<FLAG>"."""
    flags = set(readme_table("serve"))
    assert flags - {"--log-level"} == set(ENV_VALUES)
    defaults = Settings.resolve()
    for flag, raw in ENV_VALUES.items():
        name = "SESSIONWATCH_" + flag[2:].upper().replace("-", "_")
        monkeypatch.setenv(name, raw.format(tmp=tmp_path))
        dest = {"--webhook": "webhooks"}.get(flag, flag[2:].replace("-", "_"))
        assert getattr(Settings.resolve(), dest) != getattr(defaults, dest), f"{name} is not read"
        monkeypatch.delenv(name)
    # --log-level is read by `serve` itself, not by Settings.
    monkeypatch.setenv("SESSIONWATCH_LOG_LEVEL", "debug")
    assert config.log_level(None) == "debug"
    assert config.log_level("error") == "error"
