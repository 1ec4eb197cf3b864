"""The built-in tools' tests: fake far ends on loopback (see `tool_fakes.py`)."""

from __future__ import annotations

from tool_fakes import http_tool, open_gateway, smtp_sink

__all__ = ["http_tool", "open_gateway", "smtp_sink"]
