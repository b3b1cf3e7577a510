"""The rules an allergy profile must satisfy (DESIGN §6), applied to every write.

The service runs `allergy_profile_clean` on every write, so a profile written from anywhere (API,
admin, shell) is normalised and valid; the API answers its AllergyProfileInvalid as a validation
error naming each field.
"""
import functools
import unicodedata
from dataclasses import dataclass

from allergies.contract import SEVERITY_LEVELS
from allergies.vocabulary import MAX_NAME_LENGTH, allergen_normalize
from project.errors import ApplicationError, FieldProblem

__all__ = ["SEVERITY_LEVELS", "AllergyProfileInvalid", "CleanProfile", "allergy_profile_clean"]
#: Most names in `confirmed`, and in `intolerances`; `severity` holds at most one per name.
MAX_ENTRIES = 50


class AllergyProfileInvalid(ApplicationError):
    """A profile that breaks the rules; answered as a validation error on each field named."""

    code = "invalid"

    def __init__(self, messages: dict[str, list[str]]) -> None:
        super().__init__(
            "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in messages.items()),
            errors={field: [FieldProblem(message) for message in msgs] for field, msgs in messages.items()},
        )
        self.messages = messages


@dataclass(frozen=True)
class CleanProfile:
    confirmed: list[str]
    intolerances: list[str]
    severity: dict[str, str]


def _clean_name(raw: object, errors: list[str], where: str) -> str | None:
    if not isinstance(raw, str):
        errors.append(f"{where}: an allergen name must be a string.")
        return None
    # Every PUT checks the same few names again: short ones are remembered (a bounded cache keyed by the name as
    # sent, so no body can grow it past NAME_CACHE_SIZE entries of at most NAME_CACHE_LENGTH characters).
    name, problem = _name_checked(raw) if len(raw) <= NAME_CACHE_LENGTH else _name_check(raw)
    if problem:
        errors.append(f"{where}: {problem}")
        return None
    return name


NAME_CACHE_SIZE = 4096
NAME_CACHE_LENGTH = 2 * MAX_NAME_LENGTH


def _name_check(raw: str) -> tuple[str, str]:
    """(the normalised name, "") or ("", what is wrong with it): a pure function of `raw`."""
    if any(unicodedata.category(ch) == "Cc" for ch in raw):
        return "", "an allergen name must not contain control characters."
    name = allergen_normalize(raw)
    if not name:
        return "", "an allergen name must not be empty."
    if len(name) > MAX_NAME_LENGTH:
        return "", f"an allergen name must be at most {MAX_NAME_LENGTH} characters."
    return name, ""


_name_checked = functools.lru_cache(maxsize=NAME_CACHE_SIZE)(_name_check)


def _clean_list(field: str, raw: object, errors: dict[str, list[str]]) -> list[str]:
    messages: list[str] = []
    if not isinstance(raw, list):
        errors[field] = ["Expected a list of allergen names."]
        return []
    if len(raw) > MAX_ENTRIES:
        errors[field] = [f"At most {MAX_ENTRIES} allergens are allowed, got {len(raw)}."]
        return []
    names: list[str] = []
    first_spelling: dict[str, str] = {}
    for index, item in enumerate(raw):
        name = _clean_name(item, messages, f"item {index}")
        if name is None:
            continue
        if name in first_spelling:
            messages.append(f"{first_spelling[name]!r} and {item!r} are the same allergen ({name}); list it once.")
            continue
        first_spelling[name] = item
        names.append(name)
    if messages:
        errors[field] = messages
    return names


def _clean_severity(raw: object, errors: dict[str, list[str]]) -> dict[str, str]:
    if not isinstance(raw, dict):
        errors["severity"] = ["Expected an object mapping each allergen to a severity level."]
        return {}
    if len(raw) > 2 * MAX_ENTRIES:
        errors["severity"] = [f"At most {2 * MAX_ENTRIES} entries are allowed, got {len(raw)}."]
        return {}
    messages: list[str] = []
    severity: dict[str, str] = {}
    first_spelling: dict[str, str] = {}
    for key, level in raw.items():
        name = _clean_name(key, messages, f"key {key!r}")
        if name is None:
            continue
        if name in first_spelling:
            messages.append(f"{first_spelling[name]!r} and {key!r} are the same allergen ({name}); give it once.")
            continue
        first_spelling[name] = key
        if level not in SEVERITY_LEVELS:
            messages.append(f"{name}: severity must be one of {', '.join(SEVERITY_LEVELS)}, got {level!r}.")
            continue
        severity[name] = level
    if messages:
        errors["severity"] = messages
    return severity


def allergy_profile_clean(*, confirmed: object, intolerances: object, severity: object) -> CleanProfile:
    """Normalise names against the vocabulary and check the rules; raise AllergyProfileInvalid."""
    errors: dict[str, list[str]] = {}
    clean_confirmed = _clean_list("confirmed", confirmed, errors)
    clean_intolerances = _clean_list("intolerances", intolerances, errors)
    clean_severity = _clean_severity(severity, errors)

    both = [name for name in clean_intolerances if name in set(clean_confirmed)]
    if both:
        errors.setdefault("intolerances", []).append(
            f"{', '.join(both)} already listed in confirmed: an allergen is either confirmed or an intolerance."
        )
    # Cross-field checks only when every field is valid on its own, so that one mistake is
    # reported once, on its own field.
    if not errors:
        listed = set(clean_confirmed) | set(clean_intolerances)
        missing = [name for name in [*clean_confirmed, *clean_intolerances] if name not in clean_severity]
        unlisted = [name for name in clean_severity if name not in listed]
        messages = []
        if missing:
            messages.append(f"Every listed allergen needs a severity; missing for: {', '.join(missing)}.")
        if unlisted:
            messages.append(
                f"Severity given for allergens not in confirmed or intolerances: {', '.join(unlisted)}."
            )
        if messages:
            errors["severity"] = messages
    if errors:
        raise AllergyProfileInvalid(errors)
    return CleanProfile(clean_confirmed, clean_intolerances, clean_severity)
