"""The consumer tests' in-process Agent double, shared with the verification tests."""
from consumers.tests.conftest import agent, devagent, devagent_server  # noqa: F401
