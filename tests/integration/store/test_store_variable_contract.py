"""The `VariableRepository` contract, held by the in-memory and the SQLite adapter alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from adapters.memory.variables import InMemoryVariableRepository
from adapters.sqlite.variables import SqliteVariableRepository
from application.ports import VariableRepository
from domain.model import Variable

if TYPE_CHECKING:
    from conftest import OpenStore

AT = datetime(2026, 11, 28, 19, 4, 5, 123456, tzinfo=UTC)
LATER = AT + timedelta(seconds=1, microseconds=1)

VALUES: dict[str, Any] = {
    "nested": {"a": [1, 2.5, {"b": None, "c": [True, False]}], "d": {"e": {"f": "g"}}},
    "unicode": {"naïve ✓": "日本語 — emoji 🎉", 'quote"and\\slash': "\u0000 and \n"},
    "null": None,
    "empty string": "",
    "empty object": {},
    "empty list": [],
    "zero": 0,
    "false": False,
    "big integer": 2**70,
    "negative float": -1.25e-7,
    "list of mixed": [1, "two", None, {"three": 3}],
}


@pytest.fixture(params=["memory", "sqlite"])
async def variables(request: pytest.FixtureRequest, open_store: OpenStore) -> VariableRepository:
    if request.param == "memory":
        return InMemoryVariableRepository()
    return SqliteVariableRepository(await open_store())


async def test_reading_a_variable_never_set_gives_none(variables: VariableRepository) -> None:
    assert await variables.get("u1", "missing") is None


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
async def test_a_value_put_is_read_back_unchanged(
    variables: VariableRepository, value: Any
) -> None:
    written = await variables.put("u1", "k", value, AT)

    assert written == Variable(key="k", value=value, updated_at=AT)
    assert await variables.get("u1", "k") == written


async def test_a_stored_null_is_a_variable_whose_value_is_none(
    variables: VariableRepository,
) -> None:
    await variables.put("u1", "k", None, AT)

    variable = await variables.get("u1", "k")

    assert variable is not None
    assert variable.value is None


@pytest.mark.parametrize("key", ["a/b", "with space", "ünïcødé 🔑", "%2F", "x" * 255])
async def test_any_valid_key_names_its_own_variable(
    variables: VariableRepository, key: str
) -> None:
    await variables.put("u1", key, "v", AT)

    assert await variables.get("u1", key) == Variable(key=key, value="v", updated_at=AT)
    assert [summary.key for summary in await variables.list("u1")] == [key]


async def test_the_update_time_keeps_its_microseconds_and_instant_in_any_zone(
    variables: VariableRepository,
) -> None:
    in_paris = datetime(2026, 6, 1, 14, 0, 0, 999999, tzinfo=timezone(timedelta(hours=2)))

    await variables.put("u1", "k", 1, in_paris)
    variable = await variables.get("u1", "k")

    assert variable is not None
    assert variable.updated_at == in_paris
    assert variable.updated_at.tzinfo is not None
    assert variable.updated_at.microsecond == 999999


async def test_putting_a_key_again_replaces_its_value_and_time(
    variables: VariableRepository,
) -> None:
    await variables.put("u1", "k", {"old": True}, AT)

    written = await variables.put("u1", "k", ["new"], LATER)

    assert written == Variable(key="k", value=["new"], updated_at=LATER)
    assert await variables.get("u1", "k") == written
    assert [(s.key, s.updated_at) for s in await variables.list("u1")] == [("k", LATER)]


async def test_deleting_a_variable_removes_it_and_a_second_delete_finds_nothing(
    variables: VariableRepository,
) -> None:
    await variables.put("u1", "k", "v", AT)

    assert await variables.delete("u1", "k") is True
    assert await variables.get("u1", "k") is None
    assert await variables.delete("u1", "k") is False
    assert await variables.list("u1") == []


async def test_deleting_a_variable_never_set_says_so(variables: VariableRepository) -> None:
    assert await variables.delete("u1", "never") is False


async def test_variables_belong_to_their_user(variables: VariableRepository) -> None:
    await variables.put("alice", "k", "alice's", AT)
    await variables.put("bob", "k", "bob's", LATER)
    await variables.put("alice", "other", 2, LATER)

    alice = await variables.get("alice", "k")
    assert alice is not None
    assert alice.value == "alice's"
    assert await variables.delete("bob", "k") is True
    assert await variables.get("alice", "k") == alice
    assert await variables.get("bob", "other") is None


async def test_listing_gives_each_of_the_users_variables_once(
    variables: VariableRepository,
) -> None:
    await variables.put("alice", "b", 1, AT)
    await variables.put("alice", "a", 2, LATER)
    await variables.put("alice", "b", 3, LATER)
    await variables.put("bob", "c", 4, AT)

    listed = sorted(await variables.list("alice"), key=lambda summary: summary.key)

    assert [(s.key, s.updated_at) for s in listed] == [("a", LATER), ("b", LATER)]
    assert [s.key for s in await variables.list("bob")] == ["c"]
    assert await variables.list("carol") == []


@pytest.mark.parametrize("variables", ["memory", "sqlite"], indirect=True)
async def test_a_value_changed_by_the_caller_after_put_stays_as_it_was_written(
    variables: VariableRepository,
) -> None:
    value = {"items": [1]}
    await variables.put("u1", "k", value, AT)

    value["items"].append(2)
    read = await variables.get("u1", "k")

    assert read is not None
    assert read.value == {"items": [1]}
