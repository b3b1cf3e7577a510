"""Preferences: the Agent's merge (its `_deep_merge`), part of the contract with the Agent.

This module is the one owner of the preference rules and the merge; it is pure Python
(no Django) so the Agent double imports it too.

The backend merges a PATCH into its own copy with this, and the Agent double merges what it
receives with it, so the two copies stay equal. Pure Python: the double imports it without Django.
"""
import copy
from typing import Any


def preferences_deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Objects merge recursively, lists are unioned (order kept, duplicates dropped), any other
    value replaces the old one. Neither input is modified."""
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
