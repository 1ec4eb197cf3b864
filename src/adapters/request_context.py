"""The request being served, for adapters that pass its id on (the backend's X-Request-ID).

A context variable set by the HTTP entrypoint for each request: the ports stay free of
transport details, and each asyncio task sees its own request's id.
"""

from __future__ import annotations

from contextvars import ContextVar

CURRENT_REQUEST_ID: ContextVar[str | None] = ContextVar("cronium_request_id", default=None)
