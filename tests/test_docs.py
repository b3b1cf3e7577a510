"""The docs that are generated from the code, or must agree with it."""
import importlib.util
import re
from pathlib import Path

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


DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_readme_and_docs_never_refer_outside_the_repository() -> None:
    """A clone has no ../shared (the design notes live beside the repository, not in it)."""
    for doc in DOCS:
        text = doc.read_text()
        for needle in ("../shared", "/work/", "DESIGN.md"):
            assert needle not in text, f"{doc.name} refers to {needle!r}, which a clone does not have"


def test_the_api_guide_lists_every_throttle_scope_with_its_default() -> None:
    from django.conf import settings

    guide = (REPO / "docs" / "api.md").read_text()
    rows = [line for line in guide.splitlines() if line.startswith("| `")]
    for scope, rate in settings.DEFAULT_THROTTLE_RATES.items():
        assert any(f"`{scope}`" in row and f"`{rate}`" in row for row in rows), f"docs/api.md: {scope} = {rate}"
    env_example = (REPO / ".env.example").read_text()
    example = re.search(r"^# THROTTLE_RATES=(\S+)$", env_example, re.M)
    assert example and dict(item.split("=") for item in example[1].split(",")) == settings.DEFAULT_THROTTLE_RATES


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def test_the_api_guide_lists_every_error_code_raised_by_the_domain() -> None:
    import identity.services  # noqa: F401 - its ApplicationError subclasses
    from project.errors import ApplicationError

    guide = (REPO / "docs" / "api.md").read_text()
    codes = {cls.code for cls in _subclasses(ApplicationError) if "tests" not in cls.__module__.split(".")}
    codes -= {"invalid_preferences"}  # always raised per field: its per-field codes are listed
    assert codes, "no ApplicationError subclasses found"
    missing = sorted(code for code in codes if f"`{code}`" not in guide)
    assert not missing, f"docs/api.md does not list {missing}"


def test_the_log_table_names_the_loggers_the_code_uses() -> None:
    """Operators filter on these names: each row is a module whose `logger` has that name."""
    import importlib

    runbook = (REPO / "docs" / "operations.md").read_text()
    table = runbook.split("| logger | one line per | fields |", 1)[1].split("\n\n", 1)[0]
    named = re.findall(r"^\| `([a-z_.]+)` \|", table, re.M)
    assert len(named) >= 4, "docs/operations.md lost its table of loggers?"
    for name in named:
        assert importlib.import_module(name).logger.name == name, f"docs/operations.md names logger {name}"
