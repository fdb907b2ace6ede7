"""What sessionwatch offers other tools."""
