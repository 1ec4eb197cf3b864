from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from application.ports import VariableRepository
from domain.model import Variable, VariableSummary


class InMemoryVariableRepository(VariableRepository):
    def __init__(self) -> None:
        self._variables: dict[tuple[str, str], Variable] = {}

    async def get(self, user_id: str, key: str) -> Variable | None:
        return self._variables.get((user_id, key))

    async def put(self, user_id: str, key: str, value: Any, at: datetime) -> Variable:
        # A copy, as a real store keeps: the caller may change its object afterwards.
        variable = Variable(key=key, value=copy.deepcopy(value), updated_at=at)
        self._variables[(user_id, key)] = variable
        return variable

    async def delete(self, user_id: str, key: str) -> bool:
        return self._variables.pop((user_id, key), None) is not None

    async def list(self, user_id: str) -> list[VariableSummary]:
        return [
            VariableSummary(key=key, updated_at=variable.updated_at)
            for (owner, key), variable in self._variables.items()
            if owner == user_id
        ]
