"""The framework ceiling: a bare Litestar app with the service's route shapes, answering
constant JSON, under uvicorn with the server settings `cronium-runtime serve` uses.

    python -m bench.bare_app --port 8090 [--http bounded|httptools|h11] [--workers N]

The handlers take the same path parameters and decode the same request bodies into msgspec
Structs, so what the service costs beyond this is its own work: authentication, the rate
limit, Valkey and the backend, audit, logging and metrics. Nothing from the service is
imported but the server's protocol (`entrypoints.cli.http_protocol`, which imports only
uvicorn and httptools): importing `entrypoints.cli.serve` would load the whole service and
inflate this app's start time and memory, which are the ceiling for the service's.
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
import uvicorn
from litestar import Litestar, get, post, put

# `bounded` is the protocol `serve` uses: uvicorn's httptools with a request-head bound.
PROTOCOLS = {
    "bounded": "entrypoints.cli.http_protocol:BoundedHttpToolsProtocol",
    "httptools": "httptools",
    "h11": "h11",
}
# h11 bounds the head itself; the same bound as the service's.
H11_MAX_REQUEST_HEAD = 64 * 1024
# `server.idleTimeout` and `server.shutdownTimeout` defaults, as `serve` passes them.
KEEP_ALIVE_S = 120
SHUTDOWN_TIMEOUT_S = 25

HEALTH = {"status": "healthy", "time": "2026-11-28T19:04:05.123Z", "version": "0.1.0"}
INPUT = {"success": True, "data": {"name": "bench", "items": [1, 2, 3], "nested": {"a": "b"}}}
VARIABLE = {
    "success": True,
    "data": {
        "key": "settings",
        "value": {"retries": 3, "mode": "fast", "targets": ["a", "b"]},
        "updatedAt": "2026-11-28T19:04:05.123Z",
    },
}
ACK = {"success": True}


class VariableBody(msgspec.Struct, kw_only=True):
    value: Any


class OutputBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    data: Any


@get("/health")
async def health() -> dict[str, Any]:
    return HEALTH


@get("/executions/{execution_id:str}/input")
async def get_input(execution_id: str) -> dict[str, Any]:
    return INPUT


@get("/executions/{execution_id:str}/variables/{key:path}")
async def get_variable(execution_id: str, key: str) -> dict[str, Any]:
    return VARIABLE


@put("/executions/{execution_id:str}/variables/{key:path}")
async def set_variable(execution_id: str, key: str, data: VariableBody) -> dict[str, Any]:
    return VARIABLE


@post("/executions/{execution_id:str}/output", status_code=200)
async def set_output(execution_id: str, data: OutputBody) -> dict[str, Any]:
    return ACK


def create_app() -> Litestar:
    return Litestar(
        route_handlers=[health, get_input, get_variable, set_variable, set_output],
        logging_config=None,
        debug=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http", choices=list(PROTOCOLS), default="bounded")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # Mirrors the uvicorn.Config that `entrypoints.cli.serve.serve` builds.
    uvicorn.run(
        "bench.bare_app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        http=PROTOCOLS[args.http],
        h11_max_incomplete_event_size=H11_MAX_REQUEST_HEAD,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
