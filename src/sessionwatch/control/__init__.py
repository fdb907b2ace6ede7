"""Acting on Claude Code sessions through their hooks: away mode and
approvals, spend caps (core.py, budgets.py), and their routes (api.py)."""

from sessionwatch.control.core import Control, NotPending, UnknownSession

__all__ = ["Control", "NotPending", "UnknownSession"]
