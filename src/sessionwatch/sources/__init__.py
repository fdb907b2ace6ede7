"""Where facts about sessions come from: Claude Code transcripts, Panel trackers, the files watched."""
