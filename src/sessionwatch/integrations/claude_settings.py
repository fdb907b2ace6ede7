"""``sessionwatch hooks install|uninstall|status``: sessionwatch's entries in Claude Code's settings.

Claude Code reads hooks from ``~/.claude/settings.json`` (scope ``user``),
``<project>/.claude/settings.json`` (``project``) and
``<project>/.claude/settings.local.json`` (``local``)::

    {"hooks": {"Stop": [{"hooks": [{"type": "http", "url": "http://127.0.0.1:8765/hooks#sessionwatch"}]}]}}

:func:`install` appends one matcher group of its own per event and never
touches the groups already there; :func:`uninstall` removes exactly those
groups. Ours are recognised by a mark that Claude Code ignores: the URL
fragment ``#sessionwatch`` (a fragment is never sent) on ``http`` hooks, a
trailing shell comment ``#sessionwatch`` on ``command`` hooks.

Form per event, from what Claude Code 2.1.330 was seen to do
(tests/vectors/hooks/README.md): ``http`` hooks for every event sessionwatch
uses except SessionStart, for which the CLI skips ``http`` hooks ("HTTP hooks
are not supported for SessionStart"): there the ``sessionwatch hook`` command
relays the payload. PermissionDenied was never seen to fire, so it gets the
command form too (it works for every event).

With a token, ``http`` hooks send ``Authorization: Bearer $VAR`` with the
variable named in ``allowedEnvVars`` (Claude Code substitutes it from its own
environment); the command hook is told the variable's name. The token itself
is never written into a settings file.

Every change writes the previous bytes to ``<file>.sessionwatch.bak`` first
and replaces the file atomically. ``uninstall`` restores the backup's exact
bytes when removing our entries gives back exactly the backup's content (the
usual install → uninstall), else it writes the JSON with the file's own
indentation.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from sessionwatch.errors import ConfigError

Scope = Literal["user", "project", "local"]
Form = Literal["http", "command"]

MARK: Final = "#sessionwatch"
BACKUP_SUFFIX: Final = ".sessionwatch.bak"

#: The events sessionwatch folds into a session's state (sources/hooks/events.py), with the
#: form Claude Code 2.1.330 fires for each (tests/vectors/hooks/README.md).
EVENT_FORMS: Final[dict[str, Form]] = {
    "SessionStart": "command",  # http hooks are skipped for SessionStart
    "UserPromptSubmit": "http",
    "PreToolUse": "http",
    "PermissionRequest": "http",
    "PostToolUse": "http",
    "PostToolUseFailure": "http",
    "PostToolBatch": "http",
    "PermissionDenied": "command",  # not seen to fire in any recorded run: the form that works everywhere
    "Notification": "http",
    "SubagentStart": "http",
    "Stop": "http",
    "StopFailure": "http",
    "SessionEnd": "http",
}

#: seconds Claude Code waits for a hook; PermissionRequest waits for an answer from a dashboard
HOOK_TIMEOUT_S: Final = 5
APPROVAL_MARGIN_S: Final = 10
_ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def settings_path(scope: Scope, *, home: Path | None = None, project: Path | None = None) -> Path:
    """The settings file of ``scope``: ``user`` under ``home``, ``project``/``local`` under ``project``."""
    if scope == "user":
        return (home if home is not None else Path.home()) / ".claude" / "settings.json"
    root = project if project is not None else Path.cwd()
    return root / ".claude" / ("settings.json" if scope == "project" else "settings.local.json")


@dataclass(frozen=True)
class HookPlan:
    """What to install: the server's base URL and how the hooks reach it."""

    url: str
    #: name of the environment variable holding the token (never the token), or None
    token_env: str | None = None
    #: the ``sessionwatch`` executable as a command line (``("sessionwatch",)`` on PATH)
    hook_command: Sequence[str] = ("sessionwatch",)
    #: the server's ``--approval-wait-s``: PermissionRequest's hook waits that long plus a margin
    approval_wait_s: float = 600.0
    events: Mapping[str, Form] = field(default_factory=lambda: dict(EVENT_FORMS))

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^\s#]+$", self.url):
            raise ConfigError(f"hook URL must be http(s)://host[:port] without spaces or '#': {self.url!r}")
        if self.token_env is not None and not _ENV_NAME.match(self.token_env):
            raise ConfigError(f"token variable must be an environment variable name, got {self.token_env!r}")
        if not self.hook_command:
            raise ConfigError("hook command must not be empty")

    @property
    def hooks_url(self) -> str:
        return self.url.rstrip("/") + "/hooks"

    def entry(self, event: str) -> dict[str, Any]:
        """The hook object for ``event`` (inside a matcher group of its own)."""
        timeout = HOOK_TIMEOUT_S
        if event == "PermissionRequest":
            timeout = int(self.approval_wait_s) + APPROVAL_MARGIN_S
        if self.events[event] == "http":
            hook: dict[str, Any] = {"type": "http", "url": self.hooks_url + MARK, "timeout": timeout}
            if self.token_env:
                hook["headers"] = {"Authorization": f"Bearer ${self.token_env}"}
                hook["allowedEnvVars"] = [self.token_env]
            return hook
        argv = [*self.hook_command, "hook", "--url", self.url]
        if self.token_env:
            argv += ["--token-env", self.token_env]
        return {"type": "command", "command": shlex.join(argv) + " " + MARK, "timeout": timeout}

    def group(self, event: str) -> dict[str, Any]:
        return {"hooks": [self.entry(event)]}


def is_ours(hook: Any) -> bool:
    """A hook object that :func:`install` wrote."""
    if not isinstance(hook, dict):
        return False
    if hook.get("type") == "http":
        return isinstance(hook.get("url"), str) and hook["url"].endswith(MARK)
    if hook.get("type") == "command":
        return isinstance(hook.get("command"), str) and hook["command"].rstrip().endswith(" " + MARK)
    return False


def _group_is_ours(group: Any) -> bool:
    hooks = group.get("hooks") if isinstance(group, dict) else None
    return isinstance(hooks, list) and bool(hooks) and all(is_ours(h) for h in hooks)


# --- reading and writing ---------------------------------------------------------------------


@dataclass
class _Loaded:
    path: Path
    raw: bytes | None  # None: no file
    data: dict[str, Any]


def _load(path: Path) -> _Loaded:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return _Loaded(path, None, {})
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not raw.strip():
        return _Loaded(path, raw, {})
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix it first, it was left unchanged") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a JSON object; it was left unchanged")
    hooks = data.get("hooks")
    if hooks is not None and not (isinstance(hooks, dict) and all(isinstance(v, list) for v in hooks.values())):
        raise ConfigError(f"{path}: \"hooks\" is not an object of lists; it was left unchanged")
    return _Loaded(path, raw, data)


def _indent(raw: bytes | None) -> int | str:
    """The file's own indentation (two spaces if it cannot be told)."""
    if raw:
        m = re.search(rb"\n([ \t]+)\S", raw)
        if m:
            unit = m.group(1).decode()
            return "\t" if unit.startswith("\t") else len(unit)
    return 2


def _dump(data: dict[str, Any], like: bytes | None) -> bytes:
    text = json.dumps(data, indent=_indent(like), ensure_ascii=False)
    newline = like is None or like.endswith(b"\n")
    return (text + ("\n" if newline else "")).encode()


def _write(path: Path, new: bytes, old: bytes | None) -> None:
    """Back up ``old`` and replace ``path`` with ``new`` atomically (keeping the file's mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600
    if old is not None:
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            pass
        _atomic(path.with_name(path.name + BACKUP_SUFFIX), old, mode)
    _atomic(path, new, mode)


def _atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _strip(data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """``data`` without our groups (and without containers left empty by that); how many went."""
    hooks = data.get("hooks")
    if not isinstance(hooks, dict):
        return data, 0
    removed = 0
    kept_hooks: dict[str, Any] = {}
    for event, groups in hooks.items():
        kept = [g for g in groups if not _group_is_ours(g)]
        removed += len(groups) - len(kept)
        if kept or not groups:  # an event the user left empty stays as it was
            kept_hooks[event] = kept
    out = dict(data)
    if kept_hooks or not hooks:
        out["hooks"] = kept_hooks
    else:
        del out["hooks"]
    return out, removed


# --- the three commands ------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """What a command did to one settings file."""

    path: Path
    changed: bool
    #: matcher groups of ours added / removed
    added: int = 0
    removed: int = 0
    backup: Path | None = None


def install(path: Path, plan: HookPlan) -> Change:
    """Merge ``plan``'s hooks into ``path``; idempotent (a second run changes nothing).

    Entries of ours that differ from ``plan`` (another URL, token variable or
    form) are replaced; every other hook stays where and as it is.
    """
    loaded = _load(path)
    wanted = dict(loaded.data)
    hooks: dict[str, list[Any]] = {}
    removed = 0
    for event, groups in (wanted.get("hooks") or {}).items():
        if event not in plan.events:
            kept = [g for g in groups if not _group_is_ours(g)]  # an event this version no longer uses
            removed += len(groups) - len(kept)
            if kept or not groups:
                hooks[event] = kept
            continue
        # our group keeps its place (the first of ours), so a second install changes nothing
        out: list[Any] = []
        for g in groups:
            if not _group_is_ours(g):
                out.append(g)
            elif not any(_group_is_ours(o) for o in out):
                out.append(plan.group(event))
            else:
                removed += 1
        hooks[event] = out
    for event in plan.events:
        if not any(_group_is_ours(g) for g in hooks.get(event, [])):
            hooks[event] = [*hooks.get(event, []), plan.group(event)]
    wanted["hooks"] = hooks
    if _canonical(wanted) == _canonical(loaded.data):
        return Change(path, False)
    new = _dump(wanted, loaded.raw)
    _write(path, new, loaded.raw)
    return Change(path, True, added=len(plan.events), removed=removed, backup=_backup(path, loaded.raw))



def uninstall(path: Path) -> Change:
    """Remove every hook :func:`install` added to ``path``; the user's hooks stay byte for byte."""
    loaded = _load(path)
    stripped, removed = _strip(loaded.data)
    if removed == 0:
        return Change(path, False)
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    if not stripped and not backup.exists():
        # install created the file (it backs up any file that was there): nothing of the user's is in it
        path.unlink()
        return Change(path, True, removed=removed)
    new: bytes | None = None
    try:
        before = backup.read_bytes()
        if _canonical(json.loads(before) if before.strip() else {}) == _canonical(stripped):
            new = before  # exactly the bytes the user had
    except (OSError, ValueError):
        pass
    if new is None:
        new = _dump(stripped, loaded.raw)
    _write(path, new, loaded.raw)
    return Change(path, True, removed=removed, backup=_backup(path, loaded.raw))


def _backup(path: Path, raw: bytes | None) -> Path | None:
    return path.with_name(path.name + BACKUP_SUFFIX) if raw is not None else None


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class Installed:
    """One hook of ours found in a settings file."""

    event: str
    form: Form
    #: the URL (http) or the command line (command), mark removed
    target: str
    #: the token's variable, if the hook sends one
    token_env: str | None


@dataclass(frozen=True)
class HooksStatus:
    path: Path
    exists: bool
    ours: list[Installed]
    #: hooks that are not ours, per event (they are left alone)
    others: dict[str, int]
    #: events sessionwatch uses that have no hook of ours here
    missing: list[str]


def status(path: Path, events: Mapping[str, Form] = EVENT_FORMS) -> HooksStatus:
    """What of sessionwatch is installed in ``path``, per event and form."""
    loaded = _load(path)
    ours: list[Installed] = []
    others: dict[str, int] = {}
    for event, groups in (loaded.data.get("hooks") or {}).items():
        for group in groups:
            hooks = group.get("hooks") if isinstance(group, dict) else None
            for hook in hooks if isinstance(hooks, list) else []:
                if is_ours(hook):
                    ours.append(_describe(event, hook))
                else:
                    others[event] = others.get(event, 0) + 1
    have = {i.event for i in ours}
    return HooksStatus(path, loaded.raw is not None, ours, others, [e for e in events if e not in have])


def _describe(event: str, hook: dict[str, Any]) -> Installed:
    if hook["type"] == "http":
        envs = hook.get("allowedEnvVars")
        token = envs[0] if isinstance(envs, list) and envs and isinstance(envs[0], str) else None
        return Installed(event, "http", hook["url"][: -len(MARK)], token)
    command = hook["command"].rstrip()[: -len(MARK)].rstrip()
    try:
        argv = shlex.split(command)
    except ValueError:
        argv = []
    token = argv[argv.index("--token-env") + 1] if "--token-env" in argv[:-1] else None
    return Installed(event, "command", command, token)
