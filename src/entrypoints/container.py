"""The composition root: which adapter stands behind each port, chosen from the settings."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator

from adapters.sqlite.audit import SqliteAuditLog
from adapters.sqlite.executions import SqliteExecutionRepository
from adapters.sqlite.store import SqliteHealthProbe, SqliteStore
from adapters.sqlite.tool_calls import SqliteToolCallLog
from adapters.sqlite.variables import SqliteVariableRepository
from dependency_injector import containers, providers

from adapters.auth.jwt import JwtTokenCodec, SigningKey
from adapters.clock import SystemClock
from adapters.memory.health import StaticHealthProbe
from adapters.memory.rate_limiter import InProcessRateLimiter
from adapters.memory.tools import RecordingToolGateway
from adapters.tools.logged import LoggedToolGateway
from application.audit import AuditRecorder
from application.create_execution import CreateExecution
from application.delete_variable import DeleteVariable
from application.get_context import GetContext
from application.get_input import GetInput
from application.get_variable import GetVariable
from application.list_variables import ListVariables
from application.report_execution import ReportExecution
from application.run_tool_action import RunToolAction
from application.set_condition import SetCondition
from application.set_output import SetOutput
from application.set_variable import SetVariable
from entrypoints.settings import Settings

AUDIT_KEY_LABEL = b"cronium-runtime audit key"


def signing_keys(settings: Settings) -> list[SigningKey]:
    keys = [SigningKey(kid=key.kid, secret=key.secret) for key in settings.auth.signing_keys]
    if not keys:
        raise ValueError("no JWT secret is configured (auth.jwtSecret / JWT_SECRET)")
    return keys


def audit_key(settings: Settings) -> bytes:
    """`audit.key`, else derived from the first JWT secret so that replicas agree unasked."""
    if settings.audit.key:
        return settings.audit.key.encode()
    first_secret = signing_keys(settings)[0].secret.encode()
    return hmac.new(first_secret, AUDIT_KEY_LABEL, hashlib.sha256).digest()


def system_of_record(settings: Settings) -> str:
    # Refused rather than ignored: a service that silently kept its state in-process while
    # the operator configured shared state would break the guarantees of SPEC section 7.
    if settings.backend.url:
        raise ValueError(
            "backend.url is set, but this build cannot talk to a Cronium backend yet; "
            "unset BACKEND_URL to run on the embedded store"
        )
    if settings.cache.url:
        raise ValueError(
            "cache.url is set, but this build cannot use Valkey yet; "
            "unset VALKEY_URL to keep the cache and rate limits in the process"
        )
    return "embedded"


async def store_lifecycle(store: SqliteStore) -> AsyncIterator[SqliteStore]:
    """Opens the local store with the container's resources and closes it with them."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Singleton(SystemClock)
    mode = providers.Callable(system_of_record, settings)

    # The local store: the system of record in embedded mode, and the service's own durable
    # state (audit trail, idempotency, revocations) whenever Valkey is absent.
    store = providers.Singleton(SqliteStore, settings.provided.store.path)
    store_resource = providers.Resource(store_lifecycle, store)

    execution_repository = providers.Selector(
        mode, embedded=providers.Singleton(SqliteExecutionRepository, store, clock=clock)
    )
    execution_catalog = providers.Selector(mode, embedded=execution_repository)
    variable_repository = providers.Selector(
        mode, embedded=providers.Singleton(SqliteVariableRepository, store)
    )
    tool_call_log = providers.Singleton(SqliteToolCallLog, store)
    # Built-in tools arrive with the backend issue; until then every action is accepted,
    # sent nowhere, and kept in the store.
    tool_gateway = providers.Singleton(
        LoggedToolGateway,
        inner=providers.Singleton(RecordingToolGateway),
        log=tool_call_log,
        clock=clock,
    )
    audit_log = providers.Singleton(SqliteAuditLog, store)
    audit_trail = audit_log
    audit = providers.Singleton(
        AuditRecorder, log=audit_log, clock=clock, key=providers.Callable(audit_key, settings)
    )

    token_codec = providers.Singleton(
        JwtTokenCodec,
        keys=providers.Callable(signing_keys, settings),
        leeway=settings.provided.auth.leeway,
        issuers=providers.Callable(lambda auth: auth.issuers or (), settings.provided.auth),
        audience=providers.Callable(
            lambda auth: (auth.audience,) if auth.audience else (), settings.provided.auth
        ),
    )
    rate_limiter = providers.Singleton(
        InProcessRateLimiter, limit_per_minute=settings.provided.security.rate_limit_per_min
    )
    health_probes = providers.List(
        providers.Singleton(SqliteHealthProbe, store, name="store"),
        providers.Singleton(StaticHealthProbe, "valkey", "disabled"),
        # The audit trail is the store's until the audit issue adds its outbox and sinks.
        providers.Singleton(SqliteHealthProbe, store, name="audit"),
    )

    get_input = providers.Factory(GetInput, executions=execution_repository, audit=audit)
    set_output = providers.Factory(
        SetOutput, executions=execution_repository, clock=clock, audit=audit
    )
    get_variable = providers.Factory(GetVariable, variables=variable_repository, audit=audit)
    set_variable = providers.Factory(
        SetVariable, variables=variable_repository, clock=clock, audit=audit
    )
    delete_variable = providers.Factory(DeleteVariable, variables=variable_repository, audit=audit)
    list_variables = providers.Factory(ListVariables, variables=variable_repository, audit=audit)
    set_condition = providers.Factory(
        SetCondition, executions=execution_repository, clock=clock, audit=audit
    )
    get_context = providers.Factory(GetContext, executions=execution_repository, audit=audit)
    run_tool_action = providers.Factory(RunToolAction, tools=tool_gateway, audit=audit)
    create_execution = providers.Factory(CreateExecution, catalog=execution_catalog, clock=clock)
    report_execution = providers.Factory(
        ReportExecution,
        catalog=execution_catalog,
        variables=variable_repository,
        tool_calls=tool_call_log,
        audit=audit_trail,
    )


ADAPTERS = (
    "execution_repository",
    "variable_repository",
    "tool_gateway",
    "audit",
    "token_codec",
    "rate_limiter",
    "health_probes",
)
USE_CASES = (
    "get_input",
    "set_output",
    "get_variable",
    "set_variable",
    "delete_variable",
    "list_variables",
    "set_condition",
    "get_context",
    "run_tool_action",
)
