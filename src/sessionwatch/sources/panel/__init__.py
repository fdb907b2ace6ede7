"""Panel sessions reported by trackers: the registry (`registry`)."""
