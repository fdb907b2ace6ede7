"""The web page's statuses and sources (``frontend/model.js``, the one place the
JavaScript spells them) against the Python side's.

model.js is read through node, as the page reads it: no parsing of JavaScript
here. The Python side is ``sessionwatch.model`` (its ``Status`` and ``Source``
literals), which is itself checked against the ``status`` and ``source``
lines of DESIGN.md's Session section.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from sessionwatch import model

from .conftest import FIXTURES

REPO = Path(__file__).resolve().parent.parent
MODEL_JS = REPO / "src" / "sessionwatch" / "frontend" / "model.js"
# DESIGN.md sits beside the fixtures (../shared/ next to the repository).
DESIGN = FIXTURES.parent.parent / "DESIGN.md"


def design_session_values(field: str) -> tuple[str, ...]:
    """The quoted values of ``field`` in DESIGN.md's Session (JSON) block:
    ``status "running" | "waiting" | …`` → ``("running", "waiting", …)``."""
    assert DESIGN.is_file(), f"DESIGN.md not found at {DESIGN}"
    text = DESIGN.read_text(encoding="utf-8")
    block = text[text.index("## Session (JSON)") :]
    block = block[block.index("```") + 3 :]
    block = block[: block.index("```")]
    line = next(line for line in block.splitlines() if line.startswith(f"{field} "))
    return tuple(re.findall(r'"([a-z_]+)"', line))


PYTHON_STATUSES = model.STATUSES
PYTHON_SOURCES = model.SOURCES


def js_model() -> dict[str, list[str]]:
    node = shutil.which("node")
    assert node, "node is needed (bash .ci/run installs it)"
    script = (
        f"const m = await import({json.dumps(MODEL_JS.as_uri())});"
        "console.log(JSON.stringify({statuses: m.STATUSES, labels: Object.keys(m.STATUS_LABELS),"
        " sources: m.SOURCES}));"
    )
    r = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    result: dict[str, list[str]] = json.loads(r.stdout)
    return result


def test_the_page_knows_exactly_the_python_statuses() -> None:
    page = js_model()
    assert len(page["statuses"]) == len(set(page["statuses"]))
    assert tuple(page["statuses"]) == PYTHON_STATUSES  # the same sort order too
    assert page["labels"] == page["statuses"]


def test_the_page_knows_exactly_the_python_sources() -> None:
    assert set(js_model()["sources"]) == set(PYTHON_SOURCES)


def test_the_python_model_is_the_design_contract() -> None:
    """model.py's statuses and sources are exactly DESIGN.md's Session lines."""
    assert set(model.STATUSES) == set(design_session_values("status"))
    assert set(model.SOURCES) == set(design_session_values("source"))
    assert set(model.CLAUDE_STATUSES) | set(model.PANEL_STATUSES) <= set(model.STATUSES)


def test_no_other_frontend_file_spells_the_status_list() -> None:
    """Statuses are listed once: no other module of the page holds a list or map of them."""
    frontend = MODEL_JS.parent
    listing = re.compile(r"""['"]running['"]\s*[,:]|\brunning\s*:""")
    for path in sorted(frontend.glob("*.js")):
        if path != MODEL_JS:
            assert not listing.search(path.read_text(encoding="utf-8")), f"{path.name} lists statuses"
    html = (frontend / "index.html").read_text(encoding="utf-8")
    assert 'value="running"' not in html, "index.html lists statuses"


def test_the_panel_dashboard_colours_every_status_in_the_model_order() -> None:
    from sessionwatch.integrations.panel.dashboard.rows import STATUS_COLOURS, STATUSES

    assert STATUSES == model.STATUSES
    assert tuple(STATUS_COLOURS) == model.STATUSES
