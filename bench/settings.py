"""Bench-only settings: the production settings plus the `bench` app and URLconf, and DRF's
`rest_framework.authtoken` for the idiomatic peer (bench/views.py `PeerAllergyProfileView`).

`bench.urls` adds a bare DRF endpoint (the ceiling) and the seed-000 synchronous design
next to the real API, so both run under the very same server, middleware and database.
Never used outside `python -m bench`.
"""
import os

from project.settings import *  # noqa: F403
from project.settings import DATABASES, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework.authtoken", "bench"]
ROOT_URLCONF = "bench.urls"

# Diagnostic switches for profiling runs (the report's main figures use the production values).
if os.environ.get("BENCH_CONN_HEALTH_CHECKS") == "0" and "CONN_HEALTH_CHECKS" in DATABASES["default"]:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
