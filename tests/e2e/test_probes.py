"""The probes of a real API process (gunicorn, DEBUG=0) whose database is down: readiness fails,
liveness does not."""
import os
import subprocess
import sys

import pytest
import requests

from tests.e2e.harness import REPO, free_port, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def api_without_database(tmp_path):
    """gunicorn with DATABASE_URL naming a PostgreSQL server that is not there."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))},
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_SECRET_KEY": "e2e-probes-" + "k" * 40,
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": f"postgres://kairos:nopass@127.0.0.1:{free_port()}/kairos",
        "AMQP_URL": "",
        "AGENT_SERVICE_TOKEN": "e2e-service-token-" + "s" * 32,
    }
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:project.gunicorn_conf", "project.wsgi:application",
         "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/api/health/live/", timeout=2).ok, timeout=30, what="the API")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_readiness_fails_and_liveness_holds_while_the_database_is_down(api_without_database) -> None:
    live = requests.get(f"{api_without_database}/api/health/live/", timeout=10)
    assert (live.status_code, live.json()) == (200, {"status": "ok"})

    for path in ("/api/health/ready/", "/api/health/"):
        ready = requests.get(f"{api_without_database}{path}", timeout=10)
        assert ready.status_code == 503, ready.text
        assert ready.json()["database"] == "unreachable" and ready.json()["code"] == "database_unavailable"


def test_both_probes_pass_on_a_running_stack(stack) -> None:
    assert stack.api("GET", "/api/health/live/").json() == {"status": "ok"}
    ready = stack.api("GET", "/api/health/ready/")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
