"""How the audit trail fingerprints a value (SPEC section 9): HMAC-SHA256 of its canonical JSON."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from domain.audit import canonical_json, value_hmac

NESTED_UNICODE = {
    "zähler": 3,
    "Ω": [1, 2.5, None, True, {"b": "ß", "a": "🔑"}],
    "a": {"z": "naïve", "é": "—"},
    "quote": 'he said "hi"\n',
}


@pytest.mark.parametrize(
    "value",
    [NESTED_UNICODE, [NESTED_UNICODE, "x"], "plain ü", 42, -0.5, True, None, [], {}],
    ids=["nested object", "list", "string", "int", "float", "bool", "null", "empty list", "empty"],
)
def test_the_canonical_form_is_sorted_compact_json_in_utf8(value):
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    assert canonical_json(value) == expected.encode("utf-8")


def test_the_canonical_form_keeps_non_ascii_characters_unescaped():
    assert canonical_json({"k": "ü🔑"}) == '{"k":"ü🔑"}'.encode()


def test_two_objects_with_the_same_members_in_another_order_have_one_canonical_form():
    assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == canonical_json(
        {"a": {"c": 3, "d": 2}, "b": 1}
    )


def test_the_hmac_of_a_value_is_hmac_sha256_of_its_canonical_json_under_the_key():
    key = b"audit-key-for-tests"
    hand_written_canonical = '{"a":[1,null],"b":"ü"}'.encode()
    expected = hmac.new(key, hand_written_canonical, hashlib.sha256).hexdigest()

    assert value_hmac(key, {"b": "ü", "a": [1, None]}) == f"hmac-sha256:{expected}"


def test_the_hmac_is_prefixed_and_carries_64_lowercase_hex_digits():
    fingerprint = value_hmac(b"k", "value")

    prefix, digest = fingerprint.split(":")
    assert prefix == "hmac-sha256"
    assert len(digest) == 64
    assert digest == digest.lower()
    int(digest, 16)


def test_the_same_value_under_another_key_has_another_hmac():
    assert value_hmac(b"key-one", {"a": 1}) != value_hmac(b"key-two", {"a": 1})


def test_null_and_the_string_null_have_different_hmacs():
    assert value_hmac(b"k", None) != value_hmac(b"k", "null")
