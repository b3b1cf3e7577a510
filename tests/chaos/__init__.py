"""Fault injection over the real processes: see tests/chaos/runner.py, and `python -m tests.chaos --help`."""
