"""sessionwatch: every live Claude Code and Panel session, as it happens."""

from __future__ import annotations

__version__ = "0.1.0"
