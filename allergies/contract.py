"""The allergy rules the Agent shares with us (DESIGN §6), in pure Python: the Agent double
imports them without Django, so the two sides cannot drift apart."""

SEVERITY_LEVELS: tuple[str, ...] = ("anaphylactic", "severe", "moderate", "intolerance")


def allergy_flags_for(confirmed: list[str], intolerances: list[str]) -> list[str]:
    """The sorted union of confirmed allergens and intolerances, as the Agent computes it."""
    return sorted(set(confirmed) | set(intolerances))
