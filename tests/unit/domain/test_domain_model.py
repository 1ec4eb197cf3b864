"""The small behaviours the model's Structs carry."""

from __future__ import annotations

import pytest

from domain.model import DependencyHealth, ExecutionContext


def test_an_executions_input_is_the_input_in_its_metadata():
    context = ExecutionContext(
        execution_id="e1", user_id="u1", metadata={"input": {"n": [1, 2]}, "source": "cron"}
    )

    assert context.input == {"n": [1, 2]}


def test_an_execution_without_input_in_its_metadata_has_none():
    assert ExecutionContext(execution_id="e1", user_id="u1").input is None
    assert ExecutionContext(execution_id="e1", user_id="u1", metadata={"x": 1}).input is None


def test_executions_do_not_share_their_default_metadata():
    first = ExecutionContext(execution_id="e1", user_id="u1")
    second = ExecutionContext(execution_id="e2", user_id="u1")

    first.metadata["input"] = "only mine"

    assert second.metadata == {}


@pytest.mark.parametrize(("status", "up"), [("up", True), ("disabled", True), ("down", False)])
def test_only_a_dependency_that_is_down_counts_as_not_up(status, up):
    assert DependencyHealth(status=status).is_up is up
