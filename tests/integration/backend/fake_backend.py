"""A fake Cronium backend (SPEC section 5) on a loopback port, with in-memory state, a record
of every request it received, and switches for the faults the adapter must survive."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

HOST = "127.0.0.1"
TOKEN = "service-token"

# A factory of opened `HttpBackendClient`s bound to the fake (the `make_client` fixture).
ClientFactory = Callable[..., Any]

CONTEXT = {
    "executionId": "exec-1",
    "jobId": "job-1",
    "eventId": "event-1",
    "userId": "user-1",
    "metadata": {"input": {"n": 1}, "extra": [1, "two", None]},
    "event": {
        "id": "event-1",
        "name": "Nightly",
        "type": "PYTHON",
        "content": "print(1)",
        "runLocation": "LOCAL",
        "serverId": None,
    },
    "user": {"id": "user-1", "email": "a@example.com", "name": "Ada"},
}


@dataclass
class Received:
    method: str
    path: str  # the raw, still URL-encoded path
    route: str
    params: dict[str, str]  # the path's parameters, decoded once
    headers: dict[str, str]
    body: Any
    peer: tuple[str, int] | None


@dataclass
class Fault:
    kind: str  # "status", "silent", "drop"
    times: int | None = None  # None: always
    status: int = 500


@dataclass
class FakeBackend:
    token: str = TOKEN
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    variables: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    conditions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    audit: list[Any] = field(default_factory=list)
    tool_reply: dict[str, Any] = field(
        default_factory=lambda: {"success": True, "data": {"sent": True}}
    )
    tool_status: int = 200
    received: list[Received] = field(default_factory=list)
    faults: dict[str, Fault] = field(default_factory=dict)
    refuse_token: bool = False
    old_backend: bool = False  # answers 405 to DELETE and list
    port: int = 0
    _runner: web.AppRunner | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    # Fault switches.

    def fail(self, route: str, times: int | None = None, status: int = 500) -> None:
        """Answer `route` with `status` ({"error": ...}) `times` times (None: always)."""
        self.faults[route] = Fault("status", times, status)

    def go_silent(self, route: str) -> None:
        """Accept `route`'s requests and never answer them."""
        self.faults[route] = Fault("silent")

    def drop(self, route: str) -> None:
        """Close the connection after reading `route`'s request."""
        self.faults[route] = Fault("drop")

    def heal(self) -> None:
        self.faults.clear()

    def of(self, route: str) -> list[Received]:
        return [request for request in self.received if request.route == route]

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # Lifecycle.

    async def start(self, port: int | None = None) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=0.1
        )
        await self._runner.setup()
        self.port = port or _free_port()
        site = web.TCPSite(self._runner, HOST, self.port)
        await site.start()

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._release = asyncio.Event()

    # The routes of SPEC section 5.

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.split("?", 1)[0]
        segments = raw_path.split("/")[1:]
        route, params = _route(request.method, segments)
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = "<not JSON>"
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.received.append(
            Received(
                method=request.method,
                path=raw_path,
                route=route,
                params=params,
                headers=dict(request.headers),
                body=body,
                peer=tuple(peer) if peer else None,
            )
        )
        if route == "unknown":
            return _error(404, "Not found")
        if request.headers.get("Authorization") != f"Bearer {self.token}" or self.refuse_token:
            return _error(401, "Unauthorized")
        fault = self.faults.get(route)
        if fault is not None:
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self.faults[route]
            if fault.kind == "silent":
                await self._release.wait()
                return _error(500, "released")
            if fault.kind == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=200)
            return _error(fault.status, "Internal server error")
        handler = getattr(self, f"_on_{route}")
        return await handler(params, body)  # type: ignore[no-any-return]

    async def _on_context(self, params: dict[str, str], body: Any) -> web.Response:
        context = self.contexts.get(params["executionId"])
        if context is None:
            return _error(404, "Execution not found")
        return web.json_response(context)

    async def _on_output(self, params: dict[str, str], body: Any) -> web.Response:
        if params["executionId"] not in self.contexts:
            return _error(404, "Execution not found")
        self.outputs.setdefault(params["executionId"], []).append(body)
        return web.json_response({"success": True})

    async def _on_condition(self, params: dict[str, str], body: Any) -> web.Response:
        if params["executionId"] not in self.contexts:
            return _error(404, "Execution not found")
        self.conditions.setdefault(params["executionId"], []).append(body)
        return web.json_response({"success": True})

    async def _on_variable_get(self, params: dict[str, str], body: Any) -> web.Response:
        variable = self.variables.get((params["userId"], params["key"]))
        if variable is None:
            return _error(404, "Variable not found")
        return web.json_response({"key": params["key"], **variable})

    async def _on_variable_put(self, params: dict[str, str], body: Any) -> web.Response:
        if not isinstance(body, dict) or "value" not in body:
            return _error(400, "value is required")
        self.variables[(params["userId"], params["key"])] = {
            "value": body["value"],
            "updatedAt": "2026-11-28T19:04:05.123Z",
        }
        return web.json_response({"success": True})

    async def _on_variable_delete(self, params: dict[str, str], body: Any) -> web.Response:
        if self.old_backend:
            return _error(405, "Method not allowed")
        if self.variables.pop((params["userId"], params["key"]), None) is None:
            return _error(404, "Variable not found")
        return web.json_response({"success": True})

    async def _on_variable_list(self, params: dict[str, str], body: Any) -> web.Response:
        if self.old_backend:
            return _error(405, "Method not allowed")
        return web.json_response(
            [
                {"key": key, "updatedAt": variable["updatedAt"]}
                for (user_id, key), variable in self.variables.items()
                if user_id == params["userId"]
            ]
        )

    async def _on_tool(self, params: dict[str, str], body: Any) -> web.Response:
        if self.tool_status != 200:
            return _error(self.tool_status, str(self.tool_reply.get("error", "refused")))
        return web.json_response(self.tool_reply)

    async def _on_audit(self, params: dict[str, str], body: Any) -> web.Response:
        self.audit.append(body)
        return web.json_response({"success": True})


def _route(method: str, segments: list[str]) -> tuple[str, dict[str, str]]:  # noqa: PLR0911
    """The route and its decoded parameters; "unknown" for anything not in SPEC section 5."""
    decoded = [unquote(segment, errors="strict") for segment in segments]
    if segments[:2] != ["api", "internal"]:
        return "unknown", {}
    rest = segments[2:]
    values = decoded[2:]
    if len(rest) == 3 and rest[0] == "executions":
        leaf = {("GET", "context"), ("POST", "output"), ("POST", "condition")}
        if (method, rest[2]) in leaf:
            return rest[2], {"executionId": values[1]}
    if len(rest) == 3 and rest[0] == "variables":
        name = {"GET": "variable_get", "PUT": "variable_put", "DELETE": "variable_delete"}
        if method in name:
            return name[method], {"userId": values[1], "key": values[2]}
    if len(rest) == 2 and rest[0] == "variables" and method == "GET":
        return "variable_list", {"userId": values[1]}
    if rest == ["tools", "execute"] and method == "POST":
        return "tool", {}
    if rest == ["audit"] and method == "POST":
        return "audit", {}
    return "unknown", {}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])
