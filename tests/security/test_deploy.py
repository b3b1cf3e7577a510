"""Production settings, read by fresh processes with production environment variables (the test
settings swap in a fast hasher and debug, so they prove nothing about production)."""
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.security

REPO = Path(__file__).resolve().parents[2]


def production_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_", "AGENT_", "CORS_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="api.kairos.example",
        AGENT_SERVICE_TOKEN=secrets.token_urlsafe(48),
    )
    env.update(overrides)
    return env


CHECK_DEPLOY = ["manage.py", "check", "--deploy", "--fail-level", "WARNING"]
SETTINGS_PROBE = (
    "import json, django; django.setup(); from django.conf import settings; "
    "from django.contrib.auth.hashers import make_password; "
    "names = ['PASSWORD_HASHERS', 'CORS_ALLOW_ALL_ORIGINS', 'CORS_ORIGIN_ALLOW_ALL', 'CORS_ALLOW_CREDENTIALS', "
    "'CORS_ALLOWED_ORIGINS', 'CORS_ALLOWED_ORIGIN_REGEXES']; "
    "values = {n: getattr(settings, n, None) for n in names}; "
    "values['hashed'] = make_password('a-long-passphrase-42'); print(json.dumps(values))"
)
# Each run is a fresh interpreter importing Django (seconds on a busy CI box): start them all
# at once and let each test wait for its own.
# `check --deploy` on clean production settings, and its failure on weak secrets, are
# identity/tests/test_checks.py's; this module adds what is not identity's: CORS and hashing.
RUNS = {
    "cors-star": (CHECK_DEPLOY, {"CORS_ALLOWED_ORIGINS": "*"}),
    "settings": (["-c", SETTINGS_PROBE], {}),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, subprocess.CompletedProcess]:
    processes = {
        name: subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env=production_env(**overrides),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, overrides) in RUNS.items()
    }
    results = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=180)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


@pytest.fixture(scope="module")
def production_settings(runs) -> dict:
    result = runs["settings"]
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_star_cors_origin_fails_the_deploy_check(runs) -> None:
    """`*` is never an allowed origin: the settings refuse it (corsheaders' own check)."""
    result = runs["cors-star"]
    assert result.returncode != 0, result.stdout + result.stderr
    assert "CORS" in result.stdout + result.stderr, result.stdout + result.stderr


def test_passwords_are_hashed_with_argon2_in_production(production_settings) -> None:
    assert production_settings["PASSWORD_HASHERS"][0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    assert production_settings["hashed"].startswith("argon2$")


def test_cors_never_allows_any_origin_with_credentials(production_settings) -> None:
    values = production_settings
    assert not values["CORS_ALLOW_ALL_ORIGINS"] and not values["CORS_ORIGIN_ALLOW_ALL"], values
    assert "*" not in (values["CORS_ALLOWED_ORIGINS"] or []), values
    assert not any(r in (".*", "^.*$", ".+", "^.+$") for r in values["CORS_ALLOWED_ORIGIN_REGEXES"] or []), values


@pytest.mark.django_db
@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost:3000.evil.example"])
def test_cors_answers_no_foreign_origin(client, origin) -> None:
    response = client.options(
        "/api/login/", HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert "access-control-allow-origin" not in {k.lower() for k in response.headers}, dict(response.headers)


@pytest.mark.django_db
def test_cors_echoes_an_allowed_origin_never_a_star(client, settings) -> None:
    origin = settings.CORS_ALLOWED_ORIGINS[0]
    response = client.options("/api/login/", HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert response.headers.get("Access-Control-Allow-Origin") == origin
