"""The HTTP entrypoint: `create_app` builds the Litestar application around a container."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from domain.errors import DomainError
from entrypoints.container import ADAPTERS, USE_CASES, Container
from entrypoints.dev_secret import with_development_secret
from entrypoints.http.auth import ScriptAuthMiddleware, provide_request_context
from entrypoints.http.body import make_body_check
from entrypoints.http.errors import (
    handle_domain_error,
    handle_http_exception,
    handle_unexpected_error,
)
from entrypoints.http.health import health, metrics, readiness
from entrypoints.http.idempotency import IdempotencyMiddleware
from entrypoints.http.observability import ObservabilityMiddleware
from entrypoints.http.routes import ExecutionController, execute_tool_action, variable_key
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings, load_settings
from entrypoints.version import VERSION


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

    # App-level, not on a Router: Litestar deep-copies a Router when it is registered, and
    # the copy would hold its own rate limiter and audit trail, apart from the container's.
    script_auth = ScriptAuthMiddleware(
        verifier=container.token_codec(),
        limiter=container.rate_limiter(),
        audit=container.audit(),
    )
    # After authentication: the key is scoped to the token's execution.
    idempotency = IdempotencyMiddleware(container.idempotency_store(), settings.idempotency.ttl)
    app = Litestar(
        route_handlers=[ExecutionController, execute_tool_action, health, readiness, metrics],
        middleware=[script_auth, idempotency],
        dependencies={
            "context": Provide(provide_request_context, sync_to_thread=False),
            "variable_key": Provide(variable_key, sync_to_thread=False),
            "health_probes": _provide(container.health_probes),
            "metrics_registry": Provide(lambda: registry, sync_to_thread=False, use_cache=True),
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
        openapi_config=OpenAPIConfig(
            title="Cronium Runtime API",
            version=VERSION,
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
        ),
        lifespan=[_lifespan(container)],
        logging_config=None,
        debug=False,
    )
    app.state.container = container
    app.state.metrics_registry = registry
    # See ObservabilityMiddleware for why it wraps the handler and is not in `middleware`.
    app.asgi_handler = ObservabilityMiddleware(app.asgi_handler, container.http_metrics())
    return app


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
        app.state.serving = True
        try:
            yield
        finally:
            app.state.serving = False
            if (closing := container.shutdown_resources()) is not None:
                await closing

    return lifespan
