"""project/settings.py: what the environment turns into (loaded fresh in a subprocess)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def settings_of(**env: str) -> dict:
    code = (
        "import json, re; from project import settings as s; "
        "print(json.dumps({'origins': s.CORS_ALLOWED_ORIGINS, 'regexes': s.CORS_ALLOWED_ORIGIN_REGEXES, "
        "'expose': s.CORS_EXPOSE_HEADERS, 'append_slash': s.APPEND_SLASH}))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CORS_"))}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**clean, "DJANGO_SECRET_KEY": "x" * 50, **env},
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout)


def allowed(settings: dict, origin: str) -> bool:
    import re

    return origin in settings["origins"] or any(re.match(rx, origin) for rx in settings["regexes"])


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:3000", "http://localhost:5173"])
def test_debug_allows_the_usual_dev_origins(origin) -> None:
    assert allowed(settings_of(DJANGO_DEBUG="1"), origin)


@pytest.mark.parametrize("origin", ["http://127.0.0.1:5173", "http://evil.example", "http://localhost.evil.example"])
def test_production_allows_only_the_configured_origins(origin) -> None:
    production = settings_of(DJANGO_DEBUG="0", CORS_ALLOWED_ORIGINS="https://app.example")
    assert not allowed(production, origin)
    assert allowed(production, "https://app.example")
    assert not allowed(settings_of(DJANGO_DEBUG="1"), "http://localhost.evil.example")


def test_browser_code_can_read_the_request_id_and_retry_after(client, settings) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["http://localhost:3000"]
    response = client.get("/api/allergens/", HTTP_ORIGIN="http://localhost:3000")
    assert response["Access-Control-Allow-Origin"] == "http://localhost:3000"
    exposed = {h.strip().lower() for h in response["Access-Control-Expose-Headers"].split(",")}
    assert {"x-request-id", "retry-after"} <= exposed
    assert settings_of()["append_slash"] is False


def _prepare_threshold(**env: str) -> object:
    code = "import json; from project import settings as s; print(json.dumps(s.DATABASES['default']['OPTIONS']))"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
        env={**clean, "DJANGO_SECRET_KEY": "x" * 50, "DATABASE_URL": "postgres://k@127.0.0.1:1/k", **env},
    )
    return json.loads(out.stdout).get("prepare_threshold", "unset")


def test_hot_statements_are_prepared_after_five_runs_unless_turned_off() -> None:
    # Django's default (None) never prepares; a transaction-mode pooler may need "off".
    assert _prepare_threshold() == 5
    assert _prepare_threshold(DATABASE_PREPARE_THRESHOLD="2") == 2
    assert _prepare_threshold(DATABASE_PREPARE_THRESHOLD="off") is None
