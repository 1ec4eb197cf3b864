"""The HTTP entrypoint: `create_app` builds the Litestar application around a container."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.exceptions import HTTPException

# Private in Litestar 2 (whose public alias is deprecated): only to recognise the middleware
# that `cors_config` puts around the app, which `CrossOriginOnly` wraps.
from litestar.middleware._internal.cors import CORSMiddleware
from loguru import logger

from adapters.memory.revocations import CachedRevocationList
from domain.errors import DomainError
from entrypoints.container import ADAPTERS, USE_CASES, Container, counting, counting_each
from entrypoints.dev_secret import with_development_secret
from entrypoints.http.auth import ScriptAuthMiddleware
from entrypoints.http.body import make_body_check
from entrypoints.http.errors import (
    handle_domain_error,
    handle_http_exception,
    handle_unexpected_error,
)
from entrypoints.http.health import health, metrics, readiness
from entrypoints.http.idempotency import IdempotencyMiddleware
from entrypoints.http.internal import INTERNAL_ROUTES, InternalAuthMiddleware
from entrypoints.http.methods import OptionsAnswer
from entrypoints.http.observability import (
    AnswerCutOff,
    ObservabilityMiddleware,
    scrape_registry,
)
from entrypoints.http.openapi import openapi_config
from entrypoints.http.routes import ExecutionController, execute_tool_action
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings, load_settings, weak_secrets

if TYPE_CHECKING:
    from litestar.types import Receive, Scope, Send


def create_app(settings: Settings | None = None, container: Container | None = None) -> Litestar:
    if container is None:
        if settings is None:
            # Built by a server worker from nothing but the environment: it configures its
            # own logging, as `serve` does for a single process.
            settings = load_settings()
            configure_logging(settings.logging.level, settings.logging.format)
        settings, _ = with_development_secret(settings)
        container = Container(settings=settings)
    settings = container.settings()
    # Resolve the adapters now: a configuration the container cannot satisfy stops start-up
    # with its message instead of failing every request.
    for adapter in ADAPTERS:
        getattr(container, adapter)()
    registry = container.metrics_registry()
    container.build_info()
    for weak in weak_secrets(settings.auth):
        logger.warning(
            "auth.allowWeakSecret accepts a weak JWT secret: {weak}, shorter than 32; a short"
            " secret can be guessed offline from one token, so use 32 random bytes or more",
            weak=weak,
        )

    # App-level, not on a Router: Litestar deep-copies a Router when it is registered, and
    # the copy would hold its own rate limiter and audit trail, apart from the container's.
    on_auth_failure = counting(container.auth_failures())
    script_auth = ScriptAuthMiddleware(
        verifier=container.token_verifier(),
        revocations=container.revocations(),
        limiter=container.rate_limiter(),
        audit=container.audit(),
        refusals=container.rate_limited_audit(),
        on_failure=on_auth_failure,
        on_rate_limited=counting_each(container.rate_limit_rejections()),
    )
    # After authentication: the key is scoped to the token's execution.
    idempotency = IdempotencyMiddleware(container.idempotency_store(), settings.idempotency.ttl)
    route_handlers: list[Any] = [
        ExecutionController,
        execute_tool_action,
        health,
        readiness,
        metrics,
    ]
    middleware: list[Any] = [script_auth, idempotency]
    # Without an internal token the internal routes do not exist: 404 like any unknown path.
    if settings.auth.internal_token:
        route_handlers += INTERNAL_ROUTES
        middleware.append(
            InternalAuthMiddleware(
                settings.auth.internal_token, audit=container.audit(), on_failure=on_auth_failure
            )
        )
    app = Litestar(
        route_handlers=route_handlers,
        middleware=middleware,
        dependencies={
            "health_probes": _provide(container.health_probes),
            # Not cached: with several workers each scrape reads the files afresh.
            "metrics_registry": Provide(scrape_registry(registry), sync_to_thread=False),
            **{name: _provide(getattr(container, name)) for name in USE_CASES},
        },
        before_request=make_body_check(settings.server.max_json_depth),
        exception_handlers={
            DomainError: handle_domain_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected_error,
        },
        request_max_body_size=settings.server.max_body_size,
        cors_config=_cors(settings),
        openapi_config=openapi_config(),
        lifespan=[_lifespan(container)],
        logging_config=None,
        debug=False,
    )
    app.state.container = container
    app.state.metrics_registry = registry
    handler = app.asgi_handler
    if isinstance(handler, CORSMiddleware):
        handler = CrossOriginOnly(handler)
    # See ObservabilityMiddleware for why it wraps the handler and is not in `middleware`.
    answered = OptionsAnswer(handler, app, cors=settings.security.enable_cors)
    app.asgi_handler = ObservabilityMiddleware(AnswerCutOff(answered), container.http_metrics())
    return app


class CrossOriginOnly:
    """Litestar's CORS middleware, entered only by the requests that carry an `Origin`.

    For any other request it does nothing but build the request's header multidict to find
    none (about 5 µs) and pass it on; a look through the raw headers costs a tenth of that.
    """

    def __init__(self, cors: CORSMiddleware) -> None:
        self._cors = cors
        self._app = cors.app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, _ in scope["headers"]:
            if name == b"origin":
                await self._cors(scope, receive, send)
                return
        await self._app(scope, receive, send)


def _provide(provider: Callable[[], Any]) -> Provide:
    def dependency() -> Any:
        return provider()

    return Provide(dependency, sync_to_thread=False)


def _cors(settings: Settings) -> CORSConfig | None:
    security = settings.security
    if not security.enable_cors:
        return None
    return CORSConfig(
        allow_origins=list(security.allowed_origins),
        allow_methods=list(security.allowed_methods),  # type: ignore[arg-type]
        allow_headers=list(security.allowed_headers),
        expose_headers=["X-Request-ID", "RateLimit", "RateLimit-Policy", "Retry-After"],
    )


def _lifespan(container: Container) -> Callable[[Litestar], Any]:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if (opening := container.init_resources()) is not None:
            await opening
        # Read before serving, so that no revoked token passes while the list loads.
        revocations = container.revocations()
        if isinstance(revocations, CachedRevocationList):
            await revocations.start()
        app.state.serving = True
        try:
            yield
        finally:
            app.state.serving = False
            if isinstance(revocations, CachedRevocationList):
                await revocations.aclose()
            if (closing := container.shutdown_resources()) is not None:
                await closing

    return lifespan
