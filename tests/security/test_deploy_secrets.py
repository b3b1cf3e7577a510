"""Issue 11, findings 15 and 19: production refuses placeholder and weak secrets; HSTS preload
is an explicit choice.

15: the `change-me-...` values of .env.example passed the system checks and `check --deploy`,
so a stack started from a copied .env ran with secrets anyone can read in the repository. Now
every manage.py command outside debug refuses them (and obviously weak values); `check --deploy`
also warns about weak service passwords. 19: HSTS `preload` was on by default, a commitment
that takes months to undo; it is now DJANGO_SECURE_HSTS_PRELOAD, off unless set.
Each case runs in a fresh process with production settings (tests/security/production.py).
"""
import json
import re
import secrets
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.security.production import CHECK_DEPLOY, REPO, runs_at_once

pytestmark = pytest.mark.security


def env_example() -> dict[str, str]:
    values = {}
    for line in (Path(REPO) / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            values[match[1]] = match[2]
    return values


EXAMPLE = env_example()
# Outside the repository: the HSTS probe's request opens the database file.
DB = f"sqlite:///{Path(tempfile.gettempdir()) / f'kairos-check-{uuid.uuid4().hex}.sqlite3'}"
PROBE = (
    "import json, django; django.setup(); from django.conf import settings; "
    "from django.test import Client; "
    "r = Client().get('/api/health/', secure=True, HTTP_HOST='api.kairos.example'); "
    "print(json.dumps({'preload': settings.SECURE_HSTS_PRELOAD, 'hsts': r.get('Strict-Transport-Security')}))"
)
RUNS = {
    # .env.example copied as is (the compose stack builds DATABASE_URL/AMQP_URL from its passwords).
    "env-example": (CHECK_DEPLOY, {
        "DJANGO_SECRET_KEY": EXAMPLE["DJANGO_SECRET_KEY"],
        "AGENT_SERVICE_TOKEN": EXAMPLE["AGENT_SERVICE_TOKEN"],
        "DATABASE_URL": EXAMPLE["DATABASE_URL"].replace("@127.0.0.1:5432/kairos", "@127.0.0.1:1/kairos"),
        "AMQP_URL": EXAMPLE["AMQP_URL"],
        "EMAIL_HOST_PASSWORD": EXAMPLE["EMAIL_HOST_PASSWORD"],
    }),
    "placeholder-variant": (["manage.py", "check"], {
        "DJANGO_SECRET_KEY": "CHANGE-ME-" + secrets.token_urlsafe(48), "DATABASE_URL": DB,
    }),
    "weak-key": (["manage.py", "check"], {"DJANGO_SECRET_KEY": "x" * 64, "DATABASE_URL": DB}),
    "weak-token": (["manage.py", "check"], {"AGENT_SERVICE_TOKEN": "ab" * 24, "DATABASE_URL": DB}),
    "weak-broker-password": (CHECK_DEPLOY, {"AMQP_URL": "amqp://guest:guest@rabbit:5672/%2F", "DATABASE_URL": DB}),
    "clean": (CHECK_DEPLOY, {"DATABASE_URL": DB, "AMQP_URL": "", "EMAIL_HOST_PASSWORD": secrets.token_urlsafe(24)}),
    "hsts-default": (["-c", PROBE], {"DATABASE_URL": DB}),
    "hsts-preload": (["-c", PROBE], {"DATABASE_URL": DB, "DJANGO_SECURE_HSTS_PRELOAD": "1"}),
    "preload-deploy": (CHECK_DEPLOY, {"DATABASE_URL": DB, "AMQP_URL": "", "DJANGO_SECURE_HSTS_PRELOAD": "1"}),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, subprocess.CompletedProcess]:
    return runs_at_once(RUNS, timeout=240)


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def test_the_env_example_secrets_are_refused(runs) -> None:
    result = runs["env-example"]
    assert result.returncode != 0, output(result)
    for check in ("identity.E003", "identity.E004", "identity.E005"):
        assert check in output(result), output(result)
    # Every password placeholder is named: the database's, the broker's, SMTP's.
    for name in ("DATABASE_URL", "AMQP_URL", "EMAIL_HOST_PASSWORD"):
        assert name in output(result), output(result)


@pytest.mark.parametrize(("run", "check"), [("placeholder-variant", "identity.E004"), ("weak-key", "identity.E004"),
                                            ("weak-token", "identity.E003")])
def test_placeholder_variants_and_weak_secrets_stop_every_command(runs, run, check) -> None:
    result = runs[run]
    assert result.returncode != 0 and check in output(result), output(result)


def test_a_weak_broker_password_fails_the_deploy_check(runs) -> None:
    result = runs["weak-broker-password"]
    assert result.returncode != 0 and "identity.W001" in output(result), output(result)


def test_real_secrets_pass(runs) -> None:
    result = runs["clean"]
    assert result.returncode == 0 and "no issues" in result.stdout, output(result)


def test_hsts_preload_is_off_unless_set(runs) -> None:
    default = json.loads(runs["hsts-default"].stdout.strip().splitlines()[-1])
    assert default["preload"] is False
    assert default["hsts"].startswith("max-age=") and "preload" not in default["hsts"], default
    chosen = json.loads(runs["hsts-preload"].stdout.strip().splitlines()[-1])
    assert chosen["preload"] is True and "preload" in chosen["hsts"], chosen
    result = runs["preload-deploy"]
    assert result.returncode == 0 and "no issues" in result.stdout, output(result)
