from __future__ import annotations

from sessionwatch.cli import main

if __name__ == "__main__":  # guarded: worker processes of a parallel scan import this module
    raise SystemExit(main())
