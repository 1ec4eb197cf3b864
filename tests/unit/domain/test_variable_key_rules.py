"""Which strings may name a variable (SPEC section 3, `INVALID_KEY`)."""

from __future__ import annotations

import pytest

from domain.errors import InvalidKeyError
from domain.model import MAX_KEY_LENGTH, validate_variable_key

VALID_KEYS = {
    "one character": "k",
    "255 characters": "k" * 255,
    "255 astral characters": "🔑" * 255,
    "unicode": "ключ-鍵-ü",
    "spaces": "daily report cursor",
    "a slash": "a/b",
    "a leading slash": "/a",
    "an empty segment": "a//b",
    "a non-breaking space": "a\xa0b",
    "three dots": "...",
    "a hidden-file name": ".env",
    "dots inside a segment": "a..b/c.d",
    "a percent sign": "100%2F",
}


@pytest.mark.parametrize("key", VALID_KEYS.values(), ids=VALID_KEYS.keys())
def test_a_valid_key_is_returned_unchanged(key):
    assert validate_variable_key(key) == key


def test_the_longest_key_allowed_has_255_characters():
    assert MAX_KEY_LENGTH == 255


def test_an_empty_key_is_refused_as_empty():
    with pytest.raises(InvalidKeyError, match="empty"):
        validate_variable_key("")


def test_a_key_of_256_characters_is_refused_with_its_length():
    with pytest.raises(InvalidKeyError) as refused:
        validate_variable_key("k" * 256)

    assert "256 characters" in refused.value.message
    assert "255" in refused.value.message


def test_a_key_of_256_astral_characters_is_refused_though_255_are_allowed():
    with pytest.raises(InvalidKeyError):
        validate_variable_key("🔑" * 256)


@pytest.mark.parametrize(
    "key",
    ["line\nbreak", "carriage\rreturn", "tab\there", "nul\x00", "del\x7f", "c1\x85", "\x1b[31m"],
    ids=["newline", "carriage return", "tab", "NUL", "DEL", "NEL", "escape"],
)
def test_a_key_with_a_control_character_is_refused(key):
    with pytest.raises(InvalidKeyError, match="control characters"):
        validate_variable_key(key)


def accepted(key: str) -> bool:
    try:
        validate_variable_key(key)
    except InvalidKeyError:
        return False
    return True


def test_every_c0_and_c1_control_character_and_del_is_refused_and_their_neighbours_are_not():
    controls = [*range(0x00, 0x20), *range(0x7F, 0xA0)]
    neighbours = [0x20, 0x7E, 0xA0, 0xA1]

    assert [hex(code) for code in controls if accepted(f"key{chr(code)}")] == []
    assert [hex(code) for code in neighbours if not accepted(f"key{chr(code)}")] == []


@pytest.mark.parametrize(
    "key",
    [".", "..", "../x", "a/..", "a/../b", "./a", "a/.", "a/./b", "/../etc/passwd"],
)
def test_a_key_with_a_dot_or_dot_dot_segment_is_refused(key):
    with pytest.raises(InvalidKeyError, match=r"'\.' or '\.\.' path segments"):
        validate_variable_key(key)
