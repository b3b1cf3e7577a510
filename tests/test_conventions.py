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
