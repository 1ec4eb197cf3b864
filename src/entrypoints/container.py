"""The composition root: which adapter stands behind each port, chosen from the settings."""

from __future__ import annotations

import hashlib
import hmac

from dependency_injector import containers, providers

from adapters.auth.jwt import JwtTokenCodec, SigningKey
from adapters.clock import SystemClock
from adapters.memory.audit import InMemoryAuditLog
from adapters.memory.executions import InMemoryExecutionRepository
from adapters.memory.health import StaticHealthProbe
from adapters.memory.rate_limiter import InProcessRateLimiter
from adapters.memory.tools import RecordingToolGateway
from adapters.memory.variables import InMemoryVariableRepository
from application.audit import AuditRecorder
from application.delete_variable import DeleteVariable
from application.get_context import GetContext
from application.get_input import GetInput
from application.get_variable import GetVariable
from application.list_variables import ListVariables
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


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Singleton(SystemClock)
    mode = providers.Callable(system_of_record, settings)

    execution_repository = providers.Selector(
        mode, embedded=providers.Singleton(InMemoryExecutionRepository, clock=clock)
    )
    variable_repository = providers.Selector(
        mode, embedded=providers.Singleton(InMemoryVariableRepository)
    )
    tool_gateway = providers.Singleton(RecordingToolGateway)
    audit_log = providers.Singleton(InMemoryAuditLog)
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
        providers.Singleton(StaticHealthProbe, "store"),
        providers.Singleton(StaticHealthProbe, "valkey", "disabled"),
        providers.Singleton(StaticHealthProbe, "audit"),
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
