"""Unicode hygiene for text that comes from outside: what the API accepts, and what it matches.

Two rules, applied at two places:
- `text_problem` is asked by the JSON parser (project/parsers.py) about every string of every
  request body, and by the Agent client about its answers: a string that is not valid Unicode
  text (a lone surrogate such as "\\ud800") cannot be encoded, so once stored it makes every later
  answer that carries it fail to render. (NUL, which PostgreSQL cannot store, is valid text:
  each field refuses it with its own message, DRF's CharField and the allergy and preference
  rules alike.)
- `invisible_strip` removes the characters that render as nothing (Unicode's
  Default_Ignorable_Code_Point and the format controls, Cf: zero-width space, soft hyphen,
  bidi overrides, variation selectors, tag characters...) from names that are matched against a
  vocabulary or a unique key, so that "pea\\u200bnuts" is "peanuts" and not a new allergen.
"""
import re
from typing import Any

import regex

# The `regex` package carries current Unicode property tables (the stdlib's `re` has none).
_INVISIBLE = regex.compile(r"[\p{Default_Ignorable_Code_Point}\p{Cf}]+")
# A code point range needs no property table, so the stdlib's `re`: `regex` releases the GIL for
# every search, and in a process with several busy threads (the consumer's Agent calls) getting it
# back costs far more than the search.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def invisible_strip(text: str) -> str:
    """`text` without the characters that render as nothing."""
    return _INVISIBLE.sub("", text)


def string_problem(text: str) -> str | None:
    """Why `text` cannot be accepted as text, or None when it can."""
    if not text.isascii() and _SURROGATE.search(text):  # an ASCII string holds no surrogate
        return "a string must be valid Unicode text (it holds a lone surrogate)"
    return None


def text_problem(value: Any) -> str | None:
    """The first problem of any string (object keys included) inside a parsed JSON value.
    Iterative: a body nested as deep as the JSON parser allows must not overflow the stack here."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            problem = string_problem(item)
            if problem:
                return problem
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None
