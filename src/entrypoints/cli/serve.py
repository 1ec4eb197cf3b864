"""`cronium-runtime serve`: the HTTP service under uvicorn."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import multiprocessing.connection
import os
import shlex
import signal
import socket
import ssl
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import msgspec
import uvicorn
from litestar import Litestar
from loguru import logger

from domain.model import Principal
from entrypoints.cli.http_protocol import MAX_REQUEST_HEAD, BoundedHttpToolsProtocol  # noqa: F401
from entrypoints.cli.metrics_folder import mark_worker_dead, multiprocess_metrics
from entrypoints.dev_secret import with_development_secret
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings, load_settings

if TYPE_CHECKING:
    # Imported inside `serve`, once PROMETHEUS_MULTIPROC_DIR is exported: the container
    # and the app import prometheus-client, which reads the variable when it is imported.
    from entrypoints.container import Container

DEMO_EXECUTION = "demo"
APP_FACTORY = "entrypoints.http.app:create_app"
# MAX_REQUEST_HEAD, imported above, is named here too: the benchmark's bare app matches it.


def serve(workers: int | None = None) -> int:
    settings = load_settings()
    if workers is not None:
        settings = _with_workers(settings, workers)
    security = settings.security
    if security.enable_tls and security.tls_cert and security.tls_key:
        check_tls_files(security.tls_cert, security.tls_key)
    configure_logging(settings.logging.level, settings.logging.format)
    _check_writable(settings.store.path)
    with multiprocess_metrics(settings.metrics.multiprocess_dir, settings.server.workers) as folder:
        if folder is not None:
            logger.info(
                "metrics: each process keeps its own in {folder}; a scrape adds them up",
                folder=folder,
            )
        return _serve(settings, metrics_folder=folder)


def _serve(settings: Settings, *, metrics_folder: Path | None) -> int:
    from entrypoints.container import Container
    from entrypoints.http.app import create_app

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
    workers = server.workers
    # One worker runs the app built here; several each build their own from the same
    # settings (the environment and config file), which uvicorn's factory mode allows.
    app: Litestar | str = create_app(container=container) if workers == 1 else APP_FACTORY
    config = uvicorn.Config(
        app,
        factory=workers > 1,
        workers=workers,
        host=server.host,
        port=server.port,
        timeout_keep_alive=math.ceil(server.idle_timeout),
        # uvicorn hands this to asyncio.wait_for, which takes any number of seconds; int()
        # would turn a shutdownTimeout of 500ms into no time at all for requests in flight.
        timeout_graceful_shutdown=server.shutdown_timeout,  # type: ignore[arg-type]
        ssl_certfile=settings.security.tls_cert if settings.security.enable_tls else None,
        ssl_keyfile=settings.security.tls_key if settings.security.enable_tls else None,
        # httptools' parser, with the request head bounded to MAX_REQUEST_HEAD as h11 bounds
        # it (http_protocol.py says why); each worker process imports the class by name.
        http=BoundedHttpToolsProtocol,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )
    if workers == 1:
        DrainingServer(config, drain_delay=server.drain_delay).run()
        return 0
    return run_workers(config, drain_delay=server.drain_delay, metrics_folder=metrics_folder)


def run_workers(
    config: uvicorn.Config, *, drain_delay: float, metrics_folder: Path | None = None
) -> int:
    """Run `config.workers` server processes on one listening socket until told to stop.

    Our own small supervisor rather than uvicorn's, which builds a plain `uvicorn.Server` in
    each worker and so would skip the drain. SIGTERM and SIGINT go to every worker; each
    drains and stops. A worker that dies on its own stops the others and the exit status is
    1, so that the orchestrator restarts the whole process rather than run short-handed.
    The workers read the same environment and config file, and the development secret from
    the store folder.
    """
    context = multiprocessing.get_context("spawn")
    stopping = False
    with contextlib.closing(config.bind_socket()) as sock:
        workers = [
            context.Process(target=_worker, args=(config, drain_delay, sock), daemon=False)
            for _ in range(config.workers)
        ]

        def forward(sig: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True
            for worker in workers:
                if worker.is_alive() and worker.pid is not None:
                    os.kill(worker.pid, sig)

        reaped: set[int] = set()

        def reap() -> None:
            """Mark each worker that stopped as dead for the metrics, once."""
            for worker in workers:
                if worker.exitcode is None or worker.pid is None or worker.pid in reaped:
                    continue
                reaped.add(worker.pid)
                if metrics_folder is not None:
                    mark_worker_dead(metrics_folder, worker.pid)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for worker in workers:
                worker.start()
            # Each worker holds the listening socket now. This process's copy would keep it
            # listening after the workers close theirs at shutdown: connections would queue
            # and never be answered, rather than be refused.
            sock.close()
            while any(worker.is_alive() for worker in workers):
                multiprocessing.connection.wait([worker.sentinel for worker in workers], 0.5)
                reap()
                if not stopping and any(worker.exitcode is not None for worker in workers):
                    logger.error("a worker stopped on its own; stopping the others")
                    forward(signal.SIGTERM, None)
            reap()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0 if stopping and all(worker.exitcode == 0 for worker in workers) else 1


def _worker(config: uvicorn.Config, drain_delay: float, sock: socket.socket) -> None:
    DrainingServer(config, drain_delay=drain_delay).run(sockets=[sock])


class DrainingServer(uvicorn.Server):
    """Stops on SIGTERM the way SPEC section 6 asks, and then exits 0.

    Readiness answers 503 for `drain_delay` while requests are still served, so that load
    balancers stop sending new ones; then uvicorn closes the listener and gives in-flight
    requests `shutdown_timeout`. uvicorn itself would close at once and, after a clean
    shutdown, raise SIGTERM again so the process dies of it: a stop that was asked for is
    not a failure. A second SIGTERM while draining stops at once.
    """

    def __init__(self, config: uvicorn.Config, *, drain_delay: float) -> None:
        super().__init__(config)
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
        if (app := self._litestar_app()) is not None:
            app.state.serving = False
        self._draining_since = time.monotonic()

    def _litestar_app(self) -> Litestar | None:
        """The app uvicorn loaded, under the middleware uvicorn wraps around it."""
        app = getattr(self.config, "loaded_app", None)
        while app is not None and not isinstance(app, Litestar):
            app = getattr(app, "app", None)
        return app

    async def on_tick(self, counter: int) -> bool:
        should_exit = await super().on_tick(counter)
        if self._draining_since is None:
            return should_exit
        if not self._drain_announced:
            self._drain_announced = True
            logger.info("SIGTERM: draining for {delay:g} s, then stopping", delay=self._drain_delay)
        return should_exit or time.monotonic() - self._draining_since >= self._drain_delay


def check_tls_files(cert: Path, key: Path) -> None:
    """Stop start-up with one line naming the setting when the certificate or the key cannot
    be read or used, rather than with the bare `[SSL] PEM lib` uvicorn would end on."""
    for setting, path in (
        ("security.tlsCert (TLS_CERT)", cert),
        ("security.tlsKey (TLS_KEY)", key),
    ):
        try:
            with path.open("rb"):
                pass
        except OSError as error:
            raise ValueError(f"{setting}: {path} cannot be read: {error.strerror}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        raise ValueError(
            f"security.tlsCert (TLS_CERT) {cert} and security.tlsKey (TLS_KEY) {key}:"
            f" are not a PEM certificate and its private key ({error.reason or error})"
        ) from None


def _check_writable(folder: Path) -> None:
    """Refuse to start, in one line naming the setting, when the store folder cannot be
    written (a read-only root without the data volume, say). Found later, the same fault
    would surface inside the app's start-up as a traceback and uvicorn's exit status 3."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".cronium-runtime-write-check-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(
            f"store.path / STORE_PATH {str(folder)!r} cannot be written ({reason}); "
            "point it at a writable folder (the data volume)"
        ) from None


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
