"""Panel: the tracker apps embed and the Panel dashboard."""
