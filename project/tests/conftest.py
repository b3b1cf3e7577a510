"""Fixtures for the project-level tests (logging, middleware)."""
import io
import logging
from collections.abc import Iterator

import pytest

from agent_bridge.tests.scripted_http import ScriptedServer
from project.logging import JsonFormatter, RequestIdFilter


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every log record of the test, at DEBUG, as the production JSON handler writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    """The scripted HTTP server on loopback that stands in for the Agent (agent_bridge.tests.scripted_http;
    the same fixture as agent_bridge/tests/conftest.py's)."""
    with ScriptedServer() as server:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        yield server
        server.verify()
