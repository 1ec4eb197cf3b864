"""`cronium-runtime serve`: the HTTP service under uvicorn."""

from __future__ import annotations

import math
import shlex
import signal
import time
from types import FrameType

import msgspec
import uvicorn
from litestar import Litestar
from loguru import logger

from domain.model import Principal
from entrypoints.container import Container
from entrypoints.dev_secret import with_development_secret
from entrypoints.http.app import create_app
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings, load_settings

DEMO_EXECUTION = "demo"


def serve(workers: int | None = None) -> int:
    settings = load_settings()
    if workers is not None:
        settings = _with_workers(settings, workers)
    configure_logging(settings.logging.level, settings.logging.format)
    settings, generated = with_development_secret(settings)
    container = Container(settings=settings)
    if generated:
        logger.warning(
            "no JWT secret is configured: using the development secret kept in {path}; "
            "set JWT_SECRET for anything but local use",
            path=settings.store.path,
        )
        print(_demo_line(settings, container), flush=True)
    server = settings.server
    app = create_app(container=container)
    config = uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        timeout_keep_alive=math.ceil(server.idle_timeout),
        timeout_graceful_shutdown=int(server.shutdown_timeout),
        ssl_certfile=settings.security.tls_cert if settings.security.enable_tls else None,
        ssl_keyfile=settings.security.tls_key if settings.security.enable_tls else None,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )
    DrainingServer(config, app, drain_delay=server.drain_delay).run()
    return 0


class DrainingServer(uvicorn.Server):
    """Stops on SIGTERM the way SPEC section 6 asks, and then exits 0.

    Readiness answers 503 for `drain_delay` while requests are still served, so that load
    balancers stop sending new ones; then uvicorn closes the listener and gives in-flight
    requests `shutdown_timeout`. uvicorn itself would close at once and, after a clean
    shutdown, raise SIGTERM again so the process dies of it: a stop that was asked for is
    not a failure. A second SIGTERM while draining stops at once.
    """

    def __init__(self, config: uvicorn.Config, app: Litestar, *, drain_delay: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_delay = drain_delay
        self._draining_since: float | None = None
        self._drain_announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM:
            super().handle_exit(sig, frame)
            return
        if self._draining_since is not None:
            self.should_exit = True
            return
        # Nothing but flags here: a signal handler runs between any two bytecodes, even
        # inside the logger, which would refuse a nested call and lose the signal.
        self._app.state.serving = False
        self._draining_since = time.monotonic()

    async def on_tick(self, counter: int) -> bool:
        should_exit = await super().on_tick(counter)
        if self._draining_since is None:
            return should_exit
        if not self._drain_announced:
            self._drain_announced = True
            logger.info("SIGTERM: draining for {delay:g} s, then stopping", delay=self._drain_delay)
        return should_exit or time.monotonic() - self._draining_since >= self._drain_delay


def _with_workers(settings: Settings, workers: int) -> Settings:
    if workers > 1 and not settings.uses_valkey:
        raise ValueError(
            f"--workers {workers}: without Valkey (cache.url / VALKEY_URL) exactly one process "
            "may serve, since the cache, rate limits and locks live in it"
        )
    return msgspec.structs.replace(
        settings, server=msgspec.structs.replace(settings.server, workers=workers)
    )


def _demo_line(settings: Settings, container: Container) -> str:
    token = container.token_codec().issue(
        Principal(execution_id=DEMO_EXECUTION, user_id=settings.embedded.user_id),
        settings.auth.token_expiration,
    )
    scheme = "https" if settings.security.enable_tls else "http"
    host = "127.0.0.1" if settings.server.host in {"0.0.0.0", "::", ""} else settings.server.host  # noqa: S104
    url = f"{scheme}://{host}:{settings.server.port}/executions/{DEMO_EXECUTION}/variables"
    header = f"Authorization: Bearer {token}"
    return f"Try it: curl -s -H {shlex.quote(header)} {url}"
