"""Production settings, read by fresh processes with production environment variables
(tests/security/production.py)."""
import json
import subprocess

import pytest

from tests.security.production import CHECK_DEPLOY, runs_at_once

pytestmark = pytest.mark.security

SETTINGS_PROBE = (
    "import json, django; django.setup(); from django.conf import settings; "
    "from django.contrib.auth.hashers import make_password; "
    "names = ['PASSWORD_HASHERS', 'CORS_ALLOW_ALL_ORIGINS', 'CORS_ORIGIN_ALLOW_ALL', 'CORS_ALLOW_CREDENTIALS', "
    "'CORS_ALLOWED_ORIGINS', 'CORS_ALLOWED_ORIGIN_REGEXES']; "
    "values = {n: getattr(settings, n, None) for n in names}; "
    "values['hashed'] = make_password('a-long-passphrase-42'); print(json.dumps(values))"
)
# `check --deploy` on clean production settings, and its failure on weak secrets, are
# identity/tests/test_checks.py's; this module adds what is not identity's: CORS and hashing.
RUNS = {
    "cors-star": (CHECK_DEPLOY, {"CORS_ALLOWED_ORIGINS": "*"}),
    "settings": (["-c", SETTINGS_PROBE], {}),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, subprocess.CompletedProcess]:
    return runs_at_once(RUNS, timeout=180)


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
