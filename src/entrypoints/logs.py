"""Loguru as the one logger: JSON lines or text on stderr, the standard library routed in."""

from __future__ import annotations

import logging
import sys

from loguru import logger

LEVELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR"}


class _InterceptHandler(logging.Handler):
    """Sends the standard library's records (uvicorn, asyncio, litestar) through loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def configure_logging(level: str, fmt: str) -> None:
    logger.remove()
    if fmt == "json":
        logger.add(sys.stderr, level=LEVELS[level], serialize=True, backtrace=False, diagnose=False)
    else:
        logger.add(
            sys.stderr,
            level=LEVELS[level],
            format="{time:YYYY-MM-DDTHH:mm:ss.SSS!UTC}Z {level: <7} {message} {extra}",
            backtrace=False,
            diagnose=False,
        )
    logging.basicConfig(
        handlers=[_InterceptHandler()], level=logging.getLevelName(LEVELS[level]), force=True
    )
    for name in ("uvicorn", "uvicorn.error", "litestar"):
        logging.getLogger(name).handlers = [_InterceptHandler()]
        logging.getLogger(name).propagate = False
    # Every request has its own access line (entrypoints.http.observability).
    logging.getLogger("uvicorn.access").disabled = True
