"""What a revision of the allergy profile changed: a pure function over two states."""
from typing import Any

LISTS = ("confirmed", "intolerances")


def allergy_changes(
    *, before: dict[str, Any], after: dict[str, Any]
) -> dict[str, list[dict[str, str | None]]]:
    """{"added", "removed", "severity_changed"} between two profiles
    ({"confirmed": [...], "intolerances": [...], "severity": {...}}), each list sorted by allergen."""
    added: list[dict[str, str | None]] = []
    removed: list[dict[str, str | None]] = []
    changed: list[dict[str, str | None]] = []
    old_severity, new_severity = before.get("severity", {}), after.get("severity", {})
    for name in LISTS:
        old, new = set(before.get(name, [])), set(after.get(name, []))
        added += [{"allergen": a, "list": name, "severity": new_severity.get(a)} for a in sorted(new - old)]
        removed += [{"allergen": a, "list": name, "severity": old_severity.get(a)} for a in sorted(old - new)]
        changed += [
            {"allergen": a, "list": name, "old_severity": old_severity.get(a), "new_severity": new_severity.get(a)}
            for a in sorted(old & new)
            if old_severity.get(a) != new_severity.get(a)
        ]
    return {"added": added, "removed": removed, "severity_changed": changed}
