"""Conventions of the developers' guide that a linter does not check."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIP = {".venv", ".git", "node_modules", "migrations"}


def _sources() -> list[Path]:
    return [p for p in REPO.rglob("*.py") if not SKIP & set(p.relative_to(REPO).parts)]


def test_every_logger_is_named_after_its_module() -> None:
    """`logging.getLogger(__name__)`: a hand-written name drifts from the module it logs for."""
    named = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "getLogger"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                named.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not named, f"loggers named by hand (use __name__): {named}"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _is_test_or_bench(path: Path) -> bool:
    parts = set(path.relative_to(REPO).parts)
    return bool(parts & {"tests", "bench"}) or path.name in {"conftest.py"} or path.name.startswith("test_")


def test_only_the_rabbitmq_transport_imports_pika() -> None:
    """The broker client is the transport's: everything else goes through agent_bridge.transports."""
    allowed = {"agent_bridge/transports/rabbitmq.py", "agent_bridge/transports/topology.py"}
    importers = {
        str(path.relative_to(REPO))
        for path in _sources()
        if not _is_test_or_bench(path) and "pika" in _imported_modules(path)
    }
    assert importers <= allowed, f"pika imported outside the RabbitMQ transport: {sorted(importers - allowed)}"


_WRITES = ("update(", "delete(", "create(", "bulk_create(", "bulk_update(", "get_or_create(", "update_or_create(")


def test_only_the_outbox_owner_writes_outbox_and_dead_letter_rows() -> None:
    """agent_bridge.outbox is the one owner of OutboxEvent and DeadLetter state: others only read."""
    writers = set()
    for path in _sources():
        if _is_test_or_bench(path) or path.relative_to(REPO).as_posix() == "agent_bridge/outbox.py":
            continue
        text = path.read_text()
        for model in ("OutboxEvent.objects", "DeadLetter.objects"):
            start = 0
            while (at := text.find(model, start)) != -1:
                statement = text[at:text.find("\n\n", at) if "\n\n" in text[at:] else len(text)]
                if any(f".{verb}" in statement for verb in _WRITES):
                    writers.add(str(path.relative_to(REPO)))
                start = at + len(model)
    assert not writers, f"outbox or dead-letter rows written outside agent_bridge/outbox.py: {sorted(writers)}"
