"""No password, token or service token in a response body, a log line or the outbox.

Drives the whole account flow through the API, with every logger at DEBUG, and runs the
consumer over each resulting event against an in-process Agent double, so the consumer's logs
(and the emails' handling) are covered too. The login response may carry its own token: that is
its purpose. Emails carry their link token: that is theirs.
"""
import json
import logging
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.apps import apps
from django.core import mail
from django.test import Client

from agent_bridge.agent_client import AgentClient
from agent_bridge.devagent import DevAgentServer
from agent_bridge.models import OutboxEvent
from agent_bridge.timing import bus_timing
from agent_bridge.transports.embedded import EmbeddedTransport
from consumers.runners import Consumer

pytestmark = [pytest.mark.security, pytest.mark.django_db]


@pytest.fixture
def all_logs(caplog) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at DEBUG on every logger, non-propagating ones included."""
    caplog.set_level(logging.DEBUG)
    attached = []
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            caplog.set_level(logging.DEBUG, logger=name)
            if not logger.propagate:
                logger.addHandler(caplog.handler)
                attached.append(logger)
    yield caplog
    for logger in attached:
        logger.removeHandler(caplog.handler)


@pytest.fixture
def agent(settings) -> Iterator[DevAgentServer]:
    with DevAgentServer(token=settings.AGENT_SERVICE_TOKEN) as server:
        settings.AGENT_BASE_URL = server.base_url
        yield server


@dataclass
class Flow:
    """The API as a client sees it, remembering every answer and every secret it handled."""

    client: Client = field(default_factory=Client)
    responses: list[tuple[str, bytes]] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    login_tokens: set[str] = field(default_factory=set)

    def call(self, method: str, path: str, body: dict | None = None, *, token: str = "", expect: int = 200, **headers):
        if token:
            headers["HTTP_AUTHORIZATION"] = f"Token {token}"
        data = json.dumps(body).encode() if body is not None else b""
        response = self.client.generic(method, path, data=data, content_type="application/json", **headers)
        assert response.status_code == expect, (method, path, response.status_code, response.content[:300])
        self.responses.append((f"{method} {path}", response.content))
        return response.json() if response.content else None

    def login(self, email: str, password: str) -> str:
        token = self.call("POST", "/api/login/", {"email": email, "password": password})["token"]
        self.login_tokens.add(token)
        self.secrets[f"login token {len(self.login_tokens)}"] = token
        return token


def drain_outbox(agent: DevAgentServer) -> None:
    """What the consumer daemon would do: handle every pending event, in order."""
    transport = EmbeddedTransport(stop=threading.Event(), timing=bus_timing())
    consumer = Consumer(transport=transport, stop=transport.stop, agent=AgentClient.from_settings())
    for _ in range(10):
        if not OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).exists():
            return
        while (delivery := transport.claim()) is not None:
            outcome = consumer.handle(delivery)
            assert outcome.done, (delivery.envelope["type"], outcome)
    raise AssertionError("the outbox did not drain")


def link_token(pattern: str) -> str:
    for message in reversed(mail.outbox):
        match = re.search(pattern, message.body)
        if match:
            return match.group(1)
    raise AssertionError(f"no email matching {pattern}: {[m.body for m in mail.outbox]}")


def record_texts(record: logging.LogRecord) -> Iterator[str]:
    """Everything a formatter or a JSON log shipper could print: message, args, extras, exception."""
    yield record.getMessage()
    yield repr(record.args)
    for key, value in vars(record).items():
        if key not in ("msg", "args", "message"):
            yield f"{key}={value!r}"
    if record.exc_info:
        yield logging.Formatter().formatException(record.exc_info)
    if record.stack_info:
        yield record.stack_info


def test_secrets_stay_out_of_responses_logs_and_the_outbox(all_logs, agent, settings) -> None:
    flow = Flow()
    email = f"leak-{uuid.uuid4().hex[:8]}@example.com"
    passwords = [f"first-pass-{uuid.uuid4().hex}", f"second-pass-{uuid.uuid4().hex}", f"third-pass-{uuid.uuid4().hex}"]
    flow.secrets |= {f"password {i}": p for i, p in enumerate(passwords, 1)}
    flow.secrets["service token"] = settings.AGENT_SERVICE_TOKEN

    flow.call("POST", "/api/signup/", {"username": "leaky", "email": email, "password": passwords[0]}, expect=201)
    drain_outbox(agent)
    verify_token = link_token(r"/verify/([^\s/]+)")
    flow.secrets["verification token"] = verify_token
    flow.call("GET", f"/api/verify/{verify_token}/")

    token = flow.login(email, passwords[0])
    uid = flow.call("GET", "/api/me/", token=token)["uid"]
    flow.call("PATCH", "/api/me/", {"username": "leaky2"}, token=token)
    allergies = {"confirmed": ["peanuts"], "intolerances": ["lactose"],
                 "severity": {"peanuts": "anaphylactic", "lactose": "intolerance"}}
    flow.call("PUT", "/api/allergies/", allergies, token=token)
    flow.call("GET", "/api/allergies/", token=token)
    flow.call("PATCH", "/api/preferences/", {"preferences": {"vibes": ["cozy"]}}, token=token)
    flow.call("GET", "/api/preferences/", token=token)
    flow.call("GET", "/api/interactions/", token=token)
    drain_outbox(agent)

    answer = flow.call("POST", "/api/internal/validate-token/", {"token": token},
                       HTTP_X_SERVICE_TOKEN=settings.AGENT_SERVICE_TOKEN)
    assert answer["valid"] is True and answer["uid"] == uid

    flow.call("POST", "/api/password/change/",
              {"current_password": passwords[0], "new_password": passwords[1]}, token=token)
    flow.call("POST", "/api/password/reset/", {"email": email}, expect=202)
    drain_outbox(agent)
    reset_token = link_token(r"reset-password\?token=([^\s&]+)")
    flow.secrets["reset token"] = reset_token
    flow.call("POST", "/api/password/reset/confirm/", {"token": reset_token, "new_password": passwords[2]})
    flow.call("POST", "/api/login/", {"email": email, "password": passwords[0]}, expect=401)

    token2 = flow.login(email, passwords[2])
    flow.call("POST", "/api/logout/", token=token2)
    flow.call("GET", "/api/me/", token=token2, expect=401)
    drain_outbox(agent)
    assert agent.state.snapshot()["users"], "the consumer reached the Agent double"

    leaks = []
    # Responses: none carries a secret, but a login answer carries its own token.
    for what, content in flow.responses:
        text = content.decode()
        own = json.loads(text).get("token") if what == "POST /api/login/" and text else None
        for name, secret in flow.secrets.items():
            if secret in text and secret != own:
                leaks.append(f"response {what} contains the {name}")
    # Log records, however they would be formatted.
    for record in all_logs.records:
        for text in record_texts(record):
            for name, secret in flow.secrets.items():
                if secret in text:
                    leaks.append(f"log {record.name} {record.levelname} {record.getMessage()[:120]!r} has the {name}")
    # Emails: their own link token only, never a password, a login token or the service token.
    for message in mail.outbox:
        for name, secret in flow.secrets.items():
            if name.startswith(("password", "login token", "service")) and secret in message.body + message.subject:
                leaks.append(f"email {message.subject!r} contains the {name}")
    # The outbox and the dead letters: no secret, and no email address either.
    for row in OutboxEvent.objects.all():
        text = json.dumps(row.envelope)
        for name, secret in {**flow.secrets, "email address": email}.items():
            if secret in text:
                leaks.append(f"outbox event {row.type} contains the {name}")
    assert len(all_logs.records) > 20, "the flow logged (a vacuous pass otherwise)"
    assert not leaks, "\n".join(sorted(set(leaks)))


def test_the_database_never_holds_a_raw_token_or_password(account) -> None:
    from identity.models import AuthToken
    from identity.tokens import auth_token_hash

    assert AuthToken.objects.filter(key_hash=auth_token_hash(account.token)).exists()
    for model in apps.get_models():
        for row in model.objects.all().values_list():
            text = repr(row)
            assert account.token not in text, f"{model._meta.label} holds a raw token"
            assert account.password not in text, f"{model._meta.label} holds a raw password"
