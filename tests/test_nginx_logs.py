"""deploy/nginx.conf keeps tokens out of nginx's access log (issue 8, item 14).

A real nginx runs the shipped conf, with the upstream, the listener and the
access log file moved into tmp_path; requests carry ``?token=`` the way a
script might, and the log must not.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .conftest import free_port, wait_for
from .sse import SSEClient

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TOKEN = "tok-3f9a1c-never-in-logs"


def site(conf: str, *, app_port: int, listen_port: int, access_log: Path) -> str:
    swaps = [
        (r"^(\s*)server 127\.0\.0\.1:8765;$", rf"\g<1>server 127.0.0.1:{app_port};"),
        (r"^(\s*)listen 80;$", rf"\g<1>listen 127.0.0.1:{listen_port};"),
        (r"^(\s*)listen \[::\]:80;$", r"\g<1># (IPv6 listener dropped by the test)"),
        # the shipped file's own access log, when it has one, moves into tmp_path
        (r"^(\s*)access_log /var/log/nginx/\S+( \w+)?;$", rf"\g<1>access_log {access_log}\g<2>;"),
    ]
    for pattern, replacement in swaps:
        conf = re.sub(pattern, replacement, conf, flags=re.MULTILINE)
    return conf


def start_nginx(root: Path, app_port: int) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    root.mkdir(parents=True)
    access_log = root / "access.log"
    (root / "site.conf").write_text(site(CONF.read_text(), app_port=app_port, listen_port=port, access_log=access_log))
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / name).mkdir()
    user = "user root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(
        f"""
{user}
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"} info;
events {{ worker_connections 64; }}
http {{
    access_log {access_log};
    client_body_temp_path {root / "client_body"};
    proxy_temp_path {root / "proxy"};
    fastcgi_temp_path {root / "fastcgi"};
    uwsgi_temp_path {root / "uwsgi"};
    scgi_temp_path {root / "scgi"};
    include {root / "site.conf"};
}}
"""
    )
    proc = subprocess.Popen(
        [NGINX, "-p", f"{root}/", "-c", str(root / "nginx.conf"), "-e", str(root / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, 10, "nginx to proxy /healthz")
    return proc, url, access_log


def test_query_token_stays_out_of_the_access_log(sw_server: Callable[..., Any], projects: Path, tmp_path: Path) -> None:
    srv = sw_server(projects_dir=projects, extra_args=["--token", TOKEN])
    proc, url, access_log = start_nginx(tmp_path / "nginx", srv.port)
    try:
        r = httpx.get(f"{url}/all?token={TOKEN}", timeout=5)
        assert r.status_code == 200  # the token did its job...
        r = httpx.get(f"{url}/all?source=claude&token={TOKEN}", headers={"Referer": f"{url}/?token={TOKEN}"}, timeout=5)
        assert r.status_code == 200
        stream = SSEClient(f"{url}/stream?token={TOKEN}").start()
        try:
            assert stream.next().event == "init"
        finally:
            stream.stop()
        httpx.get(f"{url}/all?token=wrong-{TOKEN}", timeout=5)
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful: the log lines are written
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log = access_log.read_text()
    assert '"GET /all HTTP/1.1" 200' in log  # ...and the request was logged, without it
    assert TOKEN not in log, log
