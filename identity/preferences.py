"""Preferences: the rules, the API's replace/patch semantics, and the Agent's merge.

The one owner of what a preference document may hold and of how a change reaches the Agent.
Pure Python (no Django): the Agent double imports it too.

The API's semantics, for people: PUT replaces the whole document; PATCH replaces each key it
names, whole, and a key set to `null` is removed; keys not named are kept.

The Agent's semantics: `PATCH /users/{uid}` deep-merges — objects merge recursively, any other
value replaces. The contract says lists are replaced; this module assumes the stricter case that
they are unioned (the Agent double does so), and what it sends is right either way. So a value
removed from a list, or a key removed from an object, cannot be sent as the new state alone: the
merge would keep it.
What can be sent is `null`, which replaces anything. A change that the merge cannot express
marks its keys for *reset*; the consumer then sends two merges (`agent_patches`): first the
reset keys as `null`, then the full current document, with each removed key as its empty value
(`[]` or `{}`), so the Agent ends with exactly our state (a removed key empty). Keys this
backend never touched stay as the Agent's profiler learned them.
"""
import copy
import json
import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from project.text import invisible_strip

#: Most items in a list, or keys in an object; longest string.
MAX_ITEMS = 50
MAX_STRING = 100
#: The whole document is sent to the Agent; keep it small.
MAX_BYTES = 16 * 1024

#: The allowed price tiers of `price_comfort` (seed 000 §7's example uses "$$", "$$$").
PRICE_TIERS: tuple[str, ...] = ("$", "$$", "$$$", "$$$$")


@dataclass(frozen=True)
class Problem:
    """What is wrong with one key: a message for people and a machine code."""

    message: str
    code: str


class PreferencesInvalid(ValueError):
    """`problems` maps a key (or "" for the whole document) to what is wrong with it."""

    def __init__(self, problems: dict[str, Problem]) -> None:
        super().__init__("; ".join(f"{key or 'preferences'}: {p.message}" for key, p in problems.items()))
        self.problems = problems


class _Bad(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.problem = Problem(message, code)


# --- The rules: one shape per key ---------------------------------------------------------
def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{where}: expected a string.", "not_a_string")
    # The Agent matches these against its own vocabularies (diets, cuisines...): one spelling,
    # without the characters that render as nothing ("ve\u200bgan" is "vegan").
    value = unicodedata.normalize("NFC", invisible_strip(value))
    if not value.strip():
        raise _Bad(f"{where}: must not be blank.", "blank")
    # NUL and other control characters: PostgreSQL's JSON cannot store NUL, and none is a taste.
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise _Bad(f"{where}: must not contain control characters.", "invalid_character")
    if len(value) > MAX_STRING:
        raise _Bad(f"{where}: at most {MAX_STRING} characters.", "max_length")
    return value.strip()


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise _Bad(f"{where}: expected a list of strings.", "not_a_list")
    if len(value) > MAX_ITEMS:
        raise _Bad(f"{where}: at most {MAX_ITEMS} items.", "max_items")
    cleaned: list[str] = []
    for index, item in enumerate(value):
        text = _string(item, f"{where}[{index}]")
        if text not in cleaned:
            cleaned.append(text)
    return cleaned


def _price_tiers(value: Any, where: str) -> list[str]:
    tiers = _string_list(value, where)
    unknown = [tier for tier in tiers if tier not in PRICE_TIERS]
    if unknown:
        allowed = ", ".join(PRICE_TIERS)
        raise _Bad(f"{where}: unknown tier(s) {', '.join(unknown)}; allowed: {allowed}.", "invalid_choice")
    return tiers


def _number(value: Any, where: str) -> float | int:
    # bool is an int in Python; a weight of `true` is a client bug, not a number.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Bad(f"{where}: expected a finite number.", "not_a_number")
    return value


def _flat_object(value: Any, where: str, *, numbers_only: bool) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"{where}: expected an object.", "not_an_object")
    if len(value) > MAX_ITEMS:
        raise _Bad(f"{where}: at most {MAX_ITEMS} keys.", "max_items")
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        name = _string(key, f"{where} key")
        if numbers_only or not isinstance(item, str):
            cleaned[name] = _number(item, f"{where}.{name}")
        else:
            cleaned[name] = _string(item, f"{where}.{name}")
    return cleaned


def _cuisine_affinity(value: Any, where: str) -> dict[str, Any]:
    """{cuisine: weight}."""
    return _flat_object(value, where, numbers_only=True)


def _location_bias(value: Any, where: str) -> dict[str, Any]:
    """Strings or numbers, e.g. {"city": "Oslo", "radius_km": 3}."""
    return _flat_object(value, where, numbers_only=False)


#: Each key has exactly one shape, so the Agent's merge of a key never mixes shapes.
RULES: dict[str, Callable[[Any, str], Any]] = {
    "dietary": _string_list,
    "vibes": _string_list,
    "cuisine_affinity": _cuisine_affinity,
    "price_comfort": _price_tiers,
    "location_bias": _location_bias,
}
KEYS: tuple[str, ...] = tuple(RULES)
#: The value a removed key ends with at the Agent.
EMPTY: dict[str, Any] = {
    "dietary": [],
    "vibes": [],
    "cuisine_affinity": {},
    "price_comfort": [],
    "location_bias": {},
}


def _clean(raw: Any, *, removals: bool) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise PreferencesInvalid({"": Problem("Expected an object.", "not_an_object")})
    problems: dict[str, Problem] = {}
    cleaned: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in RULES:
            problems[str(key)] = Problem(f"Unknown preference key {key!r}. Allowed: {', '.join(KEYS)}.", "unknown_key")
        elif value is None and removals:
            cleaned[key] = None
        else:
            try:
                cleaned[key] = RULES[key](value, key)
            except _Bad as exc:
                problems[key] = exc.problem
    if problems:
        raise PreferencesInvalid(problems)
    return cleaned


def preferences_clean(raw: Any) -> dict[str, Any]:
    """A whole document, checked and normalised (strings stripped, list duplicates dropped).
    Raises PreferencesInvalid."""
    cleaned = _clean(raw, removals=False)
    if len(json.dumps(cleaned)) > MAX_BYTES:
        raise PreferencesInvalid({"": Problem(f"Preferences must stay under {MAX_BYTES} bytes.", "too_large")})
    return cleaned


def preferences_patch_apply(current: dict[str, Any], patch: Any) -> dict[str, Any]:
    """`current` with `patch` applied: each named key replaced whole, `null` removing it.
    The result is checked like any document. Raises PreferencesInvalid."""
    changes = _clean(patch, removals=True)
    result = {key: value for key, value in current.items() if key not in changes}
    result.update({key: value for key, value in changes.items() if value is not None})
    return preferences_clean(result)


# --- The Agent ----------------------------------------------------------------------------
def preferences_deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """The Agent's merge: objects merge recursively, lists are unioned (order kept, duplicates
    dropped), any other value (null included) replaces the old one. Neither input is modified."""
    result = copy.deepcopy(base)
    for key, value in update.items():
        old = result.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            result[key] = preferences_deep_merge(old, value)
        elif isinstance(value, list) and isinstance(old, list):
            merged = list(old)
            for item in value:
                if item not in merged:
                    merged.append(item)
            result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    return result


def preferences_reset_keys(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    """The keys whose change from `old` to `new` the Agent's merge cannot express: a key
    removed, or one whose merged value would not be the new value (a list item or object key
    removed)."""
    resets = set()
    for key, value in old.items():
        target = new.get(key, EMPTY.get(key))
        if preferences_deep_merge({key: value}, {key: target}) != {key: target}:
            resets.add(key)
    return resets


def agent_patches(data: dict[str, Any], reset_keys: set[str] | list[str]) -> list[dict[str, Any]]:
    """The bodies of the Agent merges, in order, that leave the Agent's copy equal to `data`
    (each reset key not in `data` empty), whatever it held of these keys before."""
    resets = sorted(set(reset_keys))
    if not resets:
        return [data]
    final = {**{key: copy.deepcopy(EMPTY.get(key)) for key in resets if key not in data}, **data}
    return [{key: None for key in resets}, final]
