"""``python -m bench [--quick | --smoke] [--no-write] [--only NAME ...]``: every
speed and size figure of DESIGN.md "Speed and size", printed as one table and
written to docs/benchmarks.md with the machine, the commands and the date.

Each figure's last result is kept in docs/benchmarks.json, by benchmark: a run
with ``--only`` replaces only the rows of the benchmarks it ran, and
docs/benchmarks.md is rebuilt from all of them plus bench/analysis.md.

``--quick`` uses small sizes (about a minute); ``--smoke`` the smallest that
still run every path, to check the harness works (the test suite runs it; its
figures mean little)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import httpx

from bench.common import (
    REPO, Server, assistant_lines, fixture_lines, make_corpus, median, pct, raise_nofile, rss_kib,
)

CCUSAGE_VERSION = "20.0.24"  # newest release whose @ccusage/ccusage-linux-x64 binary is published
CCUSAGE_PREFIX = Path(os.environ.get("BENCH_CCUSAGE_PREFIX", "/tmp/ccusage-bench"))
#: `src` of another sessionwatch checkout (BENCH_BASELINE_SRC): the cold index
#: runs it too, alternating with this tree and ccusage (before/after figures).
BASELINE_SRC = os.environ.get("BENCH_BASELINE_SRC", "")

Row = tuple[str, str, str, str]  # figure, measured, target, met?
MODE = "full"  # "smoke", "quick" or "full"; set by main()


def pick(smoke: Any, quick: Any, full: Any) -> Any:
    """The size for the current mode."""
    return {"smoke": smoke, "quick": quick, "full": full}[MODE]


def debounces() -> tuple[int, ...]:
    return (50,) if MODE == "smoke" else (500, 50)

ROWS: list[Row] = []
NOTES: list[str] = []
#: rows and notes by benchmark name (the one running: CURRENT)
BY_BENCH: dict[str, dict[str, list[Any]]] = {}
CURRENT = ""


def row(figure: str, measured: str, target: str, met: bool | None) -> None:
    r = (figure, measured, target, "—" if met is None else ("yes" if met else "**no**"))
    ROWS.append(r)
    BY_BENCH.setdefault(CURRENT, {"rows": [], "notes": []})["rows"].append(r)
    print(f"  {figure}: {measured}  (target {target})", flush=True)


def set_met(met: bool) -> None:
    """Change the last row's verdict (once a later figure decides it)."""
    r = ROWS[-1][:3] + (("yes" if met else "**no**"),)
    ROWS[-1] = r
    BY_BENCH[CURRENT]["rows"][-1] = r


def note(text: str) -> None:
    NOTES.append(text)
    BY_BENCH.setdefault(CURRENT, {"rows": [], "notes": []})["notes"].append(text)
    print("  note: " + text, flush=True)


def ms(v: float) -> str:
    return f"{v:.0f} ms" if v >= 10 else f"{v:.2f} ms"


# --- SSE clients in their own process --------------------------------------------------------


class Clients:
    def __init__(self, port: int, n: int) -> None:
        self.n = n
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sseclients", str(port), str(n)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        self.connected = int(line[1]) if len(line) > 1 else 0
        self.failed = int(line[2]) if len(line) > 2 else n
        self.connect_s = float(line[3]) if len(line) > 3 else float("nan")

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def finish(self) -> dict[str, Any]:
        self.send("stop")
        assert self.proc.stdout is not None
        out = self.proc.stdout.readline()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return json.loads(out) if out else {}


# --- the generator --------------------------------------------------------------------------


class Generator:
    """Appends one realistic assistant line plus a marker title line per write."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.lines = assistant_lines()
        self.seq = 0

    def append(self, path: Path) -> None:
        self.seq += 1
        base = random.choice(self.lines)
        line = base.replace(b'"id":"msg_', b'"id":"msg_g%d' % self.seq, 1)
        sid = path.stem.encode()
        t = time.time_ns()
        marker = b'{"type":"custom-title","customTitle":"bm:%d:%d","sessionId":"%s"}\n' % (self.seq, t, sid)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line + marker)
        finally:
            os.close(fd)

    def steady(self, rate: float, seconds: float) -> int:
        t0 = time.monotonic()
        n = int(rate * seconds)
        for i in range(n):
            target = t0 + i / rate
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.append(self.files[i % len(self.files)])
        return n

    def burst(self, seconds: float, max_writes: int, pause: float = 0.001) -> int:
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end and n < max_writes:
            self.append(self.files[n % len(self.files)])
            n += 1
            time.sleep(pause)
        return n


def main_files(projects: Path) -> list[Path]:
    return sorted(p for p in projects.glob("*/*.jsonl") if not p.name.startswith("agent-"))


# --- 1. append → client latency ---------------------------------------------------------------


def bench_latency(work: Path, quick: bool) -> None:
    sizes = pick([5], [20], [100, 1000])
    seconds = pick(2, 6, 20)
    rate = pick(2.0, 2.0, 4.0)
    root = work / "latency"
    make_corpus(root, 10**9, max_sessions=20, lines_per_file=40)
    files = main_files(root / "projects")
    for debounce in debounces():
        for n in sizes:
            with Server(root / "projects", root / f"db-{debounce}-{n}.sqlite", debounce_ms=debounce,
                        log=work / "server.log").start() as srv:
                time.sleep(1.0)
                cl = Clients(srv.port, n)
                gen = Generator(files)
                writes = gen.steady(rate, seconds)
                time.sleep(debounce / 1000 + 1.5)
                res = cl.finish()
            lat = res.get("latencies_ms", [])
            expected = writes * cl.connected
            figure = f"append → client, {n} clients, debounce {debounce} ms"
            measured = (f"p50 {ms(median(lat))} / p99 {ms(pct(lat, 99))} / max {ms(max(lat) if lat else float('nan'))}"
                        f" ({len(lat)} of {expected} receipts, {writes} writes at {rate:g}/s)")
            met = None
            if lat and n >= 1000:
                met = median(lat) <= 100 and pct(lat, 99) <= 600
            row(figure, measured, "p50 ≤ 100 ms, p99 ≤ 600 ms (at 1,000 clients)", met)
            if cl.failed:
                note(f"latency run {n} clients/debounce {debounce}: {cl.failed} clients failed to connect")


# --- 2. memory per connection --------------------------------------------------------------------


def bench_memory(work: Path, quick: bool) -> None:
    sizes = pick([100], [1000], [1000, 5000, 10000])
    root = work / "memory"
    make_corpus(root, 10**9, max_sessions=20, lines_per_file=40)
    for n in sizes:
        with Server(root / "projects", root / f"db-{n}.sqlite", log=work / "server.log").start() as srv:
            time.sleep(1.5)
            idle = [srv.rss() for _ in range(5) if time.sleep(0.1) is None]
            cl = Clients(srv.port, n)
            time.sleep(2.0)
            loaded = [srv.rss() for _ in range(5) if time.sleep(0.1) is None]
            res = cl.finish()
        per = (median(loaded) - median(idle)) / max(1, cl.connected)
        row(f"memory per SSE connection, {n} idle clients",
            f"{per:.1f} KiB/conn ({cl.connected} connected in {cl.connect_s:.1f} s; RSS {median(idle)/1024:.0f} → {median(loaded)/1024:.0f} MiB)",
            "≤ 16 KiB each, 10,000 held", per <= 16 and cl.connected >= n)
        if cl.failed or res.get("still_open", n) < cl.connected:
            note(f"memory run {n}: {cl.failed} failed to connect, {res.get('still_open')} open at the end")


def bench_memory_reference(work: Path, quick: bool) -> None:
    """The same measurement against bench/lean_stream.py (bare ASGI, no sse-starlette)."""
    n = pick(100, 1000, 10000)
    port = __import__("bench.common", fromlist=["free_port"]).free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.lean_stream", str(port)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        time.sleep(1.0)
        idle = [rss_kib(proc.pid) for _ in range(5) if time.sleep(0.1) is None]
        cl = Clients(port, n)
        time.sleep(2.0)
        loaded = [rss_kib(proc.pid) for _ in range(5) if time.sleep(0.1) is None]
        cl.finish()
    finally:
        proc.send_signal(2)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    per = (median(loaded) - median(idle)) / max(1, cl.connected)
    row(f"reference: bare ASGI stream on uvicorn/h11 (bench/lean_stream.py), {n} idle clients",
        f"{per:.1f} KiB/conn ({cl.connected} connected)", "— (floor for the figure above)", None)


# --- 3. cold index vs ccusage ---------------------------------------------------------------------


def ccusage_bin() -> list[str] | None:
    cli = CCUSAGE_PREFIX / "node_modules" / "ccusage" / "src" / "cli.js"
    native = CCUSAGE_PREFIX / "node_modules" / "@ccusage" / "ccusage-linux-x64"
    if not (cli.exists() and native.exists()):
        r = subprocess.run(["npm", "install", "--prefix", str(CCUSAGE_PREFIX), f"ccusage@{CCUSAGE_VERSION}"],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            note("ccusage install failed: " + (r.stderr.strip().splitlines() or ["?"])[-1])
            return None
    if not native.exists():
        note(f"ccusage {CCUSAGE_VERSION}: the @ccusage/ccusage-linux-x64 native binary was not installed")
        return None
    # Prefer the native executable directly (the JS shim only execs it).
    exe = [p for p in native.rglob("*") if p.is_file() and os.access(p, os.X_OK)]
    return [str(exe[0])] if exe else ["node", str(cli)]


#: CPU seconds (user + system, the process and its children) of each command's
#: runs in the last ``alternate``: less moved by the machine's other load than
#: wall time, which is what the targets are judged on.
CPU: list[list[float]] = []


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def installed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a command runs in as an installed program would: with
    its bytecode cache. ``PYTHONDONTWRITEBYTECODE`` (set on some machines)
    would make every run compile every module again, which no user's
    ``pip install`` (it compiles on install) ever pays."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return env | (extra or {})


def alternate(cmds: list[tuple[list[str], dict[str, str] | None]], runs: int,
              before: Callable[[], object] | None = None) -> tuple[list[list[float]], list[bytes]]:
    """Run the commands in turn, ``runs`` rounds (a, b, a, b, ...), after one
    untimed run of each (which also writes the bytecode cache: see
    :func:`installed_env`), so that a shared machine's load falls on each
    alike; wall times and last outputs (CPU times in ``CPU``). ``before``
    runs, untimed, before each timed run."""
    cmds = [(cmd, env if env is not None else installed_env()) for cmd, env in cmds]
    times: list[list[float]] = [[] for _ in cmds]
    CPU[:] = [[] for _ in cmds]
    outs = [b""] * len(cmds)
    for cmd, env in cmds:  # untimed: writes the bytecode cache, warms the page cache
        subprocess.run(cmd, capture_output=True, env=env, timeout=900)
    for _ in range(runs):
        for i, (cmd, env) in enumerate(cmds):
            if before is not None:
                before()
            c = _children_cpu()
            t = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, env=env, timeout=900)
            times[i].append(time.perf_counter() - t)
            CPU[i].append(_children_cpu() - c)
            if r.returncode != 0:
                raise RuntimeError(f"{cmd[0]} exited {r.returncode}: {r.stderr[-500:]!r}")
            outs[i] = r.stdout
    return times, outs


def load() -> str:
    return "load average " + " / ".join(f"{v:.1f}" for v in os.getloadavg())


def read_all(paths: list[Path]) -> None:
    """Read the files (into the page cache), the bytes thrown away."""
    buf = bytearray(1 << 20)
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            while os.readv(fd, [buf]):
                pass
        finally:
            os.close(fd)


def bench_cold(work: Path, quick: bool) -> None:
    sizes = pick([5 * 10**6], [50 * 10**6], [200 * 10**6, 10**9])
    runs = pick(1, 3, 11)
    cc = None if MODE == "smoke" else ccusage_bin()
    empty = work / "cold-empty"
    empty.mkdir(parents=True, exist_ok=True)
    sw_empty = [sys.executable, "-m", "sessionwatch", "scan", "--json", "--projects-dir", str(empty)]
    starts = [(sw_empty, None)] + ([(sw_empty, installed_env({"PYTHONPATH": BASELINE_SRC}))] if BASELINE_SRC else [])
    start_t, _ = alternate(starts, pick(3, 5, 7))
    row("`sessionwatch scan --json` start-up (empty projects dir)",
        f"median {median(start_t[0]) * 1000:.0f} ms of {len(start_t[0])}, CPU {median(CPU[0]) * 1000:.0f} ms"
        + (f" (baseline {BASELINE_SRC}: {median(start_t[1]) * 1000:.0f} ms, CPU {median(CPU[1]) * 1000:.0f} ms, "
           "same rounds)" if BASELINE_SRC else ""),
        "— (part of the cold index below)", None)
    for size in sizes:
        root = work / "cold"
        sessions, nfiles, total = make_corpus(root, size)
        mb = total / 1e6
        # Both tools read from the page cache. This machine's kernel pages out
        # what is not touched for a few seconds (DAMON), so the corpus is read
        # again, untimed, before each timed run: no round reads from the disk.
        corpus = sorted((root / "projects").rglob("*.jsonl"))
        read_all(corpus)
        sw_cmd = [sys.executable, "-m", "sessionwatch", "scan", "--json", "--projects-dir", str(root / "projects")]
        figure = f"cold index `sessionwatch scan --json`, {sessions} sessions / {nfiles} files / {mb:.0f} MB"
        if cc is None:
            (sw_t,), (sw_out,) = alternate([(sw_cmd, None)], runs, lambda: read_all(corpus))
            row(figure, f"median {median(sw_t):.2f} s of {runs} → {mb / median(sw_t):.0f} MB/s", "≥ ccusage", None)
            row("cold index `ccusage session --json --offline`", "not run (see notes)", "—", None)
            continue
        env = installed_env({"CLAUDE_CONFIG_DIR": str(root)})
        before = load()
        cmds = [(sw_cmd, None), (cc + ["session", "--json", "--offline"], env)]
        if BASELINE_SRC:  # an older sessionwatch, in the same rounds: before/after side by side
            cmds.append((sw_cmd, installed_env({"PYTHONPATH": BASELINE_SRC})))
        times, outs = alternate(cmds, runs, lambda: read_all(corpus))
        (sw_t, cc_t), (sw_out, cc_out) = times[:2], outs[:2]
        sw_rate, cc_rate = mb / median(sw_t), mb / median(cc_t)
        row(figure, f"median {median(sw_t):.2f} s of {runs} (fastest {min(sw_t):.2f} s) → {sw_rate:.0f} MB/s, "
            f"CPU {median(CPU[0]):.2f} s (alternating with ccusage; {before} → {load()})",
            "faster than ccusage, same corpus", sw_rate >= cc_rate)
        row(f"cold index `ccusage session --json --offline` {CCUSAGE_VERSION}, same {mb:.0f} MB corpus",
            f"median {median(cc_t):.2f} s of {runs} (fastest {min(cc_t):.2f} s) → {cc_rate:.0f} MB/s, "
            f"CPU {median(CPU[1]):.2f} s", "—", None)
        row(f"cold index ratio sessionwatch / ccusage, {mb:.0f} MB", f"{sw_rate / cc_rate:.2f}× "
            f"(runs: ours {', '.join(f'{t:.2f}' for t in sw_t)}; ccusage {', '.join(f'{t:.2f}' for t in cc_t)})",
            "> 1.0×", sw_rate > cc_rate)
        if BASELINE_SRC:
            base_t = times[2]
            row(f"cold index, baseline sessionwatch ({BASELINE_SRC}), same {mb:.0f} MB corpus, same rounds",
                f"median {median(base_t):.2f} s of {runs} → {mb / median(base_t):.0f} MB/s, "
                f"CPU {median(CPU[2]):.2f} s ({mb / median(base_t) / cc_rate:.2f}× ccusage)", "—", None)
            if json.loads(outs[2])["totals"] != json.loads(sw_out)["totals"]:
                note(f"baseline totals differ from this tree's on the {mb:.0f} MB corpus")
        compare_tokens(sw_out, cc_out, mb)


def compare_tokens(sw_out: bytes, cc_out: bytes, mb: float) -> None:
    """Per-session token totals of both tools, session by session."""
    sw = {s["id"]: s["tokens"] for s in json.loads(sw_out)["sessions"]}
    ccs = {s["period"]: s for s in json.loads(cc_out)["session"]}
    mism = 0
    examples = []
    for sid, t in sw.items():
        c = ccs.get(sid)
        mine = (t["input"], t["output"], t["cache_creation"], t["cache_read"])
        theirs = None if c is None else (c["inputTokens"], c["outputTokens"], c["cacheCreationTokens"], c["cacheReadTokens"])
        if mine != theirs:
            mism += 1
            if len(examples) < 3:
                examples.append(f"{sid}: sessionwatch {mine} vs ccusage {theirs}")
    only_cc = len(set(ccs) - set(sw))
    row(f"per-session token totals equal to ccusage, {mb:.0f} MB",
        f"{len(sw) - mism} of {len(sw)} sessions equal; {mism} mismatches; {only_cc} ccusage-only sessions",
        "every session equal", mism == 0 and only_cc == 0)
    for e in examples:
        note("token mismatch " + e)


# --- 4. incremental cost ------------------------------------------------------------------------


def bench_incremental(work: Path, quick: bool) -> None:
    from sessionwatch.sources.claude.index import ClaudeIndex
    from sessionwatch.prices import PriceTable

    sizes = pick([1], [1, 50], [1, 100, 500])
    samples = pick(50, 300, 1000)
    lines = fixture_lines()
    app = assistant_lines()
    for size_mb in sizes:
        root = work / "incr"
        if root.exists():
            shutil.rmtree(root)
        proj = root / "-bench-incremental"
        proj.mkdir(parents=True)
        sid = str(uuid.uuid4())
        path = proj / f"{sid}.jsonl"
        target = size_mb * 2**20
        with open(path, "wb") as f:
            n, k = 0, 0
            while n < target:
                ln = lines[k % len(lines)].replace(b'"id":"msg_', b'"id":"msg_i%d' % k, 1)
                f.write(ln)
                n += len(ln)
                k += 1
        os.utime(path, (time.time() - 60, time.time() - 60))
        index = ClaudeIndex(root, PriceTable.embedded())
        t = time.perf_counter()
        index.scan()
        scan_s = time.perf_counter() - t
        times = []
        for i in range(samples):
            ln = app[i % len(app)].replace(b'"id":"msg_', b'"id":"msg_a%d' % i, 1)
            with open(path, "ab") as f:
                f.write(ln)
            t = time.perf_counter()
            touched = index.update(path)
            now = time.time()
            for s in touched:
                index.session(s, now)
            times.append((time.perf_counter() - t) * 1000)
        row(f"one line appended to a {size_mb} MB transcript → new totals (index.update + session)",
            f"median {ms(median(times))} / p99 {ms(pct(times, 99))} over {samples} appends (first scan {size_mb * 1.048576 / scan_s:.0f} MB/s)",
            "≤ 5 ms, independent of size (judged on the median)", median(times) <= 5)
        shutil.rmtree(root)


# --- 5. warm restart + memory with 10,000 sessions -------------------------------------------------


def all_count(url: str) -> int:
    try:
        r = httpx.get(url + "/all", timeout=10)
        return len(r.json()["sessions"]) if r.status_code == 200 else -1
    except (httpx.HTTPError, ValueError):
        return -1


def bench_warm(work: Path, quick: bool) -> None:
    n = pick(100, 1000, 10000)
    root = work / "warm"
    sessions, nfiles, total = make_corpus(root, 10**12, max_sessions=n, lines_per_file=20)
    db = root / "db.sqlite"
    srv = Server(root / "projects", db, log=work / "server.log")
    t0 = time.monotonic()
    srv.start(timeout=600)
    # some fixture files (a lone title line) make no session: wait until the count settles
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - t0 < 600:
        got = all_count(srv.url)
        if got != last:
            last, stable_since = got, time.monotonic()
        elif got > 0 and time.monotonic() - stable_since > 3.0:
            break
        time.sleep(0.2)
    first = stable_since - t0
    sessions = last
    srv.stop()
    times = []
    rss = []
    for _ in range(pick(1, 3, 5)):
        srv = Server(root / "projects", db, log=work / "server.log")
        t = time.monotonic()
        srv.start(wait=False)
        got = -1
        while time.monotonic() - t < 60:
            got = all_count(srv.url)
            if got >= sessions:
                break
            time.sleep(0.02)
        times.append(time.monotonic() - t)
        time.sleep(pick(0.5, 3.0, 3.0))
        rss.append(srv.rss())
        srv.stop()
    full = sessions >= 9000
    row(f"warm restart over {nfiles} transcripts ({sessions} sessions) → full `/all`",
        f"median {median(times):.2f} s / max {max(times):.2f} s of {len(times)} restarts (process start included; first start {first:.1f} s)",
        "≤ 2 s (10,000 transcripts)", median(times) <= 2 if full else None)
    row(f"server memory, {sessions} sessions indexed, no clients",
        f"{median(rss)/1024:.0f} MiB RSS (median of {len(rss)})", "≤ 150 MB (10,000 sessions)",
        median(rss) * 1024 <= 150e6 if full else None)


# --- 6. fan-out throughput -----------------------------------------------------------------------


def bench_fanout(work: Path, quick: bool) -> None:
    n = pick(10, 50, 1000)
    root = work / "fanout"
    make_corpus(root, 10**9, max_sessions=200, lines_per_file=20)
    files = main_files(root / "projects")
    for debounce in debounces():
        with Server(root / "projects", root / f"db{debounce}.sqlite", debounce_ms=debounce,
                    log=work / "server.log").start() as srv:
            time.sleep(1.0)
            cl = Clients(srv.port, n)
            cl.send("mark")
            time.sleep(0.2)
            gen = Generator(files)
            t = time.monotonic()
            writes = gen.burst(pick(1.0, 3.0, 10.0), 50000)
            time.sleep(debounce / 1000 + 1.0)
            span = time.monotonic() - t
            res = cl.finish()
        ev = res.get("events_since_mark", 0)
        lat = res.get("latencies_ms", [])
        row(f"fan-out, {n} clients, burst of {writes} appends over 200 sessions, debounce {debounce} ms",
            f"{ev / span:,.0f} events/s delivered ({res.get('bytes', 0) / span / 1e6:.1f} MB/s); "
            f"{len(lat) / span:,.0f} session updates/s ({len(lat)} marker receipts, write→receipt p50 {ms(median(lat))} p99 {ms(pct(lat, 99))})",
            "— (no target; report)", None)


# --- 7. tracker ingest ----------------------------------------------------------------------------


def run_client(args: list[str], figure: str, target: str, timeout: int) -> dict[str, Any] | None:
    """``python -m <args>`` (a measuring client that prints one JSON line last):
    its result, or None after a failed row for ``figure``."""
    r = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO, timeout=timeout)
    if r.returncode != 0:
        row(figure, "failed: " + r.stderr.strip()[-200:], target, False)
        return None
    result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def bench_tracker(work: Path, quick: bool) -> None:
    root = work / "tracker"
    root.mkdir(parents=True, exist_ok=True)
    (root / "projects").mkdir(exist_ok=True)
    with Server(root / "projects", root / "db.sqlite", log=work / "server.log").start() as srv:
        res = run_client(["bench.tracker_client", srv.url, pick("1", "3", "15")],
                         "tracker heartbeats", "≥ 3,000 / s", 300)
    if res is None:
        return
    b, s, raw = res["batch"], res["single"], res["single_raw"]
    row("tracker heartbeats, `POST /heartbeats` batches of 100 (4 connections)",
        f"{b['per_s']:,.0f} heartbeats/s ({b['requests']} requests, p50 {ms(b['p50_ms'])} p99 {ms(b['p99_ms'])}, {b['errors']} errors)",
        "≥ 3,000 / s", b["per_s"] >= 3000)
    row("tracker heartbeats, single `POST /sessions/{id}/heartbeat`, lean raw-socket client (8 connections)",
        f"{raw['per_s']:,.0f} heartbeats/s (p50 {ms(raw['p50_ms'])} p99 {ms(raw['p99_ms'])}, {raw['errors']} errors)",
        "≥ 3,000 / s", raw["per_s"] >= 3000)
    row("tracker heartbeats, single `POST /sessions/{id}/heartbeat`, httpx client (8 connections)",
        f"{s['per_s']:,.0f} heartbeats/s (p50 {ms(s['p50_ms'])} p99 {ms(s['p99_ms'])}; httpx is the bottleneck)",
        "—", None)
    kill = REPO / "bench" / "kill.py"
    if kill.exists():
        r = subprocess.run([sys.executable, "-m", "bench.kill"] + ([] if MODE == "full" else ["--quick"]),
                           capture_output=True, text=True, cwd=REPO, timeout=300)
        line = (r.stdout.strip().splitlines() or [f"failed: {r.stderr.strip()[-300:]}"])[-1]
        found = re.search(r"p99 (\d+) ms", line)
        row("kill latency (request → websocket closed)", line,
            "≤ 2 s with default settings (issue 4)", bool(found) and int(found.group(1)) <= 2000)
    else:
        row("kill latency (request → websocket closed)", "see Panel issue", "p50/p99 reported", None)


# --- 8. tracker registrations with many Panel sessions live ----------------------------------------


def bench_registrations(work: Path, quick: bool) -> None:
    live, count = pick((200, 200), (2000, 1000), (10000, 5000))
    figure = f"tracker registrations with {live:,} Panel sessions live (`POST /sessions`, 8 connections)"
    target = "≥ 1,000 / s (10,000 live)"
    res = run_client(["bench.registrations", "--live", str(live), "--count", str(count)], figure, target, 900)
    if res is None:
        return
    reg, st = res["register"], res["status"]
    errors = reg["errors"] + st["errors"]
    row(figure,
        f"{reg['per_s']:,.0f} registrations/s ({reg['requests']} timed after {live:,}, p50 {ms(reg['p50_ms'])} "
        f"p99 {ms(reg['p99_ms'])}, {reg['errors']} errors; server CPU {reg.get('cpu_ms', 0):.2f} ms each)",
        target, (reg["per_s"] >= 1000 and errors == 0) if live >= 10000 else None)
    row(f"tracker status updates with {live:,} Panel sessions live (`PUT /sessions/{{id}}/status`)",
        f"{st['per_s']:,.0f} updates/s (p50 {ms(st['p50_ms'])} p99 {ms(st['p99_ms'])}, {st['errors']} errors; "
        f"server CPU {st.get('cpu_ms', 0):.2f} ms each; "
        f"a `/stream?source=panel` client saw {res['events_seen_by_a_stream_client']:,} events)",
        "— (no target; report)", None)
    if errors:
        note(f"registrations: {errors} errors, first: {reg['first_error'] or st['first_error']}")


# --- 9. hook event → client ----------------------------------------------------------------------


def bench_hooks(work: Path, quick: bool) -> None:
    clients, events = pick((20, 10), (100, 40), (1000, 80))
    figure = f"hook event → client, {clients:,} clients (`POST /hooks` PreToolUse, 4/s)"
    target = "p50 ≤ 50 ms, p99 ≤ 300 ms (at 1,000 clients)"
    res = run_client(["bench.hooks", "--clients", str(clients), "--events", str(events)], figure, target, 600)
    if res is None:
        return
    lat_ok = res["p50_ms"] is not None and res["receipts"] == res["expected"]
    row(figure,
        f"p50 {ms(res['p50_ms'] or float('nan'))} / p99 {ms(res['p99_ms'] or float('nan'))} / max "
        f"{ms(res['max_ms'] or float('nan'))} ({res['receipts']:,} of {res['expected']:,} receipts); the hook's own "
        f"round trip p50 {ms(res['post_p50_ms'])} p99 {ms(res['post_p99_ms'])}",
        target,
        (lat_ok and res["p50_ms"] <= 50 and res["p99_ms"] <= 300) if clients >= 1000 else None)


# --- 10. replay window memory --------------------------------------------------------------------


def bench_replay(work: Path, quick: bool) -> None:
    sessions, refreshes = pick((20, 64), (300, 512), (300, 4096))
    figure = f"replay window memory, {sessions} Panel sessions × {refreshes:,} `POST /refresh`"
    target = "≤ 64 MiB, whatever the events' size"
    res = run_client(["bench.replay_memory", "--json", "--sessions", str(sessions), "--refreshes", str(refreshes),
                      "--settle-s", str(pick(1, 3, 5))], figure, target, 1200)
    if res is None:
        return
    peak = res["peak_bytes"] / 2**20
    row(figure,
        f"the hub's window peaked at {peak:.1f} MiB ({res['peak_events']:,} events of ≈ {res['event_kib']:.0f} KiB; "
        f"{res['events']:,} kept at the end); server RSS {res['rss_before_mib']:.0f} → {res['rss_after_mib']:.0f} MiB, "
        f"{res['rss_settled_mib']:.0f} MiB after {pick(1, 3, 5)} s quiet",
        target, res["peak_bytes"] <= 64 * 2**20 and res["received"] == refreshes)
    if res["received"] != refreshes:
        note(f"replay: the stream client received {res['received']} of {refreshes} refresh events")


# --- 11. POST /managed → session-created -------------------------------------------------------


def bench_managed(work: Path, quick: bool) -> None:
    starts = pick(2, 5, 10)
    target = "≤ 2 s (process start included)"
    figure = f"`POST /managed` → `session-created` at a `/stream` client, real CLI + fake API, {starts} starts"
    res = run_client(["bench.managed", "--starts", str(starts)], figure, target, 600)
    if res is None:
        return
    row(figure,
        f"p50 {ms(res['created_p50_ms'])} / p95 {ms(res['created_p95_ms'])} / max {ms(res['created_max_ms'])} "
        "(the row carries the id the CLI is started with, `--session-id`)",
        target, res["created_p95_ms"] <= 2000)
    row(f"`POST /managed` → the CLI's `system/init` shown at a `/stream` client (process started), {starts} starts",
        f"p50 {ms(res['init_p50_ms'])} / p95 {ms(res['init_p95_ms'])} / max {ms(res['init_max_ms'])}; the same CLI "
        f"spawned directly, alternating: p50 {ms(res['direct_p50_ms'])} / p95 {ms(res['direct_p95_ms'])}; sessionwatch's "
        f"own share (POST → spawn, init read → event): p50 {ms(res['own_p50_ms'])} / p95 {ms(res['own_p95_ms'])}",
        target, res["init_p95_ms"] <= 2000)


# --- 12. replicas on PostgreSQL ------------------------------------------------------------------


def bench_replicas(work: Path, quick: bool) -> None:
    sessions, writes, clients = pick((30, 150, 6), (200, 1500, 30), (300, 3000, 90))
    figure = f"events through three replicas on PostgreSQL ({writes:,} `PUT /sessions/{{id}}/status`, a third to each; {clients} stream clients)"
    target = "— (no target; report)"
    res = run_client(["bench.replicas", "--sessions", str(sessions), "--writes", str(writes), "--clients", str(clients)],
                     figure, target, 900)
    if res is None:
        return
    t, r = res["throughput"], res["resume"]
    row(figure,
        f"{t['writes_per_s']:,.0f} events/s as written (p50 {ms(t['p50_ms'])} p99 {ms(t['p99_ms'])}, {t['errors']} errors); "
        f"{t['end_to_end_per_s']:,.0f} events/s until the last reached all {clients} clients on all three; "
        f"the three replicas' CPU {t['replicas_cpu_ms']:.2f} ms per event together",
        target, None)
    row(f"a replica killed (SIGKILL) mid-stream: its {r['moved_clients']} clients resume on another with Last-Event-ID",
        f"first resumed event p50 {ms(r['resume_p50_ms'] or float('nan'))} p99 {ms(r['resume_p99_ms'] or float('nan'))} "
        f"after the break; over all {clients} clients {r['lost']} events lost, {r['repeated']} repeated, "
        f"{r['fresh_inits']} fresh inits ({r['writes_during']:,} writes meanwhile, {r['write_errors']} errors)",
        "0 events lost or repeated",
        r["lost"] == 0 and r["repeated"] == 0 and r["fresh_inits"] == 0 and r["moved_clients"] > 0)
    x = res["relay"]
    row(f"an action relayed to the replica that holds its target ({x['n']} `POST /runs` reports of one run to its replica, {x['n']} to another)",
        f"to its replica p50 {ms(x['owner_50_ms'])} p95 {ms(x['owner_95_ms'])}; "
        f"through another (relayed there and back) p50 {ms(x['relayed_50_ms'])} p95 {ms(x['relayed_95_ms'])}",
        "— (no target; report)", None)


# --- 13. agents: another machine's sessions ------------------------------------------------------


def bench_agents(work: Path, quick: bool) -> None:
    appends, sessions = pick((3, 20), (20, 300), (50, 2000))
    target = "— (no target; report)"
    # one server, then the same agent pushing through nginx to three replicas on PostgreSQL (its batches on each in turn)
    for flags, append_label, hook_label, queue_label, back in (
        ([], f"line appended on an agent's machine → central `/stream` client (`sessionwatch agent` → `POST /agents/push`), {appends} appends",
         f"hook event posted to an agent's receiver → central `/stream` client, {appends} events",
         f"{sessions:,} sessions queued by an agent while the server was down → all on `/all`", "the server"),
        (["--replicas"], f"agents through three replicas on PostgreSQL behind nginx (round robin): line appended → `/stream` client on one replica, {appends} appends",
         f"agents through three replicas: hook event posted to the agent → `/stream` client on one replica, {appends} events",
         f"agents through three replicas: {sessions:,} sessions queued while nginx was down → all on `/all`", "nginx"),
    ):  # fmt: skip
        res = run_client(["bench.agents", "--json", *flags, "--appends", str(appends), "--sessions", str(sessions)], append_label, target, 900)
        if res is None:
            return
        row(append_label, f"p50 {ms(res['p50_ms'])} / p90 {ms(res['p90_ms'])} / max {ms(res['max_ms'])}", target, None)
        row(hook_label, f"p50 {ms(res['hook_p50_ms'])} / p90 {ms(res['hook_p90_ms'])} / max {ms(res['hook_max_ms'])}", target, None)
        row(queue_label, f"{res['catch_up_s']:.1f} s after {back} started", target, None)


BENCHES: dict[str, Callable[[Path, bool], None]] = {
    "latency": bench_latency,
    "memory": bench_memory,
    "memory-reference": bench_memory_reference,
    "cold": bench_cold,
    "incremental": bench_incremental,
    "warm": bench_warm,
    "fanout": bench_fanout,
    "tracker": bench_tracker,
    "registrations": bench_registrations,
    "hooks": bench_hooks,
    "replay": bench_replay,
    "managed": bench_managed,
    "replicas": bench_replicas,
    "agents": bench_agents,
}


# --- output ---------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return {"nproc": str(os.cpu_count()), "RAM": mem, "CPU": cpu,
            "Python": platform.python_version(), "OS": platform.platform()}


def table(rows: list[Row] | None = None) -> str:
    lines = ["| figure | measured | target | met? |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in (ROWS if rows is None else rows)]
    return "\n".join(lines)


RESULTS = REPO / "docs" / "benchmarks.json"


def write_doc(args: argparse.Namespace, cmd: str, wall: float) -> None:
    """Record this run's benchmarks in docs/benchmarks.json and rebuild docs/benchmarks.md."""
    stored: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs: dict[str, Any] = stored.setdefault("benchmarks", {})
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    m = machine()
    for name, got in BY_BENCH.items():
        runs[name] = {"command": cmd, "mode": MODE, "date": date, "wall_s": round(wall), "machine": m,
                      "rows": [list(r) for r in got["rows"]], "notes": got["notes"]}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(stored, indent=1, ensure_ascii=False) + "\n")
    order = [n for n in BENCHES if n in runs] + [n for n in runs if n not in BENCHES]
    rows: list[Row] = [tuple(r) for n in order for r in runs[n]["rows"]]  # type: ignore[misc]
    notes = [f"{t} ({n})" for n in order for t in runs[n]["notes"]]
    by_cmd: dict[tuple[str, str], list[str]] = {}
    for n in order:
        by_cmd.setdefault((runs[n]["date"], runs[n]["command"]), []).append(n)
    text = ["# Benchmarks", "",
            "Generated by `bench/run` (`python -m bench`) from each benchmark's last run "
            "(`docs/benchmarks.json`; a run with `--only` replaces only its own rows); "
            "the analysis below the table comes from `bench/analysis.md`.", ""]
    text += [f"- {', '.join(names)}: `{c}` ({runs[names[0]]['mode']} pass), {d}" for (d, c), names in sorted(by_cmd.items())]
    newest = max(order, key=lambda n: runs[n]["date"]) if order else None
    shown = runs[newest]["machine"] if newest else m
    text += [*[f"- {k}: {v}" for k, v in shown.items()], "", "## Results", "", table(rows), ""]
    if notes:
        text += ["Notes from these runs:", ""] + [f"- {n}" for n in notes] + [""]
    analysis = REPO / "bench" / "analysis.md"
    if analysis.exists():
        text += [analysis.read_text().rstrip(), ""]
    out = REPO / "docs" / "benchmarks.md"
    out.write_text("\n".join(text))
    print(f"wrote {out} and {RESULTS}")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    size.add_argument("--smoke", action="store_true", help="the smallest sizes: checks the harness runs")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--only", action="append", choices=sorted(BENCHES), help="run only these")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--render", action="store_true",
                    help="run nothing: rebuild docs/benchmarks.md from docs/benchmarks.json and bench/analysis.md")
    args = ap.parse_args()
    if args.render:
        write_doc(args, "", 0.0)
        return 0
    global MODE, CURRENT
    MODE = "smoke" if args.smoke else "quick" if args.quick else "full"
    raise_nofile()
    random.seed(1)
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="sessionwatch-bench-"))
    # Every process started here runs as an installed package does, from
    # cached bytecode: an environment that forbids writing it
    # (PYTHONDONTWRITEBYTECODE) would time compiling our sources at every
    # start. The cache goes to the work directory, not into the checkout.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    failed = 0
    try:
        for name, fn in BENCHES.items():
            if args.only and name not in args.only:
                continue
            print(f"== {name}", flush=True)
            CURRENT = name
            t = time.monotonic()
            try:
                fn(work, args.quick)
            except Exception as exc:  # report and go on: one broken figure must not hide the rest
                failed += 1
                row(name, f"failed: {type(exc).__name__}: {str(exc)[:200]}", "—", False)
            print(f"   ({time.monotonic() - t:.1f} s)", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    wall = time.monotonic() - t0
    print()
    print(table())
    print(f"\n{wall:.0f} s wall")
    if not args.no_write:
        cmd = "bench/run" + ("" if MODE == "full" else f" --{MODE}") + "".join(f" --only {o}" for o in args.only or [])
        write_doc(args, cmd, wall)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
