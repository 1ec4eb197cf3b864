"""The composition root: which adapter stands behind each port, chosen from the settings."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from dependency_injector import containers, providers
from loguru import logger
from prometheus_client import CollectorRegistry, Counter

from adapters.audit.health import AuditHealthProbe
from adapters.audit.log import DurableAuditLog
from adapters.audit.metrics import AuditMetrics
from adapters.audit.sinks.backend import BackendAuditSink
from adapters.audit.sinks.file import FileAuditSink
from adapters.audit.sinks.stdout import StdoutAuditSink
from adapters.audit.sinks.store import SqliteAuditSink
from adapters.audit.spool import FileAuditSpool
from adapters.auth.cache import CachedTokenVerifier
from adapters.auth.jwt import JwtTokenCodec, SigningKey
from adapters.backend_http.client import HttpBackendClient
from adapters.backend_http.repositories import (
    BackendExecutionRepository,
    BackendHealthProbe,
    BackendToolGateway,
    BackendVariableRepository,
)
from adapters.clock import SystemClock
from adapters.memory.execution_cache import InProcessExecutionCache
from adapters.memory.health import StaticHealthProbe
from adapters.memory.rate_limiter import InProcessRateLimiter
from adapters.memory.refusal_tally import InMemoryRefusalTally
from adapters.memory.revocations import CachedRevocationList
from adapters.sqlite.audit_outbox import SqliteAuditDeadLetters, SqliteAuditOutbox
from adapters.sqlite.executions import SqliteExecutionRepository
from adapters.sqlite.idempotency import SqliteIdempotencyStore
from adapters.sqlite.revocations import SqliteRevocationList
from adapters.sqlite.store import SqliteHealthProbe, SqliteStore
from adapters.sqlite.tool_calls import SqliteToolCallLog
from adapters.sqlite.variables import SqliteVariableRepository
from adapters.tools.builtin import BuiltinToolGateway, BuiltinToolsConfig, EmailConfig
from adapters.tools.logged import LoggedToolGateway
from adapters.valkey.audit_outbox import ValkeyAuditOutbox
from adapters.valkey.client import ValkeyClient, ValkeyOptions, create_client
from adapters.valkey.executions import ValkeyExecutionCache
from adapters.valkey.gate import ValkeyGate
from adapters.valkey.health import ValkeyHealthProbe
from adapters.valkey.idempotency import ValkeyIdempotencyStore
from adapters.valkey.rate_limiter import ValkeyRateLimiter
from adapters.valkey.refusal_tally import ValkeyRefusalTally
from adapters.valkey.revocations import ValkeyRevocationFeed
from adapters.valkey.variables import ValkeyVariableCache
from application.audit import AuditRecorder
from application.audit_shipping import AuditShipper
from application.create_execution import CreateExecution
from application.delete_variable import DeleteVariable
from application.get_context import GetContext
from application.get_input import GetInput
from application.get_variable import GetVariable
from application.list_variables import ListVariables
from application.ports import AuditSink, VariableRepository
from application.record_rate_limited import RecordRateLimited
from application.report_execution import ReportExecution
from application.revoke_execution import RevokeExecution
from application.run_tool_action import RunToolAction
from application.set_condition import SetCondition
from application.set_output import SetOutput
from application.set_variable import SetVariable
from entrypoints.audit_shipping import (
    audit_shipping,
    consumer_name,
    poll_interval,
    trim_interval,
)
from entrypoints.http.observability import HttpMetrics, build_info_gauge
from entrypoints.rate_limit_leases import returning_leases
from entrypoints.rate_limited_reports import rate_limited_reports
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
    """ "backend" with `backend.url` (the Cronium backend holds executions and variables),
    else "embedded" (the local store does)."""
    return "backend" if settings.backend.url else "embedded"


def builtin_tools_config(settings: Settings) -> BuiltinToolsConfig:
    tools = settings.tools
    email = tools.email
    return BuiltinToolsConfig(
        webhook_url=tools.webhook.url,
        slack_webhook_url=tools.slack.webhook_url,
        discord_webhook_url=tools.discord.webhook_url,
        email=EmailConfig(
            host=email.host,
            port=email.port,
            username=email.username,
            password=email.password,
            from_address=email.from_address,
            starttls=email.starttls,
        )
        if email.host
        else None,
        timeout=tools.timeout,
        dry_run=tools.dry_run,
    )


async def opened(resource: Callable[[], _Opens], wanted: bool) -> AsyncIterator[None]:
    """Opens an adapter that holds a session (the backend client, the built-in tools) with
    the container's resources and closes it with them; takes the provider, so that nothing
    is built where it is not `wanted`."""
    if not wanted:
        yield None
        return
    adapter = resource()
    await adapter.open()
    try:
        yield None
    finally:
        await adapter.close()


def shared_state(settings: Settings) -> str:
    """Where cache, rate limits and locks live: "valkey" with `cache.url`, else "process"."""
    return "valkey" if settings.uses_valkey else "process"


def valkey_options(settings: Settings) -> ValkeyOptions:
    cache = settings.cache
    assert cache.url is not None
    return ValkeyOptions(
        url=cache.url,
        mode=cache.mode,
        password=cache.password,
        db=cache.db,
        pool_size=cache.pool_size,
        connect_timeout=cache.connect_timeout,
        command_timeout=cache.command_timeout,
        sentinel_master=cache.sentinel_master,
    )


async def valkey_lifecycle(
    settings: Settings,
    client: Callable[[], ValkeyClient],
    variables: Callable[[], VariableRepository],
) -> AsyncIterator[None]:
    """Closes the process's Valkey pool (and the cache's reconnect task) with the container.

    Takes the providers rather than their objects, so that nothing of Valkey is built in a
    process that does not use it.
    """
    if not settings.uses_valkey:
        yield None
        return
    try:
        yield None
    finally:
        cache = variables()
        if isinstance(cache, ValkeyVariableCache):
            await cache.aclose()
        await client().aclose()


def chosen_audit_sinks(names: tuple[str, ...], **sinks: Callable[[], AuditSink]) -> list[AuditSink]:
    """The sinks `audit.sinks` names, in its order; each built only when named."""
    return [sinks[name]() for name in names]


def counting(counter: Counter) -> Callable[[str], None]:
    return lambda operation: counter.labels(operation).inc()


def counting_each(counter: Counter) -> Callable[[], None]:
    return counter.inc


def counting_lookups(counter: Counter, kind: str) -> Callable[[str], None]:
    """A cache's `on_lookup`: each answer it gave, "hit", "stale" or "miss", for its `kind`."""
    return lambda result: counter.labels(kind, result).inc()


def counting_context_memory_hits(settings: Settings, counter: Counter) -> Callable[[], None]:
    """The in-process contexts' `on_hit`: with Valkey, each is a context hit the Valkey cache
    no longer sees (so the counter still counts every read); without Valkey, nothing."""
    if not settings.uses_valkey:
        return lambda: None
    return counter.labels("context", "hit").inc


def report_revocation_refresh_error(error: BaseException) -> None:
    logger.warning(
        "the revocation list could not be refreshed; revocations made by other processes"
        " arrive once it can be ({error})",
        error=f"{type(error).__name__}: {error}",
    )


async def store_lifecycle(store: SqliteStore) -> AsyncIterator[SqliteStore]:
    """Opens the local store with the container's resources and closes it with them."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()


class _Opens(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Singleton(SystemClock)
    mode = providers.Callable(system_of_record, settings)
    sharing = providers.Callable(shared_state, settings)
    metrics_registry = providers.Singleton(CollectorRegistry)
    http_metrics = providers.Singleton(HttpMetrics, metrics_registry)
    build_info = providers.Singleton(build_info_gauge, metrics_registry)
    rate_limit_rejections = providers.Singleton(
        Counter,
        "cronium_runtime_rate_limit_rejections",
        "Script requests refused by the per-execution rate limit (429).",
        registry=metrics_registry,
    )
    cache_lookups = providers.Singleton(
        Counter,
        "cronium_runtime_cache_lookups",
        "Reads through the Valkey cache by kind (variable, context) and result: hit (a fresh"
        " entry), stale (an entry past cache.ttl, served while the system of record is down),"
        " miss (read from the system of record).",
        ["kind", "result"],
        registry=metrics_registry,
    )

    # Valkey, when configured: one client (pool) per process, opened lazily by valkey-py and
    # closed with the container's resources. The gate lets every adapter fall back at once.
    valkey_client = providers.Singleton(create_client, providers.Callable(valkey_options, settings))
    valkey_fallbacks = providers.Singleton(
        Counter,
        "cronium_runtime_valkey_fallbacks",
        "Operations that went to the store or the local limiter because Valkey did not answer.",
        ["operation"],
        registry=metrics_registry,
    )
    valkey_gate = providers.Singleton(
        ValkeyGate, on_fallback=providers.Callable(counting, valkey_fallbacks)
    )

    # The local store: the system of record in embedded mode, and the service's own durable
    # state (audit trail, idempotency, revocations) whenever Valkey is absent.
    store = providers.Singleton(SqliteStore, settings.provided.store.path)
    store_resource = providers.Resource(store_lifecycle, store)

    # The Cronium backend, when configured: one session per process.
    backend_client = providers.Singleton(
        HttpBackendClient,
        base_url=settings.provided.backend.url,
        token=settings.provided.backend.token,
        timeout=settings.provided.backend.timeout,
        max_retries=settings.provided.backend.max_retries,
        retry_delay=settings.provided.backend.retry_delay,
        breaker_failures=settings.provided.backend.breaker_failures,
        breaker_cooldown=settings.provided.backend.breaker_cooldown,
        registry=metrics_registry,
    )
    backend_resource = providers.Resource(
        opened,
        backend_client.provider,
        providers.Callable(lambda s: s.backend.url is not None, settings),
    )

    stored_executions = providers.Selector(
        mode,
        embedded=providers.Singleton(SqliteExecutionRepository, store, clock=clock),
        backend=providers.Singleton(BackendExecutionRepository, backend_client, clock=clock),
    )
    stored_variables = providers.Selector(
        mode,
        embedded=providers.Singleton(SqliteVariableRepository, store),
        backend=providers.Singleton(BackendVariableRepository, backend_client),
    )
    # Only the embedded store creates executions; the backend's come from the orchestrator.
    execution_catalog = providers.Selector(
        mode, embedded=stored_executions, backend=providers.Object(None)
    )
    shared_executions = providers.Selector(
        sharing,
        process=stored_executions,
        valkey=providers.Singleton(
            ValkeyExecutionCache,
            inner=stored_executions,
            client=valkey_client,
            gate=valkey_gate,
            ttl=settings.provided.cache.ttl,
            stale_window=settings.provided.cache.stale_window,
            on_lookup=providers.Callable(counting_lookups, cache_lookups, "context"),
        ),
    )
    # Contexts never change (SPEC section 7): each process keeps the ones it read, so that
    # an input or context read of a known execution makes no round trip, in every mode.
    execution_repository = providers.Singleton(
        InProcessExecutionCache,
        inner=shared_executions,
        max_bytes=settings.provided.cache.context_max_size,
        ttl=settings.provided.cache.context_ttl,
        on_hit=providers.Callable(counting_context_memory_hits, settings, cache_lookups),
    )
    variable_repository = providers.Selector(
        sharing,
        process=stored_variables,
        valkey=providers.Singleton(
            ValkeyVariableCache,
            inner=stored_variables,
            client=valkey_client,
            gate=valkey_gate,
            ttl=settings.provided.cache.ttl,
            stale_window=settings.provided.cache.stale_window,
            lock_ttl=settings.provided.cache.lock_ttl,
            lock_wait=settings.provided.server.request_deadline,
            on_lookup=providers.Callable(counting_lookups, cache_lookups, "variable"),
        ),
    )
    valkey_resource = providers.Resource(
        valkey_lifecycle, settings, valkey_client.provider, variable_repository.provider
    )
    tool_call_log = providers.Singleton(SqliteToolCallLog, store)
    builtin_tools = providers.Singleton(
        BuiltinToolGateway, providers.Callable(builtin_tools_config, settings)
    )
    builtin_tools_resource = providers.Resource(
        opened,
        builtin_tools.provider,
        providers.Callable(lambda s: s.tools.mode == "builtin", settings),
    )
    tools_by_mode = providers.Selector(
        settings.provided.tools.mode,
        builtin=builtin_tools,
        backend=providers.Singleton(BackendToolGateway, backend_client),
    )
    # In embedded mode every tool call is also kept in the store, for `ReportExecution`.
    tool_gateway = providers.Selector(
        mode,
        embedded=providers.Singleton(
            LoggedToolGateway, inner=tools_by_mode, log=tool_call_log, clock=clock
        ),
        backend=tools_by_mode,
    )
    # Audit sinks: where the outbox's events are delivered, as `audit.sinks` chooses (default
    # `backend` with a backend, else `store`). Only the chosen ones are built.
    audit_store_sink = providers.Singleton(SqliteAuditSink, store)
    audit_sinks = providers.Singleton(
        chosen_audit_sinks,
        settings.provided.audit.sinks,
        backend=providers.Singleton(BackendAuditSink, backend_client).provider,
        store=audit_store_sink.provider,
        file=providers.Singleton(
            FileAuditSink,
            settings.provided.audit.file_path,
            max_size=settings.provided.audit.file_max_size,
            backups=settings.provided.audit.file_backups,
        ).provider,
        stdout=providers.Singleton(StdoutAuditSink).provider,
    )

    # Audit outbox: every event is persisted there before the reply (Valkey's stream, else
    # the local store's table), or in the spool file while it cannot be written; the shipper
    # (one task per process, with the container's resources) delivers it to `audit_sinks`.
    audit_consumer = providers.Singleton(consumer_name)
    audit_outbox = providers.Selector(
        sharing,
        process=providers.Singleton(
            SqliteAuditOutbox,
            store,
            consumer=audit_consumer,
            claim_idle=settings.provided.audit.claim_idle,
            clock=clock,
        ),
        valkey=providers.Singleton(
            ValkeyAuditOutbox,
            client=valkey_client,
            gate=valkey_gate,
            consumer=audit_consumer,
            claim_idle=settings.provided.audit.claim_idle,
            max_age=settings.provided.audit.stream_max_age,
        ),
    )
    audit_spool = providers.Singleton(FileAuditSpool, settings.provided.audit.spool_path)
    audit_metrics = providers.Singleton(AuditMetrics, metrics_registry)
    audit_shipper = providers.Singleton(
        AuditShipper,
        outbox=audit_outbox,
        sinks=audit_sinks,
        spool=audit_spool,
        dead_letters=providers.Singleton(SqliteAuditDeadLetters, store, clock=clock),
        observer=audit_metrics,
        concurrency=settings.provided.audit.ship_concurrency,
        retry_max=settings.provided.audit.ship_retry_max,
        poll_interval=providers.Callable(poll_interval, settings),
        trim_interval=providers.Callable(trim_interval, settings),
    )
    # How long the shipper may deliver at shutdown; the one-shot CLI commands shorten it.
    audit_flush_within = providers.Callable(lambda s: s.server.shutdown_timeout, settings)
    audit_shipping_resource = providers.Resource(
        audit_shipping,
        audit_shipper,
        audit_sinks,
        audit_flush_within,
        store_resource,
        valkey_resource,
        backend_resource,
    )
    audit_log = providers.Singleton(
        DurableAuditLog,
        outbox=audit_outbox,
        spool=audit_spool,
        metrics=audit_metrics,
        on_recorded=audit_shipper.provided.wake,
    )
    # The trail this process reads back (`run`'s report, the `audit` command): the store sink's.
    audit_trail = audit_store_sink
    audit = providers.Singleton(
        AuditRecorder,
        log=audit_log,
        clock=clock,
        key=providers.Callable(audit_key, settings),
        fail_closed=settings.provided.audit.fail_closed,
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
    token_verifications = providers.Singleton(
        Counter,
        "cronium_runtime_token_verifications",
        "Token signatures checked: requests whose token was not in the verified-token cache.",
        registry=metrics_registry,
    )
    # What the edge asks; the codec itself mints the CLI's tokens.
    token_verifier = providers.Singleton(
        CachedTokenVerifier,
        token_codec,
        on_verification=providers.Callable(counting_each, token_verifications),
    )
    auth_failures = providers.Singleton(
        Counter,
        "cronium_runtime_auth_failures",
        "Requests refused at authentication (401), by code.",
        ["code"],
        registry=metrics_registry,
    )
    # Revocations: every process keeps a copy, refreshed every `auth.revocationRefresh`
    # from Valkey when configured (the local store standing in while it is away), else from
    # the local store.
    local_revocations = providers.Singleton(SqliteRevocationList, store)
    revocation_feed = providers.Selector(
        sharing,
        process=local_revocations,
        valkey=providers.Singleton(
            ValkeyRevocationFeed,
            client=valkey_client,
            gate=valkey_gate,
            local=local_revocations,
            keep_for=settings.provided.auth.max_token_lifetime,
        ),
    )
    revocations = providers.Singleton(
        CachedRevocationList,
        revocation_feed,
        refresh=settings.provided.auth.revocation_refresh,
        on_refresh_error=report_revocation_refresh_error,
    )
    # Idempotency-Key answers: in Valkey when configured (shared by every replica, with the
    # local store standing in while Valkey is away), else in the local store.
    local_idempotency_store = providers.Singleton(SqliteIdempotencyStore, store)
    idempotency_store = providers.Selector(
        sharing,
        process=local_idempotency_store,
        valkey=providers.Singleton(
            ValkeyIdempotencyStore,
            client=valkey_client,
            gate=valkey_gate,
            fallback=local_idempotency_store,
        ),
    )

    # `rate_limited` audit events: refusals counted per execution and minute (in Valkey for
    # the whole fleet, else in this process); the process that counted a minute's first
    # refusal records the minute once it is over, from a task this resource runs.
    local_refusal_tally = providers.Singleton(InMemoryRefusalTally)
    refusal_tally = providers.Selector(
        sharing,
        process=local_refusal_tally,
        valkey=providers.Singleton(
            ValkeyRefusalTally, client=valkey_client, gate=valkey_gate, fallback=local_refusal_tally
        ),
    )
    rate_limited_audit = providers.Singleton(
        RecordRateLimited, tally=refusal_tally, audit=audit, clock=clock
    )
    # Stopped before the shipper (which it names), so that its last events are in the
    # outbox for the shipper's final flush.
    rate_limited_audit_resource = providers.Resource(
        rate_limited_reports,
        rate_limited_audit,
        audit_shipping_resource,
        store_resource,
        valkey_resource,
    )

    local_rate_limiter = providers.Singleton(
        InProcessRateLimiter, limit_per_minute=settings.provided.security.rate_limit_per_min
    )
    # With Valkey, requests are leased from the shared bucket in small batches; the resource
    # gives back what expired leases did not hand out, and every lease at shutdown.
    valkey_rate_limiter = providers.Singleton(
        ValkeyRateLimiter,
        client=valkey_client,
        gate=valkey_gate,
        limit_per_minute=settings.provided.security.rate_limit_per_min,
        fallback=local_rate_limiter,
        lease_ttl=settings.provided.security.rate_limit_lease_ttl,
        largest_lease=settings.provided.security.rate_limit_lease_max,
    )
    rate_limiter = providers.Selector(
        sharing, process=local_rate_limiter, valkey=valkey_rate_limiter
    )
    rate_limit_leases_resource = providers.Resource(
        returning_leases,
        valkey_rate_limiter.provider,
        providers.Callable(lambda s: s.uses_valkey, settings),
        settings.provided.security.rate_limit_lease_ttl,
        valkey_resource,
    )
    health_probes = providers.List(
        providers.Selector(
            mode,
            embedded=providers.Singleton(SqliteHealthProbe, store, name="store"),
            backend=providers.Singleton(BackendHealthProbe, backend_client),
        ),
        providers.Selector(
            sharing,
            process=providers.Singleton(StaticHealthProbe, "valkey", "disabled"),
            valkey=providers.Singleton(
                ValkeyHealthProbe,
                valkey_client,
                valkey_gate,
                timeout=settings.provided.cache.command_timeout,
            ),
        ),
        providers.Singleton(AuditHealthProbe, audit_outbox, audit_spool),
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
    revoke_execution = providers.Factory(
        RevokeExecution,
        revocations=revocations,
        audit=audit,
        keep_for=settings.provided.auth.max_token_lifetime,
    )


ADAPTERS = (
    "idempotency_store",
    "execution_repository",
    "variable_repository",
    "tool_gateway",
    "audit",
    "token_codec",
    "token_verifier",
    "revocations",
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
    "revoke_execution",
)
