#!/usr/bin/env python3
"""Render docs/events.md, the event catalogue, from the code.

    python scripts/gen_event_docs.py            # rewrite docs/events.md
    python scripts/gen_event_docs.py --check    # exit 1 if docs/events.md is out of date

Sources: agent_bridge.events.EVENT_TYPES (types and meanings), the `outbox_event_add(...)`
calls in the apps (where each event is raised and the keys of its `data`, found by parsing
the source), consumers.handlers.HANDLERS and FAILURE_RECORDERS (what the consumer does), and
EXAMPLE_DATA below, whose keys tests/test_docs.py checks against the raising code.
"""
import argparse
import ast
import difflib
import inspect
import os
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "events.md"
APPS = ("identity", "allergies", "agent_bridge", "consumers")

# One realistic `data` per type, for the example envelopes (keys are checked against the code).
EXAMPLE_DATA: dict[str, dict] = {
    "user.registered": {},
    "email.requested": {"kind": "verify"},
    "allergies.replaced": {
        "revision": 7,
        "confirmed": ["peanuts"],
        "intolerances": ["milk"],
        "severity": {"peanuts": "anaphylactic", "milk": "intolerance"},
        "allergy_flags": ["milk", "peanuts"],
    },
    "preferences.updated": {"revision": 3, "delta": {"cuisine_affinity": {"thai": 0.8}}},
    "interactions.clear_requested": {},
    "interactions.refresh_requested": {},
    "user.deleted": {},
    "agent.read_back_due": {"chain": "9d4f6c2a-1b3e-4f5a-8c7d-6e5f4a3b2c1d", "step": 0, "repairs": 0},
    "agent.resync_requested": {"reason": "resync"},
}
EXAMPLE_ID = uuid.UUID("0b7e3f0e-6a8c-4d2e-9a57-2f7c1d0e5a11")
EXAMPLE_UID = uuid.UUID("5f0c6b8e-2d41-4c3a-8f7e-9b1a2c3d4e5f")
EXAMPLE_TIME = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


@dataclass
class RaiseSite:
    where: str  # module.function
    data: str  # the `data=` argument as written
    keys: set[str] | None  # its keys when it is a dict literal with constant keys
    signal: str = ""  # the domain signal, when `where` is a receiver
    senders: list[str] = field(default_factory=list)  # services that send that signal


@dataclass
class EventDoc:
    type: str
    meaning: str
    raised_by: list[RaiseSite] = field(default_factory=list)
    handler: str = ""
    handler_doc: str = ""
    failure_recorder: str = ""


def _setup_django() -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    import django

    django.setup()


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(module, function) for every function of the apps, tests and migrations excepted."""
    found = []
    for app in APPS:
        for path in sorted((REPO / app).rglob("*.py")):
            relative = path.relative_to(REPO)
            if "tests" in relative.parts or "migrations" in relative.parts:
                continue
            module = ".".join(relative.with_suffix("").parts)
            tree = ast.parse(path.read_text(), filename=str(path))
            kinds = ast.FunctionDef | ast.AsyncFunctionDef
            found += [(module, node) for node in ast.walk(tree) if isinstance(node, kinds)]
    return found


def raise_sites(event_constants: dict[str, str]) -> dict[str, list[RaiseSite]]:
    """event type → the functions whose `outbox_event_add(event_type=events.X, data=...)` raises it."""
    functions = _functions()
    senders: dict[str, list[str]] = {}  # signal name → functions that call `<...>.<signal>.send(...)`
    for module, function in functions:
        for call in ast.walk(function):
            if isinstance(call, ast.Call) and _name(call.func) == "send" and isinstance(call.func, ast.Attribute):
                signal = _name(call.func.value)
                if signal and f"{module}.{function.name}" not in senders.get(signal, []):
                    senders.setdefault(signal, []).append(f"{module}.{function.name}")
    found: dict[str, list[RaiseSite]] = {}
    for module, function in functions:
        signal = next(
            (_name(d.args[0]) for d in function.decorator_list
             if isinstance(d, ast.Call) and _name(d.func) == "receiver" and d.args),
            "",
        )
        for call in ast.walk(function):
            if not (isinstance(call, ast.Call) and _name(call.func) == "outbox_event_add"):
                continue
            keywords = {kw.arg: kw.value for kw in call.keywords}
            kind = keywords.get("event_type")
            if not isinstance(kind, ast.Attribute) or kind.attr not in event_constants:
                continue
            data = keywords.get("data")
            keys = None
            if isinstance(data, ast.Dict) and all(isinstance(k, ast.Constant) for k in data.keys):
                keys = {k.value for k in data.keys}
            site = RaiseSite(
                f"{module}.{function.name}", ast.unparse(data) if data else "{}", keys, signal, senders.get(signal, [])
            )
            found.setdefault(event_constants[kind.attr], []).append(site)
    return found


def _name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def _qualname(obj: object) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def collect() -> list[EventDoc]:
    _setup_django()
    from agent_bridge import events
    from consumers.handlers import FAILURE_RECORDERS, HANDLERS

    constants = {
        name: value
        for name, value in vars(events).items()
        if name.isupper() and isinstance(value, str) and value in events.EVENT_TYPES
    }
    sites = raise_sites(constants)
    docs = []
    for event_type, meaning in events.EVENT_TYPES.items():
        doc = EventDoc(event_type, meaning, sites.get(event_type, []))
        handler = HANDLERS.get(event_type)
        if handler is not None:
            doc.handler = _qualname(handler)
            doc.handler_doc = inspect.getdoc(handler) or ""
        recorder = FAILURE_RECORDERS.get(event_type)
        if recorder is not None:
            doc.failure_recorder = _qualname(recorder)
        docs.append(doc)
    return docs


def example_envelope(event_type: str) -> dict:
    from agent_bridge.events import make_envelope

    return make_envelope(
        event_id=EXAMPLE_ID,
        event_type=event_type,
        occurred_at=EXAMPLE_TIME,
        uid=EXAMPLE_UID,
        data=EXAMPLE_DATA.get(event_type, {}),
    )


def render(docs: list[EventDoc]) -> str:
    import json

    from agent_bridge.events import SCHEMA_VERSION

    out = [
        "# Event catalogue",
        "",
        "<!-- GENERATED by scripts/gen_event_docs.py from agent_bridge/events.py, the outbox_event_add",
        "     calls and consumers/handlers.py. Do not edit by hand: run `python scripts/gen_event_docs.py`.",
        "     tests/test_docs.py fails when this file and the code disagree. -->",
        "",
        "Every change the Agent must hear about is written to the outbox (`agent_bridge.models.OutboxEvent`)",
        "in the same transaction as the change, then delivered at least once by `manage.py consume`",
        "(see [architecture.md](architecture.md)). All events share one JSON envelope, schema version "
        f"{SCHEMA_VERSION}:",
        "",
        "| field | meaning |",
        "| --- | --- |",
        "| `id` | event id (UUID); the consumer's log lines and dead letters carry it as `event_id` |",
        "| `type` | one of the types below |",
        f"| `schema` | envelope version, now `{SCHEMA_VERSION}` |",
        "| `occurred_at` | when the change was committed (UTC, ISO 8601) |",
        "| `uid` | the user's stable uid (UUID) |",
        "| `data` | type-specific payload (below) |",
        "",
        "Failures (consumers/processing.py): transient Agent errors (5xx, 429, `AGENT_UNAVAILABLE`, timeouts,",
        "connection errors) are retried at once with jittered backoff (`BUS_IMMEDIATE_TRIES`), then later",
        "(`BUS_RETRY_DELAYS_SECONDS`), then dead-lettered; permanent ones (`INVALID_SERVICE_TOKEN`,",
        "`INVALID_PAYLOAD`, `MISSING_USER_ID`, other 4xx) are dead-lettered at once. An event type without a",
        "handler is dead-lettered. Dead letters are replayed with `manage.py replay_dead_letters`",
        "([operations.md](operations.md)).",
        "",
        "## Summary",
        "",
        "| type | meaning | consumer handler |",
        "| --- | --- | --- |",
    ]
    for doc in docs:
        handler = f"`{doc.handler}`" if doc.handler else "**none** (dead-lettered)"
        out.append(f"| [`{doc.type}`](#{doc.type.replace('.', '')}) | {doc.meaning} | {handler} |")
    for doc in docs:
        out += ["", f"## `{doc.type}`", "", doc.meaning, "", "**Raised by**", ""]
        if doc.raised_by:
            for site in doc.raised_by:
                line = f"- `{site.where}` with `data={site.data}`"
                if site.signal:
                    sent_by = ", ".join(f"`{sender}`" for sender in site.senders) or "nothing yet"
                    line += f", on the domain signal `{site.signal}` sent by {sent_by}"
                out.append(line)
        else:
            out.append("- nothing in the code raises it yet")
        out += ["", "**Consumer**", ""]
        if doc.handler:
            out.append(f"`{doc.handler}`" + (":" if doc.handler_doc else ""))
            if doc.handler_doc:
                out += ["", *[f"> {line}".rstrip() for line in doc.handler_doc.splitlines()]]
        else:
            out.append("No handler: the consumer dead-letters this event.")
        if doc.failure_recorder:
            out += ["", f"After a failed attempt, `{doc.failure_recorder}` records the failure."]
        out += ["", "**Example envelope**", "", "```json", json.dumps(example_envelope(doc.type), indent=2), "```"]
    return "\n".join(out) + "\n"


def generate() -> str:
    return render(collect())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when they differ")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                       "docs/events.md", "generated"))
            return 1
        return 0
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
