from __future__ import annotations

import msgspec

from domain.errors import ExecutionMismatchError
from domain.model import RequestContext


class ExecutionCommand(msgspec.Struct, frozen=True, kw_only=True):
    """A command about one execution, named by the caller, on behalf of a token's principal."""

    context: RequestContext
    execution_id: str

    def own_execution_id(self) -> str:
        """The execution id, once it is known to be the token's own."""
        if self.execution_id != self.context.principal.execution_id:
            raise ExecutionMismatchError(
                f"this token opens execution {self.context.principal.execution_id!r}, "
                f"not {self.execution_id!r}"
            )
        return self.execution_id
