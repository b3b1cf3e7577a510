"""Benchmarks of the API and the bus (issue 8): `python -m bench` writes docs/benchmarks.md.

Nothing here is imported by the service; `bench.settings` adds a bench-only URLconf (the bare
DRF ceiling and the seed-000 synchronous design) on top of `project.settings`.
"""
