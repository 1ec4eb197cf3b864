from __future__ import annotations

import sqlite3

import msgspec

from adapters.sqlite.store import SqliteStore, decode_json, decode_time, encode_json, encode_time
from application.ports import ToolCallLog
from domain.model import ToolCall, ToolCallRecord, ToolResult

_RESULT = msgspec.json.Decoder(ToolResult)


class SqliteToolCallLog(ToolCallLog):
    """The tool actions run for each execution, in the local store."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def record(self, record: ToolCallRecord) -> None:
        call = record.call
        row = (
            call.execution_id,
            call.user_id,
            call.tool,
            call.action,
            encode_json(call.params),
            msgspec.json.encode(record.result).decode(),
            call.request_id,
            encode_time(record.at),
        )

        def insert(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO tool_calls (execution_id, user_id, tool, action, params, result,"
                " request_id, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

        await self._store.write(insert)

    async def calls(self, execution_id: str) -> list[ToolCallRecord]:
        rows = await self._store.read(
            lambda c: c.execute(
                "SELECT user_id, tool, action, params, result, request_id, at FROM tool_calls"
                " WHERE execution_id = ? ORDER BY seq",
                (execution_id,),
            ).fetchall()
        )
        return [
            ToolCallRecord(
                call=ToolCall(
                    execution_id=execution_id,
                    user_id=user_id,
                    tool=tool,
                    action=action,
                    params=decode_json(params),
                    request_id=request_id,
                ),
                result=_RESULT.decode(result),
                at=decode_time(at),
            )
            for user_id, tool, action, params, result, request_id, at in rows
        ]
