"""The web page's managed-session logic (``frontend/managed.js``), read through
node as tests/test_frontend_model.py reads model.js: its words for log kinds,
live states, permission modes and controls against the server's, and its
pure functions' cases (tests/js/managed.test.mjs, run by node's test runner).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, get_args

from sessionwatch import model
from sessionwatch.managed import api, manager, protocol

REPO = Path(__file__).resolve().parent.parent
MANAGED_JS = REPO / "src" / "sessionwatch" / "frontend" / "managed.js"
CASES = REPO / "tests" / "js" / "managed.test.mjs"


def node() -> str:
    found = shutil.which("node")
    assert found, "node is needed (bash .ci/run installs it)"
    return found


def js_managed() -> dict[str, Any]:
    script = (
        f"const m = await import({json.dumps(MANAGED_JS.as_uri())});"
        "console.log(JSON.stringify({kinds: m.LOG_KINDS, live: m.LIVE_STATES, modes: m.PERMISSION_MODES,"
        " actions: m.ACTIONS.map((a) => a.control)}));"
    )
    r = subprocess.run([node(), "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def test_the_page_knows_the_servers_log_kinds_live_states_modes_and_controls() -> None:
    page = js_managed()
    assert tuple(page["kinds"]) == api.KINDS
    assert set(page["live"]) == set(manager.LIVE)
    assert set(page["live"]) <= set(model.MANAGED_STATES)
    assert tuple(page["modes"]) == protocol.PERMISSION_MODES
    # the buttons are controls the server may offer (send and approve have their own places)
    assert set(page["actions"]) | {"send", "approve"} <= set(get_args(model.Control))


def test_the_pure_cases_pass_in_node() -> None:
    r = subprocess.run([node(), "--test", str(CASES)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout
