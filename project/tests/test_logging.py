import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from agent_bridge import events
from agent_bridge.agent_client import AgentClient
from agent_bridge.delivery import Status
from consumers import processing
from identity.models import User
from project.logging import JsonFormatter, RequestIdFilter, TextFormatter

REPO = Path(__file__).resolve().parents[2]


def test_the_console_handler_stamps_request_ids_and_uses_the_configured_format() -> None:
    console = next(h for h in logging.getLogger().handlers if h.name == "console")
    assert any(isinstance(f, RequestIdFilter) for f in console.filters)
    expected = JsonFormatter if settings.LOG_FORMAT == "json" else TextFormatter
    assert isinstance(console.formatter, expected)


def _log_from_a_process(log_format: str) -> str:
    """What a management command (consume, relay, ...) writes for one bus line."""
    code = (
        "from consumers.processing import logger; logger.info("
        "'delivery event_id=e-1', extra={'event_id': 'e-1', 'outcome': 'delivered'})"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "DJANGO_DEBUG": "1", "LOG_FORMAT": log_format}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )
    return result.stderr


def test_log_format_json_makes_every_process_write_one_json_object_per_line() -> None:
    lines = [json.loads(line) for line in _log_from_a_process("json").splitlines() if line.strip()]

    line = next(line for line in lines if line["logger"] == "consumers.processing")
    assert line["event_id"] == "e-1" and line["outcome"] == "delivered" and line["level"] == "INFO"
    assert {"ts", "message"} <= set(line)


def test_text_format_is_one_line_per_record() -> None:
    line = next(line for line in _log_from_a_process("text").splitlines() if "consumers.processing" in line)
    assert line.split()[2:5] == ["INFO", "consumers.processing", "delivery"]


@pytest.mark.django_db
def test_no_password_token_or_service_token_reaches_the_logs(api_client, json_log, caplog, scripted, settings) -> None:
    caplog.set_level(logging.DEBUG)
    password = "Sup3r-secret-passphrase-" + uuid.uuid4().hex[:8]
    email = "secret-test@example.com"

    assert api_client.post(
        "/api/signup/", {"username": "sec", "email": email, "password": password}, format="json"
    ).status_code == 201
    # A validation failure echoes the field names, never the value.
    api_client.post("/api/signup/", {"username": "sec", "email": "not-an-email", "password": password}, format="json")
    User.objects.filter(email=email).update(is_verified=True)
    login = api_client.post("/api/login/", {"email": email, "password": password}, format="json")
    assert login.status_code == 200, login.content
    token = login.json()["token"]
    api_client.post("/api/login/", {"email": email, "password": password + "-wrong"}, format="json")
    assert api_client.post("/api/logout/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    api_client.get("/api/health/", HTTP_X_AUTH_TOKEN=token)
    verify_token = "verify-" + uuid.uuid4().hex
    api_client.get(f"/api/verify/{verify_token}/")
    # (validate-token, password change/reset and account deletion are not built yet; when
    # they are, drive them here too.)

    # A consumer delivery the Agent refuses, echoing the service token in its error body.
    service_token = settings.AGENT_SERVICE_TOKEN
    user = User.objects.get(email=email)
    settings.AGENT_BASE_URL = scripted.base_url
    scripted.post(
        f"/users/{user.uid}",
        status=401,
        json={"detail": f"bad token {service_token}", "code": "INVALID_SERVICE_TOKEN"},
    )
    envelope = events.make_envelope(
        event_id=uuid.uuid4(), event_type=events.USER_REGISTERED, occurred_at=user.date_joined, uid=user.uid, data={}
    )
    outcome = processing.process_envelope(envelope, attempt=1, agent=AgentClient.from_settings())
    assert outcome.status is Status.DEAD

    text_log = "\n".join(TextFormatter().format(record) for record in caplog.records)
    logs = json_log.getvalue() + "\n" + text_log
    assert "INVALID_SERVICE_TOKEN" in logs and "/api/login/" in logs  # the logs did capture all that
    for secret in (password, token, service_token, verify_token):
        assert secret not in logs
