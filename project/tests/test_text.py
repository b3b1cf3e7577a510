"""project.text: the surrogate check's fast path (ASCII, the stdlib's `re`) decides exactly as the
`regex`-based check it replaced, for every kind of string; and text_problem finds a bad string
wherever it sits in a JSON value."""
import random

import pytest
import regex

from project.text import string_problem, text_problem

_REFERENCE = regex.compile(r"[\ud800-\udfff]")  # the check before the fast path


def _reference_problem(text: str) -> bool:
    return _REFERENCE.search(text) is not None


def _samples() -> list[str]:
    rng = random.Random(12)
    pools = {
        "ascii": [chr(c) for c in range(128)],
        "latin and bmp": [
            chr(c) for c in (*range(0x80, 0x800, 7), *range(0x800, 0xD800, 97), *range(0xE000, 0x10000, 89))
        ],
        "astral": [chr(c) for c in range(0x10000, 0x110000, 4099)],
        "surrogates": [chr(c) for c in range(0xD800, 0xE000)],
    }
    everything = [c for pool in pools.values() for c in pool]
    found = ["", "peanuts", "pea\u200bnuts", "\x00", "\x7f", "\x80", "\ud7ff", "\ue000", "\U0010ffff"]
    found += [chr(c) for c in range(0xD800, 0xE000)]  # every surrogate on its own
    found += [f"ok{chr(c)}" for c in (0xD800, 0xDBFF, 0xDC00, 0xDFFF)]
    for _ in range(3000):
        source = rng.choice([*pools.values(), everything])
        found.append("".join(rng.choice(source) for _ in range(rng.randint(1, 40))))
    return found


def test_string_problem_decides_as_the_regex_check_did():
    samples = _samples()
    assert any(_reference_problem(s) for s in samples) and not all(_reference_problem(s) for s in samples)
    for text in samples:
        assert (string_problem(text) is not None) == _reference_problem(text), ascii(text)


def test_a_string_is_a_problem_exactly_when_it_cannot_be_encoded():
    for text in _samples():
        try:
            text.encode("utf-8")
            encodable = True
        except UnicodeEncodeError:
            encodable = False
        assert (string_problem(text) is None) == encodable, ascii(text)


@pytest.mark.parametrize("value", [
    "\ud800", ["ok", "\udfff"], {"ok": "\udbff"}, {"\udc00": "ok"}, {"a": [{"b": ["c", {"d": "x\ud800y"}]}]},
])
def test_text_problem_finds_a_lone_surrogate_anywhere(value):
    assert text_problem(value) is not None


@pytest.mark.parametrize("value", [
    None, 3, 1.5, True, "peanuts", "é😀", ["ok", {"k": "v", "n": None}], {"uid": "u", "allergy_flags": ["a"]},
])
def test_text_problem_accepts_valid_text(value):
    assert text_problem(value) is None

