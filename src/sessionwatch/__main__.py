from __future__ import annotations

from sessionwatch.cli import main

raise SystemExit(main())
