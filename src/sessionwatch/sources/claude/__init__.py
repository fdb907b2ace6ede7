"""Claude Code sessions from their transcripts: line decoding (`transcript`), the incremental index and the cold scan (`index`)."""
