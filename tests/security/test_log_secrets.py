"""Issue 11, finding 11: no secret in any log line, under gunicorn or runserver.

The attack: the image's gunicorn command (`--access-logfile -`, the default format) wrote
verification tokens in clear, from the request line and from the Referer (the frontend's
/verify/<token> page calls the API); the reset page's ?token= leaked the same way. Here the real
servers run with the Dockerfile's exact gunicorn command and with runserver, requests carry
secrets in every place a log could print them, and no line of their output may hold one.
`project.gunicorn.Logger` is also checked against a format that asks for every atom.
"""
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from tests.e2e.harness import free_port, wait_for

pytestmark = [pytest.mark.security, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t" + uuid.uuid4().hex  # one marker for every secret the requests carry


def dockerfile_command() -> list[str]:
    text = (REPO / "Dockerfile").read_text()
    [raw] = re.findall(r"^CMD (\[.*?\])\s*$", text.replace("\\\n", " "), flags=re.MULTILINE | re.DOTALL)
    return json.loads(raw)


def requests_with_secrets(base: str) -> None:
    frontend = "http://localhost:3000"
    calls = [
        ("GET", f"/api/verify/{SECRET}:abc:def/", {"Referer": f"{frontend}/verify/{SECRET}:abc:def"}),
        ("GET", f"/api/verify/{SECRET}", {}),  # no slash: a redirect, logged too
        ("GET", f"/API/VERIFY/{SECRET}/", {}),  # 404
        ("POST", "/api/password/reset/confirm/", {"Referer": f"{frontend}/reset-password?token={SECRET}"}),
        ("GET", f"/api/me/?token={SECRET}", {"Authorization": f"Token {SECRET}"}),
        ("GET", "/api/me/", {"X-Auth-Token": SECRET, "Cookie": f"sessionid={SECRET}"}),
        ("POST", "/api/internal/validate-token/", {"X-Service-Token": SECRET}),
    ]
    for method, path, headers in calls:
        body = json.dumps({"token": f"{SECRET}.x", "new_password": "a-long-passphrase-42"})
        requests.request(method, base + path, headers={"Content-Type": "application/json", **headers},
                         data=body, timeout=30, allow_redirects=False)


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> dict[str, str]:
    workdir = tmp_path_factory.mktemp("logs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_", "GUNICORN_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="logs-" + uuid.uuid4().hex * 2,
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        AMQP_URL="",
        AGENT_SERVICE_TOKEN="logs-service-token-" + uuid.uuid4().hex,
        LOG_LEVEL="DEBUG",
        PYTHONUNBUFFERED="1",
        WEB_CONCURRENCY="1",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=300)
    return env


def run_server(args: list[str], env: dict[str, str], port: int, log: Path) -> str:
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: requests.get(f"{base}/api/schema/", timeout=2).status_code, timeout=60,
                     what=f"{args[:3]} to answer")
            requests_with_secrets(base)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return log.read_text(errors="replace")


def test_gunicorn_with_the_image_command_logs_no_secret(environment, tmp_path) -> None:
    command = dockerfile_command()
    assert command[0] == "gunicorn" and "--access-logfile" in command
    port = free_port()
    command = [sys.executable, "-m", *command]
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    output = run_server(command, environment, port, tmp_path / "gunicorn.log")
    assert re.search(r'"GET /api/verify/<redacted>/ HTTP/1\.1" 400', output), output[-3000:]  # the access log ran
    assert SECRET not in output, [line for line in output.splitlines() if SECRET in line]


def test_runserver_logs_no_secret(environment, tmp_path) -> None:
    port = free_port()
    env = {**environment, "DJANGO_DEBUG": "1"}
    output = run_server([sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], env, port,
                        tmp_path / "runserver.log")
    assert "/api/verify/<redacted>/" in output, output[-3000:]
    assert SECRET not in output, [line for line in output.splitlines() if SECRET in line]


def test_the_gunicorn_logger_redacts_every_atom(capsys) -> None:
    """Whatever access_log_format an operator sets, the line holds no secret."""
    from gunicorn.config import Config

    from project.gunicorn import Logger

    config = Config()
    config.set("accesslog", "-")
    atoms = ["h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "b", "f", "a", "T", "D", "L", "p",
             "{authorization}i", "{x-auth-token}i", "{x-service-token}i", "{cookie}i", "{referer}i",
             "{http_authorization}e", "{http_x_auth_token}e", "{raw_uri}e", "{path_info}e", "{query_string}e"]
    config.set("access_log_format", " ".join(f"%({atom})s" for atom in atoms))
    logger = Logger(config)
    environ = {
        "REQUEST_METHOD": "GET", "RAW_URI": f"/api/verify/{SECRET}/?token={SECRET}", "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": f"/api/verify/{SECRET}/", "QUERY_STRING": f"token={SECRET}", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": f"http://localhost:3000/verify/{SECRET}", "HTTP_AUTHORIZATION": f"Basic {SECRET}",
        "HTTP_X_AUTH_TOKEN": SECRET,
    }
    headers = [("AUTHORIZATION", f"Basic {SECRET}"), ("X-AUTH-TOKEN", SECRET), ("X-SERVICE-TOKEN", SECRET),
               ("COOKIE", f"sessionid={SECRET}"), ("REFERER", environ["HTTP_REFERER"])]
    request = SimpleNamespace(headers=headers)
    response = SimpleNamespace(status="400 Bad Request", sent=10, headers=[])
    logger.access(response, request, environ, timedelta(milliseconds=3))
    logger.error("Error handling request %s", environ["RAW_URI"])
    output = capsys.readouterr()
    text = output.out + output.err
    assert "/api/verify/<redacted>/" in text, text
    assert SECRET not in text, text
