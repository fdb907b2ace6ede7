"""Settings: explicit flag > ``SESSIONWATCH_*`` environment > default.

Each overridable setting resolves through a tiny ``_default_x()`` function so
the precedence is greppable field by field (the pattern watchfiles uses).
"""

from __future__ import annotations

import os
from pathlib import Path

# msgspec structs, not dataclasses: the dataclasses module imports inspect, ast
# and dis, ≈ 12 ms of `scan`'s start-up, and msgspec is loaded anyway.
import msgspec

# ipaddress and platformdirs are imported where used: `scan` needs neither
# for the defaults (start-up counts, DESIGN.md "Speed and size").
from sessionwatch.errors import ConfigError

ENV_PREFIX = "SESSIONWATCH_"


def _env(name: str) -> str | None:
    value = os.environ.get(ENV_PREFIX + name)
    return value if value not in (None, "") else None


def _env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{ENV_PREFIX}{name} must be at least {minimum:g}, got {raw!r}")
    return value


def _default_host() -> str:
    return _env("HOST") or "127.0.0.1"


def _default_port() -> int:
    return int(_env_float("PORT", 8765))


def _default_projects_dir() -> Path:
    raw = _env("PROJECTS_DIR")
    return Path(raw).expanduser() if raw else Path.home() / ".claude" / "projects"


def _default_claude_dir(projects_dir: Path) -> Path:
    raw = _env("CLAUDE_DIR")
    return Path(raw).expanduser() if raw else projects_dir.parent


def is_database_url(value: str) -> bool:
    """Whether ``--db`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return value.startswith(("postgresql://", "postgres://"))


def database_arg(value: str) -> Path | str:
    """``--db``: a SQLite file, or a PostgreSQL URL; any other URL is refused in one sentence."""
    if is_database_url(value):
        return value
    if "://" in value:
        raise ConfigError(
            f"--db must be a SQLite file or a postgresql:// URL, not {value.split('://', 1)[0]}://..."
        )
    return Path(value).expanduser()


def _default_db() -> Path | str:
    raw = _env("DB")
    if raw:
        return database_arg(raw)
    import platformdirs

    return Path(platformdirs.user_data_dir("sessionwatch", appauthor=False)) / "sessionwatch.db"


def _default_token() -> str | None:
    # Unlike the other variables, a set but blank SESSIONWATCH_TOKEN is not
    # "unset": someone meant a token, and an empty one would let anyone in.
    return os.environ.get(ENV_PREFIX + "TOKEN")


def _default_allowed_hosts() -> list[str]:
    raw = _env("ALLOWED_HOSTS")
    return [raw] if raw else []


def _default_trusted_proxies() -> list[str]:
    raw = _env("TRUSTED_PROXIES")
    return [raw] if raw else []


#: Host header values every server accepts: a DNS-rebinding page cannot send
#: them, since its Host is the attacker's name (issue 8, item 2).
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _split(values: list[str]) -> list[str]:
    """``["a,b", "c"]`` → ``["a", "b", "c"]``: flags are repeatable and comma-separated."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def normalize_host(value: str) -> str:
    """A Host header or --allowed-hosts entry without port, brackets, case or final dot.

    >>> normalize_host("[::1]:8765"), normalize_host("Example.COM.:80")
    ('::1', 'example.com')
    """
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        value = value[1:end] if end != -1 else value[1:]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def resolve_allowed_hosts(values: list[str], bind_host: str) -> frozenset[str]:
    """Loopback names, the bind address when it is a specific one, and ``values``."""
    extra = _split(values)
    if "*" in extra:
        return frozenset({"*"})
    hosts = set(LOOPBACK_HOSTS)
    bind = normalize_host(bind_host)
    if bind and bind not in ("0.0.0.0", "::"):
        hosts.add(bind)
    for item in extra:
        host = normalize_host(item)
        if not host or any(c in item for c in "/ @?#*"):
            raise ConfigError(
                f"--allowed-hosts: {item!r} is not a host name or address (like watch.example.com)"
            )
        hosts.add(host)
    return frozenset(hosts)


def resolve_trusted_proxies(values: list[str]) -> tuple[str, ...]:
    """Addresses or networks (CIDR) whose X-Forwarded-* headers are believed."""
    proxies = _split(values)
    if proxies:
        import ipaddress
    for item in proxies:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"--trusted-proxies: {item!r} is not an IP address or network (like 10.0.0.0/8)"
            ) from None
    return tuple(proxies)


def _env_cap(name: str) -> float | None:
    """A spend cap in USD from the environment, or None (no cap)."""
    return _env_float(name, -1.0) if _env(name) is not None else None


def _default_webhooks() -> list[str]:
    raw = _env("WEBHOOK")
    return [raw] if raw else []


def resolve_webhooks(values: list[str]) -> tuple[str, ...]:
    """``--webhook`` URLs (repeatable, comma-separated): each http(s)://host..."""
    import urllib.parse

    urls = _split(values)
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
            raise ConfigError(f"--webhook: {url!r} is not an http(s) URL (like http://127.0.0.1:9000/hook)")
    return tuple(dict.fromkeys(urls))


def _default_workspace_root() -> Path | None:
    raw = _env("WORKSPACE_ROOT")
    return Path(raw) if raw else None


def _default_prices() -> Path | None:
    raw = _env("PRICES")
    return Path(raw).expanduser() if raw else None


class Settings(msgspec.Struct, frozen=True):
    """Everything the server and scanner need, resolved once at start."""

    host: str = "127.0.0.1"
    port: int = 8765
    projects_dir: Path = Path.home() / ".claude" / "projects"
    #: where Claude Code's live registry ``sessions/<pid>.json`` is; None: the parent of ``projects_dir``
    claude_dir: Path | None = None
    db: Path = Path("sessionwatch.db")
    #: ``--db postgresql://...``: the shared state and event log are there
    #: (replicas); ``db`` is then unused.
    db_url: str | None = None
    token: str | None = None
    #: Host header values accepted (DNS-rebinding guard); ``{"*"}`` accepts any.
    allowed_hosts: frozenset[str] = LOOPBACK_HOSTS
    #: Proxies whose X-Forwarded-For/-Proto are believed; none: the headers are ignored.
    trusted_proxies: tuple[str, ...] = ()
    debounce_ms: int = 500
    keepalive_s: float = 30.0
    stale_after_s: float = 120.0
    #: an agent silent this long has its sessions shown ``stale`` (sessionwatch/agents)
    agent_stale_after_s: float = 60.0
    cleanup_after_s: float = 600.0
    idle_after_s: float = 300.0
    prices: Path | None = None
    #: URLs POSTed on session transitions (webhooks.py)
    webhooks: tuple[str, ...] = ()
    #: watchfiles yields a batch once no new change came for ``step`` ms (the
    #: debounce is only the longest a burst is grouped), so this, not the
    #: debounce, sets the latency of a lone append: 50 ms put the median near
    #: 100 ms; 10 ms costs a wake-up of watchfiles' thread every 10 ms.
    step_ms: int = 10
    replay_buffer: int = 4096
    subscriber_queue: int = 1024
    #: "lean" or "sse-starlette": see server/stream.py
    stream_backend: str = "lean"
    #: In away mode, how long a PermissionRequest hook waits for an answer (sessionwatch/control).
    approval_wait_s: float = 600.0
    #: Spend caps in USD: per Claude session (unless PUT /sessions/{id}/budget), and per local day.
    max_cost_usd: float | None = None
    max_daily_cost_usd: float | None = None
    #: Managed sessions (sessionwatch/managed): live processes at once, the cap of one
    #: that names none, how long their logs are kept, the CLI, where they may start.
    max_managed: int = 10
    default_max_cost_usd: float | None = 10.0
    log_retention_days: float = 7.0
    claude_bin: str | None = None
    workspace_root: Path | None = None
    #: ``permission_mode: "bypassPermissions"`` is refused unless the server allows it.
    allow_bypass_permissions: bool = False

    @property
    def live_dir(self) -> Path:
        """Claude Code's live registry: ``<claude dir>/sessions``."""
        return (self.claude_dir if self.claude_dir is not None else self.projects_dir.parent) / "sessions"

    @classmethod
    def resolve(
        cls,
        *,
        host: str | None = None,
        port: int | None = None,
        projects_dir: Path | None = None,
        claude_dir: Path | None = None,
        db: Path | str | None = None,
        token: str | None = None,
        allowed_hosts: list[str] | None = None,
        trusted_proxies: list[str] | None = None,
        debounce_ms: int | None = None,
        keepalive_s: float | None = None,
        stale_after_s: float | None = None,
        agent_stale_after_s: float | None = None,
        cleanup_after_s: float | None = None,
        idle_after_s: float | None = None,
        prices: Path | None = None,
        approval_wait_s: float | None = None,
        max_cost_usd: float | None = None,
        max_daily_cost_usd: float | None = None,
        webhooks: list[str] | None = None,
        max_managed: int | None = None,
        default_max_cost_usd: float | None = None,
        log_retention_days: float | None = None,
        claude_bin: str | None = None,
        workspace_root: Path | None = None,
        allow_bypass_permissions: bool | None = None,
    ) -> Settings:
        """Build settings: each explicit argument wins over its environment variable."""
        host = host if host is not None else _default_host()
        chosen_db = db if db is not None else _default_db()
        if isinstance(chosen_db, str):
            chosen_db = database_arg(chosen_db)
        settings = cls(
            host=host,
            port=port if port is not None else _default_port(),
            projects_dir=(projects_dir if projects_dir is not None else _default_projects_dir()),
            db=chosen_db if isinstance(chosen_db, Path) else Path("sessionwatch.db"),
            db_url=chosen_db if isinstance(chosen_db, str) else None,
            token=token if token is not None else _default_token(),
            allowed_hosts=resolve_allowed_hosts(
                allowed_hosts if allowed_hosts else _default_allowed_hosts(), host
            ),
            trusted_proxies=resolve_trusted_proxies(
                trusted_proxies if trusted_proxies else _default_trusted_proxies()
            ),
            debounce_ms=(
                debounce_ms if debounce_ms is not None else int(_env_float("DEBOUNCE_MS", 500))
            ),
            keepalive_s=(
                keepalive_s
                if keepalive_s is not None
                else _env_float("KEEPALIVE_S", 30.0, minimum=0.05)
            ),
            stale_after_s=(
                stale_after_s if stale_after_s is not None else _env_float("STALE_AFTER_S", 120.0)
            ),
            agent_stale_after_s=(
                agent_stale_after_s
                if agent_stale_after_s is not None
                else _env_float("AGENT_STALE_AFTER_S", 60.0)
            ),
            cleanup_after_s=(
                cleanup_after_s
                if cleanup_after_s is not None
                else _env_float("CLEANUP_AFTER_S", 600.0)
            ),
            idle_after_s=(
                idle_after_s if idle_after_s is not None else _env_float("IDLE_AFTER_S", 300.0)
            ),
            prices=prices if prices is not None else _default_prices(),
            webhooks=resolve_webhooks(webhooks if webhooks else _default_webhooks()),
            subscriber_queue=int(_env_float("SUBSCRIBER_QUEUE", 1024, minimum=1)),
            stream_backend=_env("STREAM_BACKEND") or "lean",
            approval_wait_s=(
                approval_wait_s if approval_wait_s is not None else _env_float("APPROVAL_WAIT_S", 600.0)
            ),
            max_cost_usd=max_cost_usd if max_cost_usd is not None else _env_cap("MAX_COST_USD"),
            max_daily_cost_usd=(
                max_daily_cost_usd if max_daily_cost_usd is not None else _env_cap("MAX_DAILY_COST_USD")
            ),
            max_managed=max_managed if max_managed is not None else int(_env_float("MAX_MANAGED", 10)),
            default_max_cost_usd=(
                default_max_cost_usd if default_max_cost_usd is not None else _env_float("DEFAULT_MAX_COST_USD", 10.0)
            ),
            log_retention_days=(
                log_retention_days if log_retention_days is not None else _env_float("LOG_RETENTION_DAYS", 7.0)
            ),
            claude_bin=claude_bin or _env("CLAUDE_BIN"),
            workspace_root=workspace_root if workspace_root is not None else _default_workspace_root(),
            allow_bypass_permissions=(
                allow_bypass_permissions
                if allow_bypass_permissions is not None
                else (_env("ALLOW_BYPASS_PERMISSIONS") or "").lower() in ("1", "true", "yes", "on")
            ),
        )
        projects = settings.projects_dir.expanduser().resolve()
        settings = msgspec.structs.replace(
            settings,
            projects_dir=projects,
            claude_dir=(claude_dir if claude_dir is not None else _default_claude_dir(projects)).expanduser().resolve(),
            db=settings.db.expanduser().resolve(),
            workspace_root=settings.workspace_root.expanduser().resolve() if settings.workspace_root else None,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse settings that cannot work, with one sentence each."""
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, got {self.port}")
        if self.debounce_ms < 0:
            raise ConfigError("--debounce-ms must not be negative")
        if self.stream_backend not in ("lean", "sse-starlette"):
            raise ConfigError(
                f'SESSIONWATCH_STREAM_BACKEND must be "lean" or "sse-starlette", got {self.stream_backend!r}'
            )
        if self.keepalive_s <= 0:
            raise ConfigError("--keepalive-s must be positive")
        if not 0 < self.approval_wait_s <= 86400:
            raise ConfigError("--approval-wait-s must be more than 0 and at most 86400")
        for name in ("max_cost_usd", "max_daily_cost_usd", "default_max_cost_usd"):
            cap = getattr(self, name)
            if cap is not None and not (cap >= 0 and cap < float("inf")):
                raise ConfigError(f"--{name.replace('_', '-')} must be a number of dollars, 0 or more")
        if not self.agent_stale_after_s > 0:
            raise ConfigError("--agent-stale-after-s must be more than 0")
        for name in ("stale_after_s", "cleanup_after_s", "idle_after_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        if self.token is not None and not self.token.strip():
            raise ConfigError(
                "--token must not be empty: an empty token would let anyone in "
                "(leave it out for no token)"
            )
        if self.token is not None and self.token != self.token.strip():
            # HTTP strips header values, so such a token could never be presented.
            raise ConfigError("--token must not begin or end with whitespace")
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"refusing to listen on {self.host} without --token: "
                "transcripts hold secrets (set --token or SESSIONWATCH_TOKEN)"
            )
        if self.projects_dir.exists() and not self.projects_dir.is_dir():
            raise ConfigError(f"--projects-dir {self.projects_dir} is not a directory")
        if self.claude_dir is not None and self.claude_dir.exists() and not self.claude_dir.is_dir():
            raise ConfigError(f"--claude-dir {self.claude_dir} is not a directory")
        if self.max_managed < 0:
            raise ConfigError("--max-managed must not be negative")
        if not 0 < self.log_retention_days < 100_000:
            raise ConfigError("--log-retention-days must be more than 0")
        if self.workspace_root is not None and not self.workspace_root.is_dir():
            raise ConfigError(f"--workspace-root {self.workspace_root} is not a directory")
        if self.db.exists() and self.db.is_dir():
            raise ConfigError(f"--db {self.db} is a directory, not a file")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (``localhost`` included)."""
    if host in LOOPBACK_HOSTS:
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: Where clients look for the server when nothing says otherwise.
DEFAULT_SERVER_URL = "http://127.0.0.1:8765"
DEFAULT_LOG_LEVEL = "info"


class ClientSettings(msgspec.Struct, frozen=True):
    """What a client of the server needs (the tracker, the Panel dashboard):
    argument > ``SESSIONWATCH_URL`` / ``SESSIONWATCH_TOKEN`` > default."""

    url: str = DEFAULT_SERVER_URL
    token: str | None = None

    @classmethod
    def resolve(cls, *, url: str | None = None, token: str | None = None) -> ClientSettings:
        return cls(
            url=(url or _env("URL") or DEFAULT_SERVER_URL).rstrip("/"),
            token=token if token is not None else _env("TOKEN"),
        )


def log_level(flag: str | None) -> str:
    """``--log-level`` > ``SESSIONWATCH_LOG_LEVEL`` > info (not a Settings
    field: only ``serve`` logs)."""
    return flag or _env("LOG_LEVEL") or DEFAULT_LOG_LEVEL
