"""Loguru as the one logger: JSON lines or text on stderr, the standard library routed in."""

from __future__ import annotations

import logging
import sys
import traceback
from typing import TYPE_CHECKING, Any

import msgspec
from loguru import logger

if TYPE_CHECKING:
    from loguru import Message

LEVELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR"}
_encoder = msgspec.json.Encoder(enc_hook=str)  # paths and the like, as text


class _InterceptHandler(logging.Handler):
    """Sends the standard library's records (uvicorn, asyncio, litestar) through loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info).bind(logger=record.name).log(
            level, record.getMessage()
        )


def _json_line(message: Message) -> None:
    """One compact JSON object per line: time, level, message, then the bound fields."""
    record = message.record
    line: dict[str, Any] = {
        "time": record["time"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "level": record["level"].name.lower(),
        "message": record["message"],
    }
    line.setdefault("logger", record["name"])
    line.update(record["extra"])
    if exception := record["exception"]:
        line["exception"] = "".join(
            traceback.format_exception(exception.type, exception.value, exception.traceback)
        )
    sys.stderr.write(_encoder.encode(line).decode() + "\n")


def _text_format(record: Any) -> str:
    """`time level message key=value ...`; the braces escaped for loguru's own formatting."""
    fields = " ".join(f"{key}={value}" for key, value in record["extra"].items())
    fields = fields.replace("{", "{{").replace("}", "}}")
    return "{time:YYYY-MM-DDTHH:mm:ss.SSS!UTC}Z {level: <7} {message} " + fields + "\n{exception}"


def configure_logging(level: str, fmt: str) -> None:
    logger.remove()
    if fmt == "json":
        logger.add(_json_line, level=LEVELS[level], format="{message}")
    else:
        logger.add(
            sys.stderr, level=LEVELS[level], format=_text_format, backtrace=False, diagnose=False
        )
    logging.basicConfig(handlers=[_InterceptHandler()], level=LEVELS[level], force=True)
    for name in ("uvicorn", "uvicorn.error", "litestar"):
        logging.getLogger(name).handlers = [_InterceptHandler()]
        logging.getLogger(name).propagate = False
    # Every request has its own access line (entrypoints.http.observability).
    logging.getLogger("uvicorn.access").disabled = True
