"""GetVariable, SetVariable, DeleteVariable and ListVariables: a user's variables, shared by
every run of that user's events and by nobody else."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from application.delete_variable import DeleteVariable, DeleteVariableCommand
from application.get_variable import GetVariable, GetVariableCommand
from application.list_variables import ListVariables, ListVariablesCommand
from application.set_variable import SetVariable, SetVariableCommand
from domain.errors import ExecutionMismatchError, InvalidKeyError, VariableNotFoundError
from domain.model import Variable, VariableSummary

INVALID_KEYS = {
    "empty": "",
    "256 characters": "k" * 256,
    "a newline": "line\nbreak",
    "a tab": "tab\there",
    "a NUL": "nul\x00",
    "DEL": "del\x7f",
    "a C1 control": "c1\x85",
    "a '..' segment": "../x",
    "a trailing '..' segment": "a/..",
    "a '.' segment": "a/./b",
    "only '.'": ".",
    "only '..'": "..",
}

VALID_KEYS = {
    "255 characters": "k" * 255,
    "255 non-ASCII characters": "ü" * 255,
    "unicode": "ключ-🔑-鍵",
    "spaces": "my counter key",
    "a slash": "a/b",
    "dots inside a segment": "v1.2/..hidden/a..b/...",
    "a non-breaking space": "a\xa0b",
}


# SetVariable and GetVariable


async def test_setting_a_variable_returns_it_with_the_runtimes_time_of_the_write(
    variables, clock, audit, alice
):
    clock.moment = datetime(2026, 11, 28, 20, 0, 0, 456000, tzinfo=UTC)
    set_variable = SetVariable(variables=variables, clock=clock, audit=audit)

    written = await set_variable.execute(
        SetVariableCommand(context=alice, execution_id="exec-alice-1", key="counter", value=41)
    )

    assert written == Variable(
        key="counter", value=41, updated_at=datetime(2026, 11, 28, 20, 0, 0, 456000, tzinfo=UTC)
    )


async def test_a_variable_that_was_set_is_read_back_with_its_value(variables, clock, audit, alice):
    value = {"seen": ["a", "ü"], "last": {"id": 7, "ok": True}, "score": 1.5}
    set_variable = SetVariable(variables=variables, clock=clock, audit=audit)
    get_variable = GetVariable(variables=variables, audit=audit)
    await set_variable.execute(
        SetVariableCommand(context=alice, execution_id="exec-alice-1", key="state", value=value)
    )

    read = await get_variable.execute(
        GetVariableCommand(context=alice, execution_id="exec-alice-1", key="state")
    )

    assert read == Variable(key="state", value=value, updated_at=clock.now())


async def test_a_later_write_replaces_the_value_and_its_time(variables, clock, audit, alice):
    set_variable = SetVariable(variables=variables, clock=clock, audit=audit)
    get_variable = GetVariable(variables=variables, audit=audit)
    await set_variable.execute(
        SetVariableCommand(context=alice, execution_id="exec-alice-1", key="counter", value=1)
    )
    later = clock.advance(seconds=60)

    await set_variable.execute(
        SetVariableCommand(context=alice, execution_id="exec-alice-1", key="counter", value=2)
    )

    read = await get_variable.execute(
        GetVariableCommand(context=alice, execution_id="exec-alice-1", key="counter")
    )
    assert (read.value, read.updated_at) == (2, later)


async def test_a_null_value_is_stored_as_null_not_as_missing(variables, clock, audit, alice):
    set_variable = SetVariable(variables=variables, clock=clock, audit=audit)
    get_variable = GetVariable(variables=variables, audit=audit)

    written = await set_variable.execute(
        SetVariableCommand(context=alice, execution_id="exec-alice-1", key="cleared", value=None)
    )
    read = await get_variable.execute(
        GetVariableCommand(context=alice, execution_id="exec-alice-1", key="cleared")
    )

    assert written.value is None
    assert read == Variable(key="cleared", value=None, updated_at=clock.now())


async def test_reading_a_missing_variable_raises_not_found(variables, audit, alice):
    get_variable = GetVariable(variables=variables, audit=audit)

    with pytest.raises(VariableNotFoundError) as missing:
        await get_variable.execute(
            GetVariableCommand(context=alice, execution_id="exec-alice-1", key="never-set")
        )

    assert missing.value.key == "never-set"
    assert "never-set" in missing.value.message


@pytest.mark.parametrize("key", VALID_KEYS.values(), ids=VALID_KEYS.keys())
async def test_a_variable_may_be_named_by_any_valid_key(variables, clock, audit, alice, key):
    set_variable = SetVariable(variables=variables, clock=clock, audit=audit)
    get_variable = GetVariable(variables=variables, audit=audit)

    await set_variable.execute(
        SetVariableCommand(context=alice, execution_id="exec-alice-1", key=key, value="v")
    )
    read = await get_variable.execute(
        GetVariableCommand(context=alice, execution_id="exec-alice-1", key=key)
    )

    assert (read.key, read.value) == (key, "v")


@pytest.mark.parametrize("key", INVALID_KEYS.values(), ids=INVALID_KEYS.keys())
async def test_setting_a_variable_with_an_invalid_key_is_refused_and_stores_nothing(
    variables, clock, audit, alice, key
):
    set_variable = SetVariable(variables=variables, clock=clock, audit=audit)

    with pytest.raises(InvalidKeyError):
        await set_variable.execute(
            SetVariableCommand(context=alice, execution_id="exec-alice-1", key=key, value=1)
        )

    assert await variables.list("alice") == []


@pytest.mark.parametrize("key", INVALID_KEYS.values(), ids=INVALID_KEYS.keys())
async def test_reading_a_variable_with_an_invalid_key_is_refused(variables, audit, alice, key):
    get_variable = GetVariable(variables=variables, audit=audit)

    with pytest.raises(InvalidKeyError):
        await get_variable.execute(
            GetVariableCommand(context=alice, execution_id="exec-alice-1", key=key)
        )


async def test_reading_a_variable_through_another_execution_is_refused(
    variables, clock, audit, alice
):
    await variables.put("alice", "counter", 1, clock.now())
    get_variable = GetVariable(variables=variables, audit=audit)

    with pytest.raises(ExecutionMismatchError):
        await get_variable.execute(
            GetVariableCommand(context=alice, execution_id="exec-alice-2", key="counter")
        )


async def test_setting_a_variable_through_another_execution_is_refused_and_stores_nothing(
    variables, clock, audit, alice
):
    set_variable = SetVariable(variables=variables, clock=clock, audit=audit)

    with pytest.raises(ExecutionMismatchError):
        await set_variable.execute(
            SetVariableCommand(context=alice, execution_id="exec-bob-1", key="counter", value=9)
        )

    assert await variables.list("alice") == []
    assert await variables.list("bob") == []


# Variables belong to the user


async def test_a_value_set_in_one_run_is_read_by_the_users_next_run(
    variables, clock, audit, alice, alice_next_run
):
    set_variable = SetVariable(variables=variables, clock=clock, audit=audit)
    get_variable = GetVariable(variables=variables, audit=audit)
    await set_variable.execute(
        SetVariableCommand(context=alice, execution_id="exec-alice-1", key="cursor", value=120)
    )

    read = await get_variable.execute(
        GetVariableCommand(context=alice_next_run, execution_id="exec-alice-2", key="cursor")
    )

    assert read.value == 120


async def test_another_users_run_does_not_see_the_users_variable(
    variables, clock, audit, alice, bob
):
    set_variable = SetVariable(variables=variables, clock=clock, audit=audit)
    get_variable = GetVariable(variables=variables, audit=audit)
    await set_variable.execute(
        SetVariableCommand(context=alice, execution_id="exec-alice-1", key="cursor", value=120)
    )

    with pytest.raises(VariableNotFoundError):
        await get_variable.execute(
            GetVariableCommand(context=bob, execution_id="exec-bob-1", key="cursor")
        )


async def test_another_user_writing_the_same_key_leaves_the_users_value_alone(
    variables, clock, audit, alice, bob
):
    set_variable = SetVariable(variables=variables, clock=clock, audit=audit)
    get_variable = GetVariable(variables=variables, audit=audit)
    await set_variable.execute(
        SetVariableCommand(context=alice, execution_id="exec-alice-1", key="cursor", value=120)
    )

    await set_variable.execute(
        SetVariableCommand(context=bob, execution_id="exec-bob-1", key="cursor", value=-1)
    )

    alices = await get_variable.execute(
        GetVariableCommand(context=alice, execution_id="exec-alice-1", key="cursor")
    )
    bobs = await get_variable.execute(
        GetVariableCommand(context=bob, execution_id="exec-bob-1", key="cursor")
    )
    assert (alices.value, bobs.value) == (120, -1)


# DeleteVariable


async def test_deleting_a_variable_removes_it_for_every_run_of_the_user(
    variables, clock, audit, alice, alice_next_run
):
    await variables.put("alice", "token-cache", "x", clock.now())
    delete_variable = DeleteVariable(variables=variables, audit=audit)
    get_variable = GetVariable(variables=variables, audit=audit)

    await delete_variable.execute(
        DeleteVariableCommand(context=alice, execution_id="exec-alice-1", key="token-cache")
    )

    with pytest.raises(VariableNotFoundError):
        await get_variable.execute(
            GetVariableCommand(
                context=alice_next_run, execution_id="exec-alice-2", key="token-cache"
            )
        )


async def test_deleting_a_missing_variable_raises_not_found(variables, audit, alice):
    delete_variable = DeleteVariable(variables=variables, audit=audit)

    with pytest.raises(VariableNotFoundError) as missing:
        await delete_variable.execute(
            DeleteVariableCommand(context=alice, execution_id="exec-alice-1", key="ghost")
        )

    assert missing.value.key == "ghost"


async def test_deleting_a_variable_twice_raises_not_found_the_second_time(
    variables, clock, audit, alice
):
    await variables.put("alice", "once", 1, clock.now())
    delete_variable = DeleteVariable(variables=variables, audit=audit)
    command = DeleteVariableCommand(context=alice, execution_id="exec-alice-1", key="once")
    await delete_variable.execute(command)

    with pytest.raises(VariableNotFoundError):
        await delete_variable.execute(command)


async def test_another_user_cannot_delete_the_users_variable(variables, clock, audit, alice, bob):
    await variables.put("alice", "cursor", 120, clock.now())
    delete_variable = DeleteVariable(variables=variables, audit=audit)

    with pytest.raises(VariableNotFoundError):
        await delete_variable.execute(
            DeleteVariableCommand(context=bob, execution_id="exec-bob-1", key="cursor")
        )

    assert (await variables.get("alice", "cursor")).value == 120


async def test_deleting_through_another_execution_is_refused_and_deletes_nothing(
    variables, clock, audit, alice
):
    await variables.put("alice", "cursor", 120, clock.now())
    delete_variable = DeleteVariable(variables=variables, audit=audit)

    with pytest.raises(ExecutionMismatchError):
        await delete_variable.execute(
            DeleteVariableCommand(context=alice, execution_id="exec-alice-2", key="cursor")
        )

    assert (await variables.get("alice", "cursor")).value == 120


@pytest.mark.parametrize("key", INVALID_KEYS.values(), ids=INVALID_KEYS.keys())
async def test_deleting_a_variable_with_an_invalid_key_is_refused(variables, audit, alice, key):
    delete_variable = DeleteVariable(variables=variables, audit=audit)

    with pytest.raises(InvalidKeyError):
        await delete_variable.execute(
            DeleteVariableCommand(context=alice, execution_id="exec-alice-1", key=key)
        )


# ListVariables


async def test_listing_variables_gives_the_users_keys_sorted_with_their_write_times(
    variables, clock, audit, alice
):
    times = {}
    for key in ["zeta", "a/c", "ä", "A", "a", "b b"]:
        times[key] = clock.advance(seconds=1)
        await variables.put("alice", key, f"value of {key}", times[key])
    list_variables = ListVariables(variables=variables, audit=audit)

    listed = await list_variables.execute(
        ListVariablesCommand(context=alice, execution_id="exec-alice-1")
    )

    assert listed == [
        VariableSummary(key=key, updated_at=times[key])
        for key in ["A", "a", "a/c", "b b", "zeta", "ä"]
    ]


async def test_listing_variables_shows_no_values(variables, clock, audit, alice):
    await variables.put("alice", "password", "hunter2", clock.now())
    list_variables = ListVariables(variables=variables, audit=audit)

    [summary] = await list_variables.execute(
        ListVariablesCommand(context=alice, execution_id="exec-alice-1")
    )

    assert not hasattr(summary, "value")
    assert "hunter2" not in repr(summary)


async def test_listing_variables_leaves_out_other_users_keys(
    variables, clock, audit, alice_next_run
):
    await variables.put("alice", "mine", 1, clock.now())
    await variables.put("bob", "his", 2, clock.now())
    await variables.put("bob", "also-his", 3, clock.now())
    list_variables = ListVariables(variables=variables, audit=audit)

    listed = await list_variables.execute(
        ListVariablesCommand(context=alice_next_run, execution_id="exec-alice-2")
    )

    assert [summary.key for summary in listed] == ["mine"]


async def test_listing_variables_of_a_user_without_any_gives_an_empty_list(
    variables, clock, audit, alice
):
    await variables.put("bob", "his", 2, clock.now())
    list_variables = ListVariables(variables=variables, audit=audit)

    listed = await list_variables.execute(
        ListVariablesCommand(context=alice, execution_id="exec-alice-1")
    )

    assert listed == []


async def test_listing_variables_through_another_execution_is_refused(
    variables, clock, audit, alice
):
    await variables.put("alice", "mine", 1, clock.now())
    list_variables = ListVariables(variables=variables, audit=audit)

    with pytest.raises(ExecutionMismatchError):
        await list_variables.execute(
            ListVariablesCommand(context=alice, execution_id="exec-alice-2")
        )
