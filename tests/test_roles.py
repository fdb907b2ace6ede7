"""Named tokens with roles on a real server (DESIGN.md, HTTP and Security;
server/auth.py): every endpoint × every role, allowed / 403 / 401; a token
created or revoked while the server runs counts within 5 s; the audit names
the token; named tokens alone turn auth on; last use is recorded.
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwatch.access import ROLES, allows
from sessionwatch.config import Settings
from sessionwatch.server import auth
from sessionwatch.server.app import create_app

from .conftest import FIXTURES, Server, free_port, wait_for
from .test_web_approvals import hook_payloads

ServerFactory = Callable[..., Server]
ADMIN_TOKEN = "admin-s3cret"
#: A new client address for each request that may carry a wrong token (wrong tokens are throttled per address).
ADDRESSES = itertools.count(1)


def token_cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessionwatch", "token", *args, "--db", str(db)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def create_token(db: Path, name: str, role: str) -> str:
    r = token_cli(db, "create", name, "--role", role)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the table: every route of the app, each with the role DESIGN.md gives it -------------

#: (method, path as requested, the route's path, the role DESIGN.md's HTTP table gives it, body)
#: Bodies are refused by validation (or ids unknown) where that is enough to
#: show the role check let the request through: allowed means "neither 401 nor 403".
ENDPOINTS: list[tuple[str, str, str, str, Any]] = [
    ("GET", "/all", "/all", "viewer", None),
    ("GET", "/sessions", "/sessions", "viewer", None),
    ("GET", "/sessions/ghost", "/sessions/{session_id}", "viewer", None),
    ("GET", "/sessions/ghost/logs", "/sessions/{session_id}/logs", "viewer", None),
    ("GET", "/stats", "/stats", "viewer", None),
    ("GET", "/metrics", "/metrics", "viewer", None),
    ("GET", "/openapi.json", "/openapi.json", "viewer", None),
    ("GET", "/away", "/away", "viewer", None),
    ("GET", "/agents", "/agents", "viewer", None),
    ("GET", "/stream", "/stream", "viewer", None),
    ("POST", "/hooks", "/hooks", "agent", {}),
    ("POST", "/sessions", "/sessions", "agent", {}),
    ("POST", "/sessions/ghost/heartbeat", "/sessions/{session_id}/heartbeat", "agent", None),
    ("POST", "/heartbeats", "/heartbeats", "agent", {}),
    ("PUT", "/sessions/ghost/status", "/sessions/{session_id}/status", "agent", {}),
    ("DELETE", "/sessions/ghost", "/sessions/{session_id}", "agent", None),
    ("POST", "/runs", "/runs", "agent", {}),
    ("POST", "/agents/push", "/agents/push", "agent", {}),
    ("GET", "/agents/a1/commands?wait=0", "/agents/{agent}/commands", "agent", None),
    ("POST", "/refresh", "/refresh", "operator", None),
    ("POST", "/sessions/ghost/approve", "/sessions/{session_id}/approve", "operator", {}),
    ("PUT", "/away", "/away", "operator", {}),
    ("PUT", "/sessions/ghost/budget", "/sessions/{session_id}/budget", "operator", {}),
    ("POST", "/managed", "/managed", "operator", {}),
    ("POST", "/sessions/ghost/messages", "/sessions/{session_id}/messages", "operator", {}),
    ("POST", "/sessions/ghost/interrupt", "/sessions/{session_id}/interrupt", "operator", None),
    ("POST", "/sessions/ghost/stop", "/sessions/{session_id}/stop", "operator", None),
    ("POST", "/sessions/ghost/resume", "/sessions/{session_id}/resume", "operator", None),
    ("POST", "/sessions/ghost/kill", "/sessions/{session_id}/kill", "operator", {}),
    ("DELETE", "/sessions/stale?older_than_minutes=0", "/sessions/stale", "operator", None),
]
#: Answer without any token.
PUBLIC = [("GET", "/healthz"), ("GET", "/"), ("GET", "/auth"), ("POST", "/logout"), ("GET", "/static/style.css")]


def app_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the real app serves, /stream included."""
    app = create_app(Settings.resolve(projects_dir=FIXTURES, db=Path("/nonexistent/sw.db")))
    found = {("GET", "/stream")}
    for route in app.starlette.routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                found.add((method, route.path))  # type: ignore[attr-defined]
    return found


def test_the_table_covers_every_route_and_every_route_has_its_role() -> None:
    served = app_routes() - {(m, p.split("?")[0]) for m, p in PUBLIC} - {("POST", "/login")}
    tested = {(m, route) for m, _, route, _, _ in ENDPOINTS}
    assert served == tested, f"untested: {served - tested}; not served: {tested - served}"
    for method, _, route, role, _ in ENDPOINTS:
        assert auth.ROUTE_ROLES[method, route] == role, (method, route)


def test_a_route_without_a_role_is_admin_only() -> None:
    assert auth.route_role("PATCH", "/something/new") == "admin"


@pytest.fixture(scope="module")
def roles_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """A server with --token and one named token per role (created before it starts);
    behind a "trusted proxy" (itself) so each wrong-token request can come from its own address."""
    root = tmp_path_factory.mktemp("roles")
    shutil.copytree(FIXTURES, root / "projects")
    db = root / "sessionwatch.db"
    tokens = {role: create_token(db, f"{role}-1", role) for role in ("viewer", "agent", "operator")}
    tokens["admin"] = ADMIN_TOKEN
    srv = Server(
        root / "projects", db, free_port(), ["--token", ADMIN_TOKEN, "--trusted-proxies", "127.0.0.1"], root / "server.log"
    ).start()
    yield srv, tokens
    srv.stop()


def call(srv: Server, method: str, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        if path == "/stream":  # endless: the status line is enough
            with c.stream("GET", path, headers=headers) as r:
                r.close()
                return r
        return c.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "route", "needed", "body"), ENDPOINTS, ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_every_endpoint_for_every_role(
    roles_server: tuple[Server, dict[str, str]], method: str, path: str, route: str, needed: str, body: Any
) -> None:
    srv, tokens = roles_server
    # no token, and a wrong one (each from its own address: wrong tokens are throttled per address)
    assert call(srv, method, path, body, {}).status_code == 401
    n = next(ADDRESSES)
    wrong = {**bearer("sw_wrong"), "X-Forwarded-For": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"}
    r = call(srv, method, path, body, wrong)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    for role in ROLES:
        r = call(srv, method, path, body, bearer(tokens[role]))
        if allows(role, needed):  # type: ignore[arg-type]
            assert r.status_code not in (401, 403), (role, r.status_code, r.text)
        else:
            assert r.status_code == 403, (role, r.status_code, r.text)
            error = r.json()["error"]
            assert f"needs a token with the {needed} role" in error and f"is {role}" in error
            assert error.count(".") <= 1 and r.json()["role"] == needed


@pytest.mark.parametrize(("method", "path"), PUBLIC)
def test_public_paths_answer_without_a_token(roles_server: tuple[Server, dict[str, str]], method: str, path: str) -> None:
    srv, _ = roles_server
    r = httpx.request(method, srv.url + path, timeout=10)
    assert r.status_code == 200, r.text


def test_auth_and_login_tell_the_role_and_name(roles_server: tuple[Server, dict[str, str]]) -> None:
    srv, tokens = roles_server
    assert httpx.get(srv.url + "/auth", timeout=5).json() == {
        "token_required": True, "authenticated": False, "role": None, "name": None}  # fmt: skip
    for role in ROLES:
        expected_name = "admin" if role == "admin" else f"{role}-1"
        r = httpx.get(srv.url + "/auth", headers=bearer(tokens[role]), timeout=5)
        assert r.json() == {"token_required": True, "authenticated": True, "role": role, "name": expected_name}
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            login = c.post("/login", json={"token": tokens[role]})
            assert login.json() == {"ok": True, "role": role, "name": expected_name}
            cookie = login.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie
            # the cookie is the identity: /auth and the role checks read it
            assert c.get("/auth").json()["role"] == role
            assert c.put("/away", json={"on": False}).status_code == (200 if allows(role, "operator") else 403)  # type: ignore[arg-type]


def test_delete_needs_agent_for_a_panel_session_and_operator_for_a_managed_one(
    roles_server: tuple[Server, dict[str, str]],
) -> None:
    srv, tokens = roles_server
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        panel = c.post("/sessions", json={"app_name": "app"}, headers=bearer(tokens["agent"])).json()["session_id"]
        assert c.delete(f"/sessions/{panel}", headers=bearer(tokens["viewer"])).status_code == 403
        assert c.delete(f"/sessions/{panel}", headers=bearer(tokens["agent"])).json() == {"deleted": True}
        run = str(uuid.uuid4())
        report = {"session_id": run, "state": "ended", "cwd": "/tmp", "figures": {"num_turns": 1}}
        assert c.post("/runs", json=report, headers=bearer(tokens["agent"])).status_code == 200
        r = c.delete(f"/sessions/{run}", headers=bearer(tokens["agent"]))
        assert r.status_code == 403 and "operator role" in r.json()["error"], r.text
        assert c.delete(f"/sessions/{run}", headers=bearer(tokens["operator"])).json() == {"deleted": True}


def test_an_approval_records_the_token_name(roles_server: tuple[Server, dict[str, str]]) -> None:
    srv, tokens = roles_server
    op, agent = bearer(tokens["operator"]), bearer(tokens["agent"])
    sid = str(uuid.uuid4())
    payloads = hook_payloads(sid)
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        assert c.put("/away", json={"on": True}, headers=op).status_code == 200
        try:
            for name in ("UserPromptSubmit", "PreToolUse"):
                assert c.post("/hooks", json=payloads[name], headers=agent).status_code == 200
            out: list[httpx.Response] = []
            held = threading.Thread(
                target=lambda: out.append(httpx.post(srv.url + "/hooks", json=payloads["PermissionRequest"], headers=agent, timeout=60))
            )
            held.start()

            def pending_id() -> str | None:
                waiting = c.get("/away", headers=op).json()["waiting"]
                return next((str(w["pending_id"]) for w in waiting if w["session_id"] == sid), None)

            pid = wait_for(pending_id, 10, "the prompt to be held")
            body = {"pending_id": pid, "decision": "allow"}
            assert c.post(f"/sessions/{sid}/approve", json=body, headers=bearer(tokens["agent"])).status_code == 403
            assert c.post(f"/sessions/{sid}/approve", json=body, headers=op).status_code == 200
            held.join(30)
            assert out and out[0].status_code == 200
            approvals = c.get(f"/sessions/{sid}", headers=op).json()["approvals"]
            assert [a["by"]["who"] for a in approvals] == ["operator-1"]
        finally:
            c.put("/away", json={"on": False}, headers=op)


def test_the_audit_names_the_token(roles_server: tuple[Server, dict[str, str]]) -> None:
    """Budget and kill (and a managed session's run) carry the token's name, not "admin"."""
    srv, tokens = roles_server
    op = bearer(tokens["operator"])
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        sid = c.post("/sessions", json={"app_name": "audited"}, headers=bearer(tokens["agent"])).json()["session_id"]
        assert c.post(f"/sessions/{sid}/kill", json={"by": "panel-dashboard"}, headers=op).status_code == 200
        assert [k["requested_by"] for k in c.get(f"/sessions/{sid}", headers=op).json()["kills"]] == [
            "operator-1 (panel-dashboard)"
        ]
        claude = next(s["id"] for s in c.get("/all", headers=op).json()["sessions"] if s["source"] == "claude")
        assert c.put(f"/sessions/{claude}/budget", json={"max_cost_usd": 5}, headers=op).status_code == 200
        changes = c.get(f"/sessions/{claude}", headers=op).json()["budget"]["changes"]
        assert changes[-1]["by"]["who"] == "operator-1"
        assert c.put("/away", json={"on": False}, headers=bearer(ADMIN_TOKEN)).json()["by"]["who"] == "admin"
        assert c.put("/away", json={"on": False}, headers=op).json()["by"]["who"] == "operator-1"


# --- a running server sees tokens come and go ------------------------------------------------


def status_with(srv: Server, token: str) -> int:
    """``GET /all`` with ``token``, from an address of its own when the server
    trusts itself as a proxy (a token not yet known is a wrong one: throttled per address)."""
    n = next(ADDRESSES)
    forwarded = {"X-Forwarded-For": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"}
    return httpx.get(srv.url + "/all", headers={**bearer(token), **forwarded}, timeout=5).status_code


def test_a_token_created_or_revoked_while_the_server_runs_counts_within_5_s(sw_server: ServerFactory, projects: Path, tmp_path: Path) -> None:
    db = tmp_path / "sessionwatch.db"
    srv = sw_server(projects_dir=projects, db=db, extra_args=["--token", ADMIN_TOKEN, "--trusted-proxies", "127.0.0.1"])
    token = create_token(db, "late", "viewer")
    started = time.monotonic()
    wait_for(lambda: status_with(srv, token) == 200, 5, "the new token to be accepted")
    assert token_cli(db, "revoke", "late").returncode == 0
    wait_for(lambda: status_with(srv, token) == 401, 5, "the revoked token to be refused")
    assert time.monotonic() - started < 60  # sanity: both waits were bounded by their deadlines
    assert status_with(srv, ADMIN_TOKEN) == 200


def test_named_tokens_alone_turn_auth_on(sw_server: ServerFactory, projects: Path, tmp_path: Path) -> None:
    db = tmp_path / "sessionwatch.db"
    srv = sw_server(projects_dir=projects, db=db)
    assert httpx.get(srv.url + "/all", timeout=5).status_code == 200
    assert httpx.get(srv.url + "/auth", timeout=5).json() == {
        "token_required": False, "authenticated": True, "role": "admin", "name": "local"}  # fmt: skip
    token = create_token(db, "first", "operator")
    wait_for(lambda: httpx.get(srv.url + "/all", timeout=5).status_code == 401, 5, "auth to turn on")
    assert httpx.get(srv.url + "/healthz", timeout=5).status_code == 200
    assert httpx.get(srv.url + "/", timeout=5).status_code == 200
    assert status_with(srv, token) == 200
    with httpx.stream("GET", srv.url + "/stream", timeout=5) as r:
        assert r.status_code == 401
    # the audit says who: the token's name
    assert httpx.put(srv.url + "/away", json={"on": False}, headers=bearer(token), timeout=5).json()["by"]["who"] == "first"


def test_last_use_is_recorded_in_batches(sw_server: ServerFactory, projects: Path, tmp_path: Path) -> None:
    db = tmp_path / "sessionwatch.db"
    token = create_token(db, "busy", "viewer")
    srv = sw_server(projects_dir=projects, db=db)
    for _ in range(20):
        assert status_with(srv, token) == 200

    def last_use() -> float | None:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT last_used_at FROM tokens WHERE name = 'busy'").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    first = wait_for(last_use, 10, "the first use to be written")
    for _ in range(20):
        assert status_with(srv, token) == 200
    srv.stop()  # a shutdown writes what is left
    later = last_use()
    assert later is not None and later > first  # type: ignore[operator]
    listing = token_cli(db, "list")
    assert "busy" in listing.stdout and token not in listing.stdout


def test_a_client_is_told_which_role_it_needs(roles_server: tuple[Server, dict[str, str]]) -> None:
    """clients/http.py: a 403 is an AuthError that carries the server's sentence (the dashboards show it)."""
    from sessionwatch.clients import AuthError, SyncApi
    from sessionwatch.clients.control import set_away

    srv, tokens = roles_server
    with SyncApi(srv.url, tokens["viewer"], timeout_s=5) as api, pytest.raises(AuthError) as caught:
        set_away(api, False)
    assert caught.value.status == 403
    assert "PUT /away needs a token with the operator role" in str(caught.value)


def test_building_an_app_leaves_the_modules_routes_as_they_are(tmp_path: Path) -> None:
    """The route lists are module globals: an app built in a process must not
    wrap them (a bare app built later from them, as tests do, then answered
    401 without any token middleware: seen when modules ran in another order)."""
    from sessionwatch.config import Settings
    from sessionwatch.control import api as control_api
    from sessionwatch.managed import api as managed_api
    from sessionwatch.server import api
    from sessionwatch.server.app import create_app
    from sessionwatch.server.auth import RoleCheck

    before = [r.app for r in (*api.routes, *control_api.routes, *managed_api.routes)]  # type: ignore[attr-defined]
    for _ in range(2):
        create_app(Settings(projects_dir=tmp_path, db=tmp_path / "sw.db"))
    after = [r.app for r in (*api.routes, *control_api.routes, *managed_api.routes)]  # type: ignore[attr-defined]
    assert after == before and not any(isinstance(a, RoleCheck) for a in after)
