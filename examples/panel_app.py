"""A task runner that reports itself to sessionwatch.

    sessionwatch serve &
    panel serve examples/panel_app.py --port 5006

Each browser tab is one Panel session and one row on the dashboards. Run a
task and the row turns yellow (running) until it finishes; press Kill on the
dashboard and this tab is disconnected within two seconds.

Settings come from the environment: ``SESSIONWATCH_URL`` (default
``http://127.0.0.1:8765``), ``SESSIONWATCH_TOKEN``, ``SESSIONWATCH_APP_NAME``
(default ``task-runner``), ``SESSIONWATCH_HEARTBEAT_S`` and
``SESSIONWATCH_TRACKER_DB``: the server's ``--db`` file, to write it directly
instead of talking to the server.
"""

from __future__ import annotations

import os
import threading
import time

import panel as pn

from sessionwatch.tracker import DEFAULT_HEARTBEAT_INTERVAL, SessionTracker

pn.extension(notifications=True)
# What the tab shows when the session is killed from a dashboard (or the
# server goes away).
pn.config.disconnect_notification = "This session was ended. Reload the page to start a new one."

tracker = SessionTracker.get_tracker(
    app_name=os.environ.get("SESSIONWATCH_APP_NAME", "task-runner"),
    heartbeat_interval=float(os.environ.get("SESSIONWATCH_HEARTBEAT_S", DEFAULT_HEARTBEAT_INTERVAL)),
    db_path=os.environ.get("SESSIONWATCH_TRACKER_DB") or None,
)

task_name = pn.widgets.TextInput(label="Task name", value="Generating report")
duration = pn.widgets.FloatSlider(label="Duration (s)", start=0.5, end=30, step=0.5, value=3)
run = pn.widgets.Button(label="Run task", color="primary")
state = pn.pane.Markdown("**Idle**")
uptime = pn.indicators.Number(label="Session uptime (s)", value=0, format="{value}", font_size="24pt")
started = time.monotonic()


def work(name: str, seconds: float) -> None:
    # Runs in its own thread so the page stays responsive; the tracker call
    # only records the change and never waits for the network.
    with tracker.task(name):
        time.sleep(seconds)


def on_run(event: object) -> None:
    name = task_name.value.strip() or "Unnamed task"
    thread = threading.Thread(target=work, args=(name, duration.value), daemon=True)
    thread.start()


def tick() -> None:
    uptime.value = int(time.monotonic() - started)
    state.object = f"**Running:** {tracker.current_task}" if tracker.status == "running" else "**Idle**"


run.on_click(on_run)
pn.state.add_periodic_callback(tick, period=500)

pn.Column(
    "# Task runner",
    f"Session `{tracker.session_id}` reported to sessionwatch.",
    task_name,
    duration,
    run,
    state,
    uptime,
).servable(title="sessionwatch task runner")
