"""The tracker Panel apps embed: ``from sessionwatch.tracker import SessionTracker``.

This is the public, stable import path; the code lives in
:mod:`sessionwatch.integrations.panel.tracker`, whose ``__all__`` (the
tracker and its constants) is this module's.
"""

from sessionwatch.integrations.panel import tracker as _tracker
from sessionwatch.integrations.panel.tracker import *  # noqa: F403

__all__ = _tracker.__all__
