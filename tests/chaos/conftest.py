"""Show every chaos run's figures at the end of the session, passed or failed, so CI logs carry
the trials, faults by kind, events, lost, stale and drain time of each run."""
import pytest

_SUMMARIES: list[str] = []


@pytest.fixture
def chaos_summaries() -> list[str]:
    return _SUMMARIES


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for summary in _SUMMARIES:
        terminalreporter.write_sep("=", "chaos")
        terminalreporter.write_line(summary)
