"""The cheap ingredients of an audit event: its id (a version-4 UUID cut from blocks of random
bytes) and the HMAC of a value under a key keyed once."""

from __future__ import annotations

import json
import os
import re
import uuid

import pytest

from domain.audit import ValueHasher, canonical_json, value_hmac
from domain.ids import uuid4_text

CANONICAL_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_an_event_id_is_a_version_4_uuid_in_its_canonical_text_form() -> None:
    for _ in range(600):  # past one block of random bytes
        text = uuid4_text()

        assert CANONICAL_UUID4.fullmatch(text), text
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_event_ids_do_not_repeat() -> None:
    ids = [uuid4_text() for _ in range(20_000)]

    assert len(set(ids)) == len(ids)


def test_a_forked_worker_makes_other_ids_than_its_parent() -> None:
    uuid4_text()  # the parent holds a block it has started on
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        try:
            os.write(writer, "\n".join(uuid4_text() for _ in range(200)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        childs = set(pipe.read().decode().split("\n"))
    os.waitpid(child, 0)
    parents = {uuid4_text() for _ in range(200)}

    assert len(childs) == 200
    assert not childs & parents


@pytest.mark.parametrize(
    "value",
    [
        {"big": 10**30, "tiny": 1e-7, "huge": 1e16, "neg": -0.0, "third": 1 / 3},
        [float("nan"), float("inf"), float("-inf")],
        {"ctrl": "\x00\x1f\x7f", "seps": "\u2028\u2029", "slash": "a/b\\c", "tab": "\t"},
        {"Z": 1, "a": 2, "É": 3, "é": 4, "🔑": 5, "": 6},
        "lone string ü",
    ],
    ids=["numbers", "non-finite floats", "escapes", "key order", "string"],
)
def test_the_canonical_form_matches_json_dumps_byte_for_byte(value: object) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    assert canonical_json(value) == expected.encode()


def test_a_value_that_is_not_json_is_refused_as_json_dumps_refuses_it() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        canonical_json({"when": object()})


def test_a_hasher_keyed_once_gives_each_value_its_own_hmac_every_time() -> None:
    key = b"audit-key-for-tests"
    hasher = ValueHasher(key)
    values = [{"a": 1}, [1, 2], "x", None, {"a": 1}]

    first = [hasher(v) for v in values]
    again = [hasher(v) for v in values]

    assert first == again == [value_hmac(key, v) for v in values]
    assert first[0] == first[4] != first[1]
    assert ValueHasher(b"another key")({"a": 1}) != first[0]
