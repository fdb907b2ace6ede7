"""sessionwatch benchmark harness: ``python -m bench [--quick] [--no-write] [--only NAME]``."""
