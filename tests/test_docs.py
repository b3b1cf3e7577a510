"""The docs that are generated from the code, or must agree with it."""
import importlib.util
import re
from pathlib import Path

from agent_bridge.events import EVENT_TYPES
from consumers.handlers import HANDLERS

REPO = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_event_docs", REPO / "scripts" / "gen_event_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_events_md_is_up_to_date_with_the_code() -> None:
    generated = _generator().generate()
    current = (REPO / "docs" / "events.md").read_text()
    assert current == generated, "docs/events.md is stale: run `python scripts/gen_event_docs.py` and commit it"


def test_every_event_type_has_a_consumer_handler() -> None:
    assert set(EVENT_TYPES) - set(HANDLERS) == set()
    assert set(HANDLERS) - set(EVENT_TYPES) == set(), "a handler for a type that is not in EVENT_TYPES"


def test_every_declared_example_is_a_valid_payload_of_its_type() -> None:
    from agent_bridge import events

    for event_type, payload in events.PAYLOADS.items():
        assert events.payload_check(event_type, dict(payload.EXAMPLE)).as_data() == payload.EXAMPLE


def test_the_runbook_names_only_commands_that_exist() -> None:
    from django.core.management import get_commands

    runbook = (REPO / "docs" / "operations.md").read_text()
    named = set(re.findall(r"manage\.py ([a-z_]+)", runbook))
    assert named, "the runbook names no commands?"
    missing = named - set(get_commands())
    assert not missing, f"docs/operations.md names commands that do not exist: {sorted(missing)}"
