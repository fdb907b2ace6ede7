"""Claude Code hook events: decoding them and folding them into a session's live state."""
