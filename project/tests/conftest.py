"""Fixtures for the project-level tests (logging, middleware)."""
import io
import logging
from collections.abc import Iterator

import pytest

from agent_bridge.tests.conftest import scripted  # noqa: F401 - the Agent stand-in of test_logging
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
