"""deploy/nginx.conf in a real nginx (Debian's), in front of a real server.

The conf is used as shipped, with only the upstream address and the listen
port swapped for free ones; nginx runs in the foreground with its prefix, pid,
logs and temp paths in tmp_path.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import CHROMIUM_ARGS, Server, free_port, wait_for
from .sse import SSEClient
from .test_claude import assistant

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "deploy" / "nginx.conf"

SESSION_FILE = Path("-home-marco-projects-spotter") / "55604662-cf2a-4331-851a-ec234028f8ca.jsonl"
SESSION = SESSION_FILE.stem


def render(conf: str, *, app_port: int | None, listen_port: int, access_log: Path) -> str:
    """deploy/nginx.conf with the upstream and the listener moved to the test's
    ports and its access log into the test's directory (``app_port`` None: the
    upstream is already the test's)."""
    swaps = {
        "server 127.0.0.1:8765;": f"server 127.0.0.1:{app_port};",
        "listen 80;": f"listen 127.0.0.1:{listen_port};",
        "listen [::]:80;": "# (IPv6 listener dropped by the test)",
        "access_log /var/log/nginx/sessionwatch.access.log sessionwatch;": (
            f"access_log {access_log} sessionwatch;"
        ),
    }
    if app_port is None:
        del swaps["server 127.0.0.1:8765;"]
    for old, new in swaps.items():
        # Whole directive lines only, not the comments that mention them.
        pattern = re.compile(rf"^(\s*){re.escape(old)}$", re.MULTILINE)
        conf, n = pattern.subn(lambda m, new=new: m.group(1) + new, conf)
        assert n == 1, f"deploy/nginx.conf must have the line {old!r} exactly once"
    return conf


class Nginx:
    def __init__(
        self, binary: str, root: Path, app_port: int | None, conf: str | None = None, worker_connections: int = 256
    ) -> None:
        self.binary = binary
        self.root = root
        self.port = free_port()
        self.app_port = app_port
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        site = root / "sessionwatch.conf"
        self.access_log = root / "sessionwatch.access.log"
        site.write_text(
            render(conf or CONF.read_text(), app_port=app_port, listen_port=self.port, access_log=self.access_log)
        )
        temp = {name: root / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
        for path in temp.values():
            path.mkdir(exist_ok=True)
        # Workers of a root master switch to `nobody`, who cannot enter tmp_path.
        user = "user root;" if os.geteuid() == 0 else ""
        (root / "nginx.conf").write_text(
            f"""
{user}
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"} info;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log {root / "access.log"};
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {site};
}}
"""
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", f"{self.root}/", "-c", str(self.root / "nginx.conf"), "-e", str(self.root / "error.log"), *extra]

    def start(self) -> Nginx:
        with (self.root / "stderr.log").open("ab") as stderr:
            self.proc = subprocess.Popen(self.command("-g", "daemon off;"), stdout=subprocess.DEVNULL, stderr=stderr)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"nginx exited: {self.log()}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 10, "nginx to proxy /healthz")
        return self

    def stop(self, *, graceful: bool = False) -> None:
        if self.proc is None:
            return
        # SIGTERM: fast shutdown, open streams are cut; SIGQUIT: graceful, the
        # access log is written out first
        self.proc.send_signal(signal.SIGQUIT if graceful else signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log(self) -> str:
        parts = [(self.root / name) for name in ("stderr.log", "error.log")]
        return "\n".join(p.read_text()[-2000:] for p in parts if p.exists())


@pytest.fixture
def proxied(
    projects: Path, sw_server: Callable[..., Server], tmp_path: Path, nginx_bin: str
) -> Iterator[tuple[Server, Nginx]]:
    srv = sw_server(projects_dir=projects)
    nginx = Nginx(nginx_bin, tmp_path / "nginx", srv.port)
    try:
        nginx.start()
        yield srv, nginx
    finally:
        nginx.stop()


def stream_block(conf: str) -> str:
    match = re.search(r"location = /stream \{(.*?)\n    \}", conf, re.DOTALL)
    assert match, "deploy/nginx.conf has no `location = /stream` block"
    return re.sub(r"#.*", "", match.group(1))


def test_conf_passes_nginx_t(tmp_path: Path, nginx_bin: str) -> None:
    nginx = Nginx(nginx_bin, tmp_path / "nginx", free_port())
    result = subprocess.run(nginx.command("-t"), capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def test_stream_location_is_set_up_for_server_sent_events() -> None:
    block = stream_block(CONF.read_text())
    for directive in (
        "proxy_buffering off;",
        "proxy_cache off;",
        "gzip off;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_read_timeout 1h;",
    ):
        assert directive in block, f"/stream location lacks {directive}"
    conf = CONF.read_text()
    assert re.search(r"^upstream sessionwatch \{", conf, re.MULTILINE)
    assert re.search(r"^\s*#\s*listen 443 ssl http2;", conf, re.MULTILINE), "the TLS listener (HTTP/2) is shown, commented"
    assert re.search(r"^\s*#\s*ssl_certificate\s", conf, re.MULTILINE)


def test_appended_line_reaches_an_sse_client_through_nginx_unbuffered(
    proxied: tuple[Server, Nginx], projects: Path
) -> None:
    _, nginx = proxied
    client = SSEClient(nginx.url + "/stream").start()
    try:
        init = client.next()
        assert init.event == "init"
        assert client.status == 200
        assert client.response_headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in client.response_headers, "the stream must not be compressed"

        # Quiet stream: keepalives (a few dozen bytes, every 1 s here) come
        # through one by one; a buffering proxy would hold them for minutes.
        keepalives = [client.next(timeout=5, skip=()) for _ in range(2)]
        assert [k.event for k in keepalives] == ["keepalive", "keepalive"]

        client.drain()
        with (projects / SESSION_FILE).open("ab") as f:
            f.write(assistant("msg-through-nginx", "req-through-nginx", 777, model="claude-sonnet-4-20250514"))
        # The latency through nginx is measured in bench/; here it must simply arrive.
        event = client.next(timeout=5)
        assert event.event == "session-updated"
        assert [s["id"] for s in event.data["sessions"]] == [SESSION]
    finally:
        client.stop()


def test_all_and_the_page_through_nginx(proxied: tuple[Server, Nginx]) -> None:
    srv, nginx = proxied
    direct = httpx.get(srv.url + "/all", timeout=5).json()
    via = httpx.get(nginx.url + "/all", headers={"Accept-Encoding": "gzip"}, timeout=5)
    assert via.status_code == 200
    assert via.headers.get("content-encoding") == "gzip"
    assert sorted(s["id"] for s in via.json()["sessions"]) == sorted(s["id"] for s in direct["sessions"])

    page = httpx.get(nginx.url + "/", timeout=5)
    assert page.status_code == 200 and "<title>sessionwatch</title>" in page.text
    script = httpx.get(nginx.url + "/static/connection.js", timeout=5)
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]


def test_browser_through_nginx_is_live_and_comes_back_after_a_502(
    proxied: tuple[Server, Nginx], projects: Path, chromium_bin: str
) -> None:
    from playwright import sync_api

    srv, nginx = proxied
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_bin, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(nginx.url + "/")
            live = "() => document.querySelector('#conn .label').textContent === 'Live'"
            page.wait_for_function(live, timeout=10_000)
            count = len(httpx.get(srv.url + "/all", timeout=5).json()["sessions"])
            page.wait_for_function("n => document.querySelectorAll('#rows tr').length === n", arg=count, timeout=5_000)

            # The app restarts: nginx answers 502, the browser gives its
            # EventSource up for good, and the page makes a new one.
            srv.stop()
            assert httpx.get(nginx.url + "/all", timeout=5).status_code == 502
            page.wait_for_function(
                "() => ['Offline', 'Polling'].includes(document.querySelector('#conn .label').textContent)",
                timeout=5_000,
            )
            srv.start()
            page.wait_for_function(live, timeout=20_000)
            old = page.inner_text(f'tr[data-id="{SESSION}"] td[data-col="tokens"]')
            with (projects / SESSION_FILE).open("ab") as f:
                f.write(assistant("msg-after-502", "req-after-502", 90_000, model="claude-sonnet-4-20250514"))
            page.wait_for_function(
                """([id, old]) => document.querySelector(`tr[data-id="${id}"] td[data-col="tokens"]`).textContent !== old""",
                arg=[SESSION, old],
                timeout=5_000,
            )
            assert errors == []
        finally:
            browser.close()


TOKEN = "tok-3f9a1c-never-in-logs"


def test_query_token_stays_out_of_the_access_log(
    projects: Path, sw_server: Callable[..., Server], tmp_path: Path, nginx_bin: str
) -> None:
    """Issue 8, item 14: a `?token=` (scripts, EventSource) never lands in the log."""
    srv = sw_server(projects_dir=projects, extra_args=["--token", TOKEN])
    nginx = Nginx(nginx_bin, tmp_path / "nginx", srv.port)
    try:
        nginx.start()
        url = nginx.url
        r = httpx.get(f"{url}/all?token={TOKEN}", timeout=5)
        assert r.status_code == 200  # the token did its job...
        r = httpx.get(
            f"{url}/all?source=claude&token={TOKEN}", headers={"Referer": f"{url}/?token={TOKEN}"}, timeout=5
        )
        assert r.status_code == 200
        stream = SSEClient(f"{url}/stream?token={TOKEN}").start()
        try:
            assert stream.next().event == "init"
        finally:
            stream.stop()
        httpx.get(f"{url}/all?token=wrong-{TOKEN}", timeout=5)
    finally:
        nginx.stop(graceful=True)
    log = nginx.access_log.read_text()
    assert '"GET /all HTTP/1.1" 200' in log  # ...and the request was logged, without it
    assert TOKEN not in log, log
