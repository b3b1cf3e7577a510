import os
import secrets
import subprocess
import sys
from pathlib import Path

from identity.checks import check_production_secrets

REPO = Path(__file__).resolve().parents[2]


def ids(messages) -> set[str]:
    return {m.id for m in messages}


def test_short_service_token_outside_debug_is_an_error(settings) -> None:
    settings.DEBUG = False
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    settings.AGENT_SERVICE_TOKEN = "x" * 31
    assert ids(check_production_secrets()) == {"identity.E001"}
    settings.AGENT_SERVICE_TOKEN = secrets.token_urlsafe(24)
    assert check_production_secrets() == []


def test_dev_secret_key_outside_debug_is_an_error(settings) -> None:
    settings.DEBUG = False
    settings.SECRET_KEY = settings.DEV_SECRET_KEY
    settings.AGENT_SERVICE_TOKEN = secrets.token_urlsafe(30)
    assert ids(check_production_secrets()) == {"identity.E002"}


def test_debug_allows_the_dev_values(settings) -> None:
    settings.DEBUG = True
    settings.SECRET_KEY = settings.DEV_SECRET_KEY
    settings.AGENT_SERVICE_TOKEN = ""
    assert check_production_secrets() == []


def _manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_", "AGENT_"))}
    base.pop("DATABASE_URL", None)
    base.pop("AMQP_URL", None)  # the loopback broker's guest password is a deploy warning
    full_env = base | {"DATABASE_URL": f"sqlite:///{tmp_path / 'check.sqlite3'}"} | env
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=120
    )


PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "project.settings",
    "DJANGO_DEBUG": "0",
    "DJANGO_ALLOWED_HOSTS": "api.kairos.example",
}


def test_check_deploy_is_clean_with_production_settings(tmp_path) -> None:
    secrets_env = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(64), "AGENT_SERVICE_TOKEN": secrets.token_urlsafe(48)}
    env = PRODUCTION | secrets_env
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_fails_with_dev_secrets_outside_debug(tmp_path) -> None:
    env = PRODUCTION | {"DJANGO_SECRET_KEY": "django-insecure-dev-only-key-never-use-in-production",
                        "AGENT_SERVICE_TOKEN": "short"}
    result = _manage("check", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "identity.E001" in result.stderr and "identity.E002" in result.stderr


def test_missing_secret_key_outside_debug_refuses_to_start(tmp_path) -> None:
    result = _manage("check", env=PRODUCTION, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr
