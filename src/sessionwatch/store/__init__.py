"""Persistence: the SQLite store (`sqlite`) and the schema shared with the tracker's direct mode (`schema`, no aiosqlite)."""
