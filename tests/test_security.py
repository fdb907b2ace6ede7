"""security.py against a real server: the attacks of issue 8 (items 2, 3, 12,
16, 18), each replayed as the attacker's browser or script would send it."""

from __future__ import annotations

import logging
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwatch.config import resolve_allowed_hosts
from sessionwatch.server.security import OncePerInterval, origin_matches

from .conftest import free_port, wait_for
from .sse import SSEClient

ServerFactory = Callable[..., Any]


def register(url: str, app_name: str = "victim-app", **headers: str) -> str:
    r = httpx.post(url + "/sessions", json={"app_name": app_name}, headers=headers, timeout=5)
    assert r.status_code in (200, 201), r.text
    sid: str = r.json()["session_id"]
    return sid


def detail(url: str, sid: str, **headers: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/sessions/{sid}", headers=headers, timeout=5)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


# --- item 2: DNS rebinding ---------------------------------------------------------


def test_rebinding_hostname_cannot_read_or_delete(sw_server: ServerFactory, projects: Path) -> None:
    srv = sw_server(projects_dir=projects)
    sid = register(srv.url)
    evil = {"Host": f"rebind.attacker.example:{srv.port}"}
    for method, path in [
        ("GET", "/all"),
        ("GET", f"/sessions/{sid}"),
        ("GET", "/metrics"),
        ("GET", "/stream"),
        ("GET", "/"),
        ("POST", f"/sessions/{sid}/kill"),
        ("DELETE", "/sessions/stale?older_than_minutes=1"),
        ("DELETE", f"/sessions/{sid}"),
    ]:
        r = httpx.request(method, srv.url + path, headers=evil, timeout=5)
        assert r.status_code == 400, (method, path, r.status_code)
        assert "rebind.attacker.example" in r.json()["error"]
    assert detail(srv.url, sid)["kill_requested"] is False
    # the loopback names, with or without port, still answer
    for host in ("127.0.0.1", f"127.0.0.1:{srv.port}", f"localhost:{srv.port}", "[::1]:1", "LOCALHOST."):
        assert httpx.get(srv.url + "/all", headers={"Host": host}, timeout=5).status_code == 200, host
    # liveness probes may use any name
    assert httpx.get(srv.url + "/healthz", headers=evil, timeout=5).status_code == 200


def test_allowed_hosts_adds_the_public_name(sw_server: ServerFactory, projects: Path) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--allowed-hosts", "watch.example.com,other.example", "--allowed-hosts", "third.example"])
    for host in ("watch.example.com", "WATCH.example.com:443", "other.example", "third.example", "localhost"):
        assert httpx.get(srv.url + "/all", headers={"Host": host}, timeout=5).status_code == 200, host
    assert httpx.get(srv.url + "/all", headers={"Host": "example.com"}, timeout=5).status_code == 400


def test_allowed_hosts_from_the_environment_and_star() -> None:
    assert "x.example" in resolve_allowed_hosts(["x.example"], "127.0.0.1")
    assert "10.1.2.3" in resolve_allowed_hosts([], "10.1.2.3")  # a specific --host
    assert "0.0.0.0" not in resolve_allowed_hosts([], "0.0.0.0")
    assert resolve_allowed_hosts(["a", "*"], "127.0.0.1") == frozenset({"*"})


# --- item 3: CSRF -------------------------------------------------------------------


def test_no_cors_text_plain_kill_is_refused(sw_server: ServerFactory, projects: Path) -> None:
    srv = sw_server(projects_dir=projects)
    sid = register(srv.url)
    kill = f"{srv.url}/sessions/{sid}/kill"
    # fetch(kill, {mode: "no-cors", method: "POST", headers: {"Content-Type": "text/plain"}, body: ...})
    # from a page on another site: what Chromium sends.
    browser = {"Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    r = httpx.post(kill, content=b'{"by":"x"}', headers={**browser, "Content-Type": "text/plain"}, timeout=5)
    assert r.status_code == 403 and "error" in r.json()
    # an auto-submitted <form enctype="text/plain"> (navigation)
    form = {"Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    r = httpx.post(kill, content=b'{"by":"x", "=":""}', headers={**form, "Content-Type": "text/plain"}, timeout=5)
    assert r.status_code == 403
    # an older browser that sends neither Origin nor Sec-Fetch-*: the text/plain body alone is refused
    r = httpx.post(kill, content=b'{"by":"x"}', headers={"Content-Type": "text/plain"}, timeout=5)
    assert r.status_code == 415
    # no body, but from another site
    assert httpx.post(kill, headers={"Origin": "http://attacker.example"}, timeout=5).status_code == 403
    assert httpx.post(kill, headers={"Sec-Fetch-Site": "cross-site"}, timeout=5).status_code == 403
    assert httpx.delete(f"{srv.url}/sessions/{sid}", headers={"Origin": "null"}, timeout=5).status_code == 403
    assert detail(srv.url, sid)["kill_requested"] is False
    # the dashboard's own request: same origin, no body
    same = {"Origin": srv.url, "Sec-Fetch-Site": "same-origin"}
    assert httpx.post(kill, headers=same, timeout=5).status_code == 200
    assert detail(srv.url, sid)["kill_requested"] is True


def test_text_plain_register_is_refused_with_415(sw_server: ServerFactory, projects: Path) -> None:
    srv = sw_server(projects_dir=projects)
    before = len(httpx.get(srv.url + "/all", timeout=5).json()["sessions"])
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": content_type} if content_type else {}
        r = httpx.post(srv.url + "/sessions", content=b'{"app_name": "planted"}', headers=headers, timeout=5)
        assert r.status_code == 415, (content_type, r.status_code)
        assert "application/json" in r.json()["error"]
    assert len(httpx.get(srv.url + "/all", timeout=5).json()["sessions"]) == before
    r = httpx.post(srv.url + "/sessions", content=b'{"app_name": "ok"}', headers={"Content-Type": "application/json; charset=utf-8"}, timeout=5)
    assert r.status_code == 201
    # bodiless state changes need no content type (the page's /logout, /refresh, a kill)
    assert httpx.post(srv.url + "/refresh", timeout=30).status_code == 200
    assert httpx.post(srv.url + "/logout", timeout=5).status_code == 200


def test_page_on_another_port_of_localhost_cannot_use_the_cookie(sw_server: ServerFactory, projects: Path) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--token", "s3cret"])
    other = free_port()
    with httpx.Client(base_url=srv.url, timeout=5) as browser:
        # the page itself signs in: same origin, JSON
        r = browser.post("/login", json={"token": "s3cret"}, headers={"Origin": srv.url, "Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 200
        sid = register(srv.url, Authorization="Bearer s3cret")
        kill = f"/sessions/{sid}/kill"
        # SameSite=Strict does not separate ports: the cookie goes along
        for headers in (
            {"Origin": f"http://127.0.0.1:{other}", "Sec-Fetch-Site": "same-site"},
            {"Origin": f"http://127.0.0.1:{other}"},  # a browser without Sec-Fetch-*
            {"Origin": f"http://localhost:{other}"},
            {"Sec-Fetch-Site": "same-site"},
        ):
            r = browser.post(kill, headers=headers)
            assert r.status_code == 403, headers
            r = browser.post("/refresh", headers=headers)
            assert r.status_code == 403, headers
        assert detail(srv.url, sid, Authorization="Bearer s3cret")["kill_requested"] is False
        # localhost and 127.0.0.1 on the same port are the same server
        r = browser.post(kill, headers={"Origin": f"http://localhost:{srv.port}", "Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 200


def test_origin_matching() -> None:
    allowed = frozenset({"localhost", "127.0.0.1", "::1", "watch.example.com"})
    assert origin_matches("http://127.0.0.1:8765", "127.0.0.1:8765", allowed)
    assert origin_matches("http://[::1]:8765", "[::1]:8765", allowed)
    assert origin_matches("https://watch.example.com", "watch.example.com", allowed)  # TLS at the proxy
    assert origin_matches("http://watch.example.com", "watch.example.com", allowed)
    assert not origin_matches("http://127.0.0.1:9999", "127.0.0.1:8765", allowed)
    assert not origin_matches("http://127.0.0.1:9999", "127.0.0.1", allowed)
    assert not origin_matches("http://evil.example:8765", "127.0.0.1:8765", allowed)
    assert not origin_matches("null", "127.0.0.1:8765", allowed)
    assert not origin_matches("http://127.0.0.1:notaport", "127.0.0.1:8765", allowed)
    assert not origin_matches("http://127.0.0.1:8765", None, allowed)


# --- item 18: redirects -------------------------------------------------------------


def test_slash_redirect_does_not_echo_the_host(sw_server: ServerFactory, projects: Path) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--allowed-hosts", "watch.example.com"])
    r = httpx.get(srv.url + "/all/?source=claude", headers={"Host": "watch.example.com"}, timeout=5)
    assert r.is_redirect
    location = r.headers["location"]
    assert "watch.example.com" not in location and "://" not in location
    assert location == "../all?source=claude"
    assert httpx.get(srv.url + "/all/", follow_redirects=True, timeout=5).status_code == 200
    r = httpx.get(srv.url + "/static", timeout=5)
    assert r.is_redirect and r.headers["location"] == "static/"
    assert httpx.get(srv.url + "/nothing-here/", timeout=5).status_code == 404


# --- item 16: X-Forwarded-For -------------------------------------------------------


def test_kill_audit_ignores_forwarded_for_from_an_untrusted_client(sw_server: ServerFactory, projects: Path) -> None:
    srv = sw_server(projects_dir=projects)
    sid = register(srv.url)
    r = httpx.post(f"{srv.url}/sessions/{sid}/kill", headers={"X-Forwarded-For": "6.6.6.6"}, timeout=5)
    assert r.status_code == 200
    kills = detail(srv.url, sid)["kills"]
    assert [k["requested_by"] for k in kills] == ["127.0.0.1"]


def test_kill_audit_believes_a_trusted_proxy(sw_server: ServerFactory, projects: Path) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--trusted-proxies", "127.0.0.0/8"])
    sid = register(srv.url)
    httpx.post(f"{srv.url}/sessions/{sid}/kill", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=5)
    assert [k["requested_by"] for k in detail(srv.url, sid)["kills"]] == ["203.0.113.9"]


# --- item 12: slowloris --------------------------------------------------------------

FD_LIMIT = 256
HALF_OPEN = 400


@pytest.fixture
def low_fd_server(tmp_path: Path, projects: Path) -> Iterator[tuple[str, Path]]:
    """A server whose open-file limit (soft and hard) is FD_LIMIT."""
    port = free_port()
    log = tmp_path / "server.log"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sessionwatch", "serve", "--projects-dir", str(projects),
             "--db", str(tmp_path / "sw.db"), "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, preexec_fn=limit, env=env,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 20, "the server to answer /healthz")
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_half_open_connections_do_not_starve_healthz_or_flood_the_log(low_fd_server: tuple[str, Path]) -> None:
    url, log = low_fd_server
    port = int(url.rsplit(":", 1)[1])
    held: list[socket.socket] = []
    try:
        # More half-open connections (one byte of a request, then nothing)
        # than the server has file descriptors.
        for _ in range(HALF_OPEN):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"G")
            held.append(s)

        def healthz() -> bool:
            try:
                return httpx.get(url + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthz, 15, "/healthz to answer while half-open connections are held")
        stream = SSEClient(url + "/stream").start()
        try:
            assert stream.next(timeout=10).event == "init"
        finally:
            stream.stop()
    finally:
        for s in held:
            s.close()
    text = log.read_text(errors="replace")
    # before: every failed accept() logged a traceback, thousands a second
    assert len(text) < 20_000, f"{len(text)} bytes of log"
    assert "Traceback" not in text
    assert text.count("out of system resource") <= 2


def test_endless_request_head_is_cut_off(sw_server: ServerFactory, projects: Path) -> None:
    srv = sw_server(projects_dir=projects)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /all HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        try:
            for _ in range(200):  # 200 headers of 1 KiB, never the blank line
                s.sendall(b"X-Pad: " + b"a" * 1024 + b"\r\n")
        except OSError:
            closed = True
        if not closed:
            s.settimeout(10)
            try:
                closed = s.recv(1) == b""  # the server hung up
            except TimeoutError:
                closed = False  # still holding the half-sent head
            except OSError:
                closed = True  # reset
        assert closed
    assert httpx.get(srv.url + "/healthz", timeout=5).status_code == 200


def test_accept_errors_are_logged_once_per_interval() -> None:
    now = [0.0]
    f = OncePerInterval("socket.accept() out of system resource", 60, clock=lambda: now[0])
    logger = logging.getLogger("test.once")

    def record(msg: str) -> logging.LogRecord:
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            return logger.makeRecord("asyncio", logging.ERROR, __file__, 1, msg, (), sys.exc_info())

    first = record("socket.accept() out of system resource\nsocket: <x>")
    assert f.filter(first) and first.exc_info is None
    assert first.getMessage() == "socket.accept() out of system resource: [Errno 24] Too many open files"
    assert not any(f.filter(record("socket.accept() out of system resource")) for _ in range(1000))
    assert f.filter(record("something else"))
    now[0] = 61.0
    later = record("socket.accept() out of system resource")
    assert f.filter(later) and "1000 more" in later.getMessage()
