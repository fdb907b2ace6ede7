"""The SQLite schema: the named migrations, the Panel tables, the tracker-id rule.

In a module that imports neither aiosqlite nor the server: the server's store
(``store/sqlite.py``) runs :data:`MIGRATIONS`, and the tracker's direct mode
creates the Panel tables (:data:`PANEL_DDL`) and checks ids with
:func:`session_id_problem`, so they cannot drift, and importing the tracker
stays light.

Migrations are named and append-only: each runs once per file, in order,
recorded in ``migrations`` in the same transaction as its change
(``PRAGMA user_version`` holds how many have run). Never edit one that has
shipped; add the next.
"""

from __future__ import annotations

import re

__all__ = ["MIGRATIONS", "PANEL_DDL", "PG_MIGRATIONS", "RESERVED_IDS", "SESSION_ID_RE", "session_id_problem"]

#: What a tracker session id may look like: it appears in URL paths
#: (``/sessions/{id}``), so no ``/``, ``?``, ``#``, ``%`` or spaces, and it starts
#: with a letter or digit (no ``.`` or ``..``). UUIDs and Bokeh's session ids
#: (signed ones too: ``<id>.<base64url signature>``) fit.
SESSION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: Words that are, or may become, routes under ``/sessions/``: never a session id.
RESERVED_IDS = frozenset(
    {"stale", "all", "new", "batch", "search", "export", "import", "stream", "stats", "count", "heartbeats"}
)


def session_id_problem(sid: str) -> str | None:
    """Why ``sid`` cannot be a tracker session id, or None if it can."""
    if not SESSION_ID_RE.fullmatch(sid):
        return (
            "session_id must be 1 to 128 characters of letters, digits, '.', '_', ':' and '-',"
            " starting with a letter or digit"
        )
    if sid.lower() in RESERVED_IDS:
        return f"session_id {sid!r} is reserved for the API's own routes"
    return None


#: Panel tables, shared with ``integrations/panel/tracker.py`` (direct mode creates them too).
PANEL_DDL = """
CREATE TABLE IF NOT EXISTS panel_sessions (
    id TEXT PRIMARY KEY,
    app_name TEXT NOT NULL,
    user_id TEXT, host TEXT, pid INTEGER, url TEXT,
    status TEXT NOT NULL DEFAULT 'idle',
    current_task TEXT,
    started_at REAL NOT NULL,
    last_activity REAL NOT NULL,
    last_heartbeat REAL NOT NULL,
    kill_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS panel_kills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL, requested_at REAL NOT NULL, requested_by TEXT
);
"""


#: (name, SQL) in the order they run; statements separated by ``;``.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_transcripts",
        """
        CREATE TABLE transcripts (
            path TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            session_id TEXT,
            dev INTEGER NOT NULL,
            ino INTEGER NOT NULL,
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            offset INTEGER NOT NULL,
            agg BLOB NOT NULL
        );
        """,
    ),
    ("0002_panel_sessions", PANEL_DDL),
    (
        "0003_panel_kills_index",
        "CREATE INDEX IF NOT EXISTS panel_kills_session ON panel_kills(session_id);",
    ),
    (
        # The event log (SqliteEventLog in store/sqlite.py): AUTOINCREMENT, so
        # an id is never given twice, by any process on this file, even after a trim.
        "0004_events",
        """
        CREATE TABLE IF NOT EXISTS events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            origin INTEGER NOT NULL,
            type TEXT NOT NULL,
            data BLOB NOT NULL,
            at REAL NOT NULL
        );
        """,
    ),
    (
        # sessionwatch/control: the away switch, every approval, every budget change,
        # each with who (token name), when and from where (store/base.py, Actor).
        "0005_control",
        """
        CREATE TABLE IF NOT EXISTS control_flags (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            changed_at REAL NOT NULL,
            who TEXT NOT NULL, address TEXT, origin TEXT, user_agent TEXT
        );
        CREATE TABLE IF NOT EXISTS approvals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL,
            pending_id TEXT NOT NULL,
            decision TEXT NOT NULL,
            message TEXT,
            tool TEXT,
            summary TEXT,
            decided_at REAL NOT NULL,
            who TEXT NOT NULL, address TEXT, origin TEXT, user_agent TEXT
        );
        CREATE INDEX IF NOT EXISTS approvals_session ON approvals(session_id);
        CREATE TABLE IF NOT EXISTS budget_changes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL,
            max_cost_usd REAL,
            changed_at REAL NOT NULL,
            who TEXT NOT NULL, address TEXT, origin TEXT, user_agent TEXT
        );
        CREATE INDEX IF NOT EXISTS budget_changes_session ON budget_changes(session_id);
        """,
    ),
    (
        # Managed sessions (sessionwatch/managed): the processes the server starts and the
        # ``sessionwatch run``s that report to it, their logs (kept --log-retention-days),
        # and who started, stopped, interrupted, resumed, messaged or deleted them.
        "0006_managed",
        """
        CREATE TABLE IF NOT EXISTS managed_sessions (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            user TEXT,
            state TEXT NOT NULL,
            status_reason TEXT,
            current_task TEXT,
            pid INTEGER,
            proc_start INTEGER,
            cwd TEXT NOT NULL,
            model TEXT,
            system_prompt TEXT,
            permission_mode TEXT,
            allowed_tools TEXT,
            max_turns INTEGER,
            max_cost_usd REAL,
            cost_before REAL NOT NULL DEFAULT 0,
            total_cost_usd REAL,
            num_turns INTEGER NOT NULL DEFAULT 0,
            duration_ms INTEGER,
            message_count INTEGER NOT NULL DEFAULT 0,
            tool_calls INTEGER NOT NULL DEFAULT 0,
            exit_code INTEGER,
            log_path TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE IF NOT EXISTS managed_logs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL,
            ts REAL NOT NULL,
            level TEXT NOT NULL,
            source TEXT NOT NULL,
            kind TEXT NOT NULL,
            content TEXT NOT NULL,
            tool_name TEXT,
            cost_usd REAL
        );
        CREATE INDEX IF NOT EXISTS managed_logs_session ON managed_logs(session_id, id);
        CREATE INDEX IF NOT EXISTS managed_logs_ts ON managed_logs(ts);
        CREATE TABLE IF NOT EXISTS managed_actions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT,
            at REAL NOT NULL,
            who TEXT NOT NULL, address TEXT, origin TEXT, user_agent TEXT
        );
        CREATE INDEX IF NOT EXISTS managed_actions_session ON managed_actions(session_id);
        """,
    ),
    (
        # Named tokens with roles (``sessionwatch token``; sessionwatch/access.py): only each
        # token's SHA-256, never the token. A revoked token keeps its row (and its name:
        # the audit refers to it).
        "0007_tokens",
        """
        CREATE TABLE IF NOT EXISTS tokens (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            last_used_at REAL,
            revoked_at REAL
        );
        """,
    ),
    (
        # Agents (sessionwatch/agents): each agent's last applied batch and sign of life,
        # the sessions agents pushed (the whole Session JSON, keyed by session id), and
        # what waits to be sent down to an agent (approvals, budgets), until it has them.
        "0008_agents",
        """
        CREATE TABLE IF NOT EXISTS agents (
            agent TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            seq INTEGER NOT NULL,
            last_seen REAL NOT NULL
        );
        CREATE TABLE IF NOT EXISTS agent_sessions (
            id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            host TEXT NOT NULL,
            session BLOB NOT NULL,
            seq INTEGER NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS agent_sessions_agent ON agent_sessions(agent);
        CREATE TABLE IF NOT EXISTS agent_commands (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            agent TEXT NOT NULL,
            kind TEXT NOT NULL,
            body BLOB NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS agent_commands_agent ON agent_commands(agent, id);
        """,
    ),
    (
        # Replicas on PostgreSQL relay an action to the replica that holds its
        # target (relay.py) and keep every session's current row for a replica
        # starting; one SQLite server holds everything itself, so the migration
        # exists here only to keep both dialects' names equal.
        "0009_replicas",
        "SELECT 1;",
    ),
    # replicas: whether an agent is shown stale is decided by one replica (the
    # clock's leader) and shared, so every replica projects its sessions alike
    (
        "0010_agents_shared",
        """
        ALTER TABLE agents ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;
        """,
    ),
]


#: The same migrations, same names and order, in PostgreSQL's dialect (store/postgres.py).
#: Differences: ``bytea`` for BLOB, ``double precision`` for REAL, ``bigint`` for
#: INTEGER, identity columns for AUTOINCREMENT, ``boolean`` kill flag, quoted
#: ``"offset"`` and ``"user"`` (reserved words), transcripts keyed by host and
#: path (one database serves many machines), and the event log's one-row counter
#: ``event_counter``: ids are taken by updating it in the transaction that makes
#: the change, so ids are given in commit order (a sequence is not: a higher id
#: could commit first and a follower reading ``id > last`` would skip the lower).
PG_MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_transcripts",
        """
        CREATE TABLE IF NOT EXISTS transcripts (
            host TEXT NOT NULL,
            path TEXT NOT NULL,
            kind TEXT NOT NULL,
            session_id TEXT,
            dev BIGINT NOT NULL,
            ino BIGINT NOT NULL,
            size BIGINT NOT NULL,
            mtime DOUBLE PRECISION NOT NULL,
            "offset" BIGINT NOT NULL,
            agg BYTEA NOT NULL,
            PRIMARY KEY (host, path)
        );
        """,
    ),
    (
        "0002_panel_sessions",
        """
        CREATE TABLE IF NOT EXISTS panel_sessions (
            id TEXT PRIMARY KEY,
            app_name TEXT NOT NULL,
            user_id TEXT, host TEXT, pid BIGINT, url TEXT,
            status TEXT NOT NULL DEFAULT 'idle',
            current_task TEXT,
            started_at DOUBLE PRECISION NOT NULL,
            last_activity DOUBLE PRECISION NOT NULL,
            last_heartbeat DOUBLE PRECISION NOT NULL,
            kill_requested BOOLEAN NOT NULL DEFAULT FALSE
        );
        CREATE TABLE IF NOT EXISTS panel_kills (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            session_id TEXT NOT NULL, requested_at DOUBLE PRECISION NOT NULL, requested_by TEXT
        );
        """,
    ),
    (
        "0003_panel_kills_index",
        "CREATE INDEX IF NOT EXISTS panel_kills_session ON panel_kills(session_id);",
    ),
    (
        "0004_events",
        """
        CREATE TABLE IF NOT EXISTS events (
            id BIGINT PRIMARY KEY,
            origin BIGINT NOT NULL,
            type TEXT NOT NULL,
            data BYTEA NOT NULL,
            at DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE IF NOT EXISTS event_counter (
            one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
            last BIGINT NOT NULL
        );
        INSERT INTO event_counter (one, last) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;
        """,
    ),
    (
        "0005_control",
        """
        CREATE TABLE IF NOT EXISTS control_flags (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            changed_at DOUBLE PRECISION NOT NULL,
            who TEXT NOT NULL, address TEXT, origin TEXT, user_agent TEXT
        );
        CREATE TABLE IF NOT EXISTS approvals (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            session_id TEXT NOT NULL,
            pending_id TEXT NOT NULL,
            decision TEXT NOT NULL,
            message TEXT,
            tool TEXT,
            summary TEXT,
            decided_at DOUBLE PRECISION NOT NULL,
            who TEXT NOT NULL, address TEXT, origin TEXT, user_agent TEXT
        );
        CREATE INDEX IF NOT EXISTS approvals_session ON approvals(session_id);
        CREATE TABLE IF NOT EXISTS budget_changes (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            session_id TEXT NOT NULL,
            max_cost_usd DOUBLE PRECISION,
            changed_at DOUBLE PRECISION NOT NULL,
            who TEXT NOT NULL, address TEXT, origin TEXT, user_agent TEXT
        );
        CREATE INDEX IF NOT EXISTS budget_changes_session ON budget_changes(session_id);
        """,
    ),
    (
        "0006_managed",
        """
        CREATE TABLE IF NOT EXISTS managed_sessions (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            "user" TEXT,
            state TEXT NOT NULL,
            status_reason TEXT,
            current_task TEXT,
            pid BIGINT,
            proc_start BIGINT,
            cwd TEXT NOT NULL,
            model TEXT,
            system_prompt TEXT,
            permission_mode TEXT,
            allowed_tools TEXT,
            max_turns BIGINT,
            max_cost_usd DOUBLE PRECISION,
            cost_before DOUBLE PRECISION NOT NULL DEFAULT 0,
            total_cost_usd DOUBLE PRECISION,
            num_turns BIGINT NOT NULL DEFAULT 0,
            duration_ms BIGINT,
            message_count BIGINT NOT NULL DEFAULT 0,
            tool_calls BIGINT NOT NULL DEFAULT 0,
            exit_code BIGINT,
            log_path TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE IF NOT EXISTS managed_logs (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            session_id TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL,
            level TEXT NOT NULL,
            source TEXT NOT NULL,
            kind TEXT NOT NULL,
            content TEXT NOT NULL,
            tool_name TEXT,
            cost_usd DOUBLE PRECISION
        );
        CREATE INDEX IF NOT EXISTS managed_logs_session ON managed_logs(session_id, id);
        CREATE INDEX IF NOT EXISTS managed_logs_ts ON managed_logs(ts);
        CREATE TABLE IF NOT EXISTS managed_actions (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            session_id TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT,
            at DOUBLE PRECISION NOT NULL,
            who TEXT NOT NULL, address TEXT, origin TEXT, user_agent TEXT
        );
        CREATE INDEX IF NOT EXISTS managed_actions_session ON managed_actions(session_id);
        """,
    ),
    (
        "0007_tokens",
        """
        CREATE TABLE IF NOT EXISTS tokens (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            created_at DOUBLE PRECISION NOT NULL,
            last_used_at DOUBLE PRECISION,
            revoked_at DOUBLE PRECISION
        );
        """,
    ),
    (
        "0008_agents",
        """
        CREATE TABLE IF NOT EXISTS agents (
            agent TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            seq BIGINT NOT NULL,
            last_seen DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE IF NOT EXISTS agent_sessions (
            id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            host TEXT NOT NULL,
            session BYTEA NOT NULL,
            seq BIGINT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX IF NOT EXISTS agent_sessions_agent ON agent_sessions(agent);
        CREATE TABLE IF NOT EXISTS agent_commands (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            agent TEXT NOT NULL,
            kind TEXT NOT NULL,
            body BYTEA NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX IF NOT EXISTS agent_commands_agent ON agent_commands(agent, id);
        """,
    ),
    (
        # Replicas (relay.py): held PermissionRequests and which replica holds
        # each (rows younger than the approval wait are live), which replica
        # runs each managed session or takes each run's reports, and actions
        # relayed to the replica that holds their target, with the answer.
        # ``current``: every session as the last event that named it shows it
        # (written with the event), what a replica starting shows of the others'.
        "0009_replicas",
        """
        CREATE TABLE IF NOT EXISTS holds (
            session_id TEXT NOT NULL,
            pending_id TEXT NOT NULL,
            origin BIGINT NOT NULL,
            tool TEXT,
            summary TEXT,
            since DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (session_id, pending_id)
        );
        CREATE TABLE IF NOT EXISTS owners (
            session_id TEXT PRIMARY KEY,
            origin BIGINT NOT NULL,
            since DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE IF NOT EXISTS relay (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            target BIGINT NOT NULL,
            asker BIGINT NOT NULL,
            kind TEXT NOT NULL,
            body BYTEA NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            claimed_at DOUBLE PRECISION,
            status INTEGER,
            answer BYTEA
        );
        CREATE INDEX IF NOT EXISTS relay_unclaimed ON relay(target) WHERE claimed_at IS NULL;
        CREATE TABLE IF NOT EXISTS current (
            id TEXT PRIMARY KEY,
            session TEXT NOT NULL,
            event_id BIGINT NOT NULL
        );
        """,
    ),
    (
        "0010_agents_shared",
        """
        ALTER TABLE agents ADD COLUMN IF NOT EXISTS stale BOOLEAN NOT NULL DEFAULT FALSE;
        """,
    ),
]
