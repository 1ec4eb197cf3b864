"""The Valkey adapters while Valkey does not answer: a black hole or dropped connections
(the fault proxy), or the server stopped. Every call is bounded by `commandTimeout`, falls
back to the store or the local limiter, the gate spares the next calls, the keys written
meanwhile are deleted from Valkey once it answers (SPEC section 7), and the health probe
opens and closes the gate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from adapter_kit import AT, LATER, Kit, ManualClock, eventually
from fault_proxy import ThreadedFaultProxy
from valkey.exceptions import ValkeyError
from valkey_servers import HOST, ValkeyServer

from adapters.memory.executions import InMemoryExecutionRepository
from adapters.memory.rate_limiter import InProcessRateLimiter
from adapters.valkey.client import ValkeyClient
from adapters.valkey.executions import ValkeyExecutionCache
from adapters.valkey.health import ValkeyHealthProbe
from adapters.valkey.rate_limiter import ValkeyRateLimiter
from domain.model import ExecutionContext, Variable

StartFaultProxy = Callable[..., ThreadedFaultProxy]
StartValkeyServer = Callable[..., ValkeyServer]

COMMAND_TIMEOUT = 0.2
BOUND = COMMAND_TIMEOUT + 0.8  # what one call may take while Valkey does not answer (loaded CI)
FAST = 0.1  # what a call that does not even try Valkey may take (it takes microseconds)


@dataclass(frozen=True)
class Faulty:
    """The fault proxy in front of the test's server, and a client that goes through it."""

    proxy: ThreadedFaultProxy
    client: ValkeyClient


@pytest.fixture
def faulty(valkey_server: ValkeyServer, fault_proxy_factory: StartFaultProxy, kit: Kit) -> Faulty:
    assert valkey_server.port is not None
    proxy = fault_proxy_factory(valkey_server.port)
    client = kit.open_client(
        f"valkey://{HOST}:{proxy.port}",
        command_timeout=COMMAND_TIMEOUT,
        connect_timeout=COMMAND_TIMEOUT,
    )
    return Faulty(proxy, client)


async def timed(call: Awaitable[object]) -> float:
    """How long `call` took, in seconds."""
    started = time.monotonic()
    await call
    return time.monotonic() - started


# --------------------------------------------------------------------- variable cache


@pytest.mark.parametrize("fault", ["blackhole", "drop"])
async def test_while_valkey_does_not_answer_every_call_is_bounded_and_uses_the_store(
    kit: Kit, faulty: Faulty, fault: str
) -> None:
    gate_clock = ManualClock()
    cache = kit.make_cache(faulty.client, kit.store, gate=kit.make_gate(clock=gate_clock))
    await cache.put("u1", "k", "before", AT)
    getattr(faulty.proxy, fault)()

    durations = []
    for call in (
        lambda: cache.get("u1", "k"),
        lambda: cache.put("u1", "k", "during", LATER),
        lambda: cache.get("u1", "k"),
        lambda: cache.delete("u1", "other"),
        lambda: cache.list("u1"),
    ):
        gate_clock.advance(60)  # the gate's pause is over: each call tries Valkey again
        durations.append(await timed(call()))

    assert max(durations) < BOUND, durations
    during = Variable(key="k", value="during", updated_at=LATER)
    assert await kit.store.inner.get("u1", "k") == during
    assert kit.store.calls["get"] == 2  # no read was answered by the cache
    assert {"get", "lock"} <= set(kit.fallbacks)


async def test_while_the_gate_is_closed_calls_do_not_even_try_valkey(
    kit: Kit, faulty: Faulty
) -> None:
    gate_clock = ManualClock()
    gate = kit.make_gate(clock=gate_clock, first_pause=10.0)
    cache = kit.make_cache(faulty.client, kit.store, gate=gate)
    await kit.store.inner.put("u1", "k", "v", AT)
    faulty.proxy.blackhole()

    assert await timed(cache.get("u1", "k")) < BOUND  # this one tried, and closed the gate
    assert kit.fallbacks == ["get"]
    assert not gate.open
    assert gate.last_error is not None
    assert "Timeout" in gate.last_error

    durations = [
        await timed(cache.get("u1", "k")),
        await timed(cache.put("u1", "k", "w", LATER)),
        await timed(cache.delete("u1", "k")),
        await timed(cache.get("u1", "k")),
    ]

    assert max(durations) < FAST, durations
    assert kit.fallbacks == ["get", "get", "lock", "lock", "get"]
    assert await kit.store.inner.get("u1", "k") is None


@pytest.mark.parametrize("fault", ["blackhole", "drop"])
async def test_a_write_during_an_outage_is_deleted_from_valkey_once_it_answers_again(
    kit: Kit, faulty: Faulty, fault: str
) -> None:
    gate = kit.make_gate(first_pause=0.05, longest_pause=0.2)
    writer = kit.make_cache(faulty.client, kit.store, gate=gate)
    other = kit.make_cache(kit.open_client(kit.url), kit.store)  # always reaches Valkey
    value_key = writer.value_key("u1", "k")
    await writer.put("u1", "k", "before", AT)
    assert (await other.get("u1", "k")) == Variable(key="k", value="before", updated_at=AT)

    getattr(faulty.proxy, fault)()
    during = await asyncio.wait_for(writer.put("u1", "k", "during", LATER), BOUND)
    # Until the writer reaches Valkey again, the entry it could not replace is still there.
    assert await kit.raw.exists(value_key) == 1

    faulty.proxy.restore()

    async def deleted() -> bool:
        return await kit.raw.exists(value_key) == 0

    await eventually(deleted, within=3.0)
    reads_before = kit.store.calls["get"]
    assert await other.get("u1", "k") == during
    assert kit.store.calls["get"] == reads_before + 1  # the other replica went to the store


async def test_the_writers_own_first_read_after_the_outage_sees_its_write(
    kit: Kit, faulty: Faulty
) -> None:
    gate_clock = ManualClock()
    writer = kit.make_cache(faulty.client, kit.store, gate=kit.make_gate(clock=gate_clock))
    await writer.put("u1", "k", "before", AT)
    assert await writer.get("u1", "gone") is None  # a tombstone, cached
    faulty.proxy.drop()
    await writer.put("u1", "k", "during", LATER)
    await writer.put("u1", "gone", "now set", LATER)
    faulty.proxy.restore()
    gate_clock.advance(60)

    # The remembered keys are deleted before this read asks Valkey, whoever runs first.
    assert await writer.get("u1", "k") == Variable(key="k", value="during", updated_at=LATER)
    assert await writer.get("u1", "gone") == Variable(key="gone", value="now set", updated_at=LATER)


async def test_valkey_stopped_and_started_again_is_used_again_and_the_outage_write_invalidated(
    kit: Kit, valkey_server_factory: StartValkeyServer
) -> None:
    server = valkey_server_factory(appendonly=True)  # the old entry survives the restart
    look = kit.open_client(server.url())
    gate = kit.make_gate(first_pause=0.05, longest_pause=0.2)
    client = kit.open_client(server.url(), command_timeout=COMMAND_TIMEOUT)
    cache = kit.make_cache(client, kit.store, gate=gate)
    value_key = cache.value_key("u1", "k")
    await cache.put("u1", "k", "before", AT)

    server.stop()
    assert await timed(cache.get("u1", "k")) < BOUND
    assert await timed(cache.put("u1", "k", "during", LATER)) < BOUND
    assert {"get", "lock"} <= set(kit.fallbacks)
    server.start()

    async def deleted() -> bool:
        try:
            return await look.exists(value_key) == 0
        except ValkeyError:  # the connection from before the restart fails once
            return False

    await eventually(deleted, within=4.0)
    assert await cache.get("u1", "k") == Variable(key="k", value="during", updated_at=LATER)

    async def cached_again() -> bool:
        # valkey-py does not retry: each pooled connection from before the restart fails
        # its first command, a fallback, and the gate closes for a moment; then a read fills.
        await cache.get("u1", "k")
        return await look.exists(value_key) == 1

    await eventually(cached_again)  # Valkey is in use again


async def test_aclose_stops_the_reconnect_task(kit: Kit, faulty: Faulty) -> None:
    gate = kit.make_gate(first_pause=0.05, longest_pause=0.2)
    cache = kit.make_cache(faulty.client, kit.store, gate=gate)
    await cache.put("u1", "k", "before", AT)
    faulty.proxy.blackhole()
    await cache.put("u1", "k", "during", LATER)

    def reconnectors() -> list[asyncio.Task[object]]:
        return [
            task
            for task in asyncio.all_tasks()
            if "_flush_until_done" in repr(task.get_coro()) and not task.done()
        ]

    assert len(reconnectors()) == 1
    await asyncio.wait_for(cache.aclose(), BOUND + 0.5)
    assert reconnectors() == []
    await cache.aclose()  # twice is fine


async def test_with_valkey_unreachable_an_execution_context_comes_from_the_store(
    kit: Kit, faulty: Faulty
) -> None:
    executions = InMemoryExecutionRepository([ExecutionContext(execution_id="e1", user_id="u1")])
    cache = ValkeyExecutionCache(
        inner=executions, client=faulty.client, gate=kit.make_gate(), ttl=60, stale_window=3600
    )
    faulty.proxy.blackhole()

    started = time.monotonic()
    context = await cache.get_context("e1")

    assert time.monotonic() - started < BOUND
    assert context.execution_id == "e1"
    assert kit.fallbacks == ["get_context"]


async def test_more_calls_in_flight_than_pool_size_wait_for_a_connection_not_a_fallback(
    kit: Kit,
) -> None:
    client = kit.open_client(kit.url, pool_size=2)
    cache = kit.make_cache(client, kit.store)
    limiter = ValkeyRateLimiter(client=client, gate=kit.make_gate(), limit_per_minute=1000)
    await cache.put("u1", "k", "v", AT)

    async with asyncio.timeout(5):
        reads = await asyncio.gather(*(cache.get("u1", "k") for _ in range(20)))
        decisions = await asyncio.gather(*(limiter.acquire("exec-1") for _ in range(20)))

    assert all(read is not None and read.value == "v" for read in reads)
    assert kit.fallbacks == []
    assert kit.store.calls["get"] == 0
    assert sorted(decision.remaining for decision in decisions) == list(range(980, 1000))


# ---------------------------------------------------------------------------- limiter


async def test_with_valkey_black_holed_the_local_limiter_answers_and_then_the_shared_one(
    kit: Kit, faulty: Faulty
) -> None:
    gate_clock = ManualClock()
    limiter = ValkeyRateLimiter(
        client=faulty.client, gate=kit.make_gate(clock=gate_clock), limit_per_minute=20
    )
    other = ValkeyRateLimiter(
        client=kit.open_client(kit.url), gate=kit.make_gate(), limit_per_minute=20
    )
    for _ in range(5):
        assert (await limiter.acquire("exec-1")).allowed
    assert (await other.acquire("exec-1")).remaining == 14  # one bucket in Valkey

    faulty.proxy.blackhole()
    started = time.monotonic()
    local = await limiter.acquire("exec-1")
    assert time.monotonic() - started < BOUND
    assert (local.allowed, local.remaining) == (True, 19)  # a fresh bucket in this process
    assert (await limiter.acquire("exec-1")).remaining == 18
    assert kit.fallbacks == ["rate_limit", "rate_limit"]

    faulty.proxy.restore()
    gate_clock.advance(60)
    shared_again = await limiter.acquire("exec-1")
    # The shared bucket goes on from 14. The script call that timed out in the black hole
    # was sent, though: TCP delivers it once the bytes flow again, and it takes one too.
    assert shared_again.allowed
    assert shared_again.remaining in {12, 13}
    assert (await other.acquire("exec-1")).remaining == shared_again.remaining - 1
    assert kit.fallbacks == ["rate_limit", "rate_limit"]


async def test_a_limiter_that_cannot_reach_valkey_limits_each_key_locally(
    kit: Kit, faulty: Faulty
) -> None:
    limiter = ValkeyRateLimiter(
        client=faulty.client,
        gate=kit.make_gate(),
        limit_per_minute=3,
        fallback=InProcessRateLimiter(3),
    )
    faulty.proxy.drop()

    decisions = [await limiter.acquire("exec-1") for _ in range(4)]

    assert [decision.allowed for decision in decisions] == [True, True, True, False]
    assert decisions[-1].reset_after >= 1
    assert (await limiter.acquire("exec-2")).allowed


# ------------------------------------------------------------------------------ health


async def test_the_health_probe_says_up_with_its_latency_and_opens_the_gate(kit: Kit) -> None:
    gate = kit.make_gate(clock=ManualClock())
    gate.mark_down(TimeoutError("earlier"))
    assert not gate.open
    probe = ValkeyHealthProbe(kit.open_client(kit.url), gate, timeout=1.0)

    health = await probe.check()

    assert probe.name == "valkey"
    assert health.status == "up"
    assert health.is_up
    assert 0 < health.latency_ms < 1000
    assert health.error is None
    assert gate.open
    assert gate.last_error is None


async def test_the_health_probe_says_down_when_the_server_is_stopped_and_closes_the_gate(
    kit: Kit, valkey_server: ValkeyServer
) -> None:
    gate_clock = ManualClock()
    gate = kit.make_gate(clock=gate_clock)
    probe = ValkeyHealthProbe(kit.open_client(kit.url), gate, timeout=0.5)
    assert (await probe.check()).status == "up"

    valkey_server.stop()
    started = time.monotonic()
    health = await probe.check()

    assert time.monotonic() - started < 0.5 + 0.2
    assert health.status == "down"
    assert not health.is_up
    assert health.error
    assert not gate.open
    assert kit.fallbacks == []  # a probe is no fallback

    valkey_server.start()
    gate_clock.advance(60)
    async with asyncio.timeout(3):
        while (await probe.check()).status != "up":  # a connection from before fails once
            pass
    assert gate.open


async def test_the_health_probe_is_bounded_by_its_own_timeout_when_black_holed(
    kit: Kit, faulty: Faulty
) -> None:
    gate = kit.make_gate(clock=ManualClock())
    # The client would wait 5 s per command: the probe's 0.3 s is what bounds the check.
    client = kit.open_client(f"valkey://{HOST}:{faulty.proxy.port}", command_timeout=5.0)
    probe = ValkeyHealthProbe(client, gate, timeout=0.3)
    assert (await probe.check()).status == "up"
    faulty.proxy.blackhole()

    started = time.monotonic()
    health = await probe.check()

    assert time.monotonic() - started < 0.3 + 0.2
    assert health.status == "down"
    assert health.error is not None
    assert not gate.open

    faulty.proxy.restore()
    async with asyncio.timeout(3):
        while (await probe.check()).status != "up":  # the connection cut is replaced
            pass
    assert gate.open


async def test_a_down_probe_sends_the_adapters_to_their_fallback_and_an_up_one_back(
    kit: Kit, faulty: Faulty
) -> None:
    gate = kit.make_gate(clock=ManualClock())
    cache = kit.make_cache(faulty.client, kit.store, gate=gate)
    probe = ValkeyHealthProbe(faulty.client, gate, timeout=0.3)
    await kit.store.inner.put("u1", "k", "v", AT)

    faulty.proxy.drop()
    assert (await probe.check()).status == "down"
    faulty.proxy.restore()
    await cache.get("u1", "k")
    assert kit.fallbacks == ["get"]  # the gate is closed: the store answered, Valkey untried

    assert (await probe.check()).status == "up"
    assert gate.open
    await cache.get("u1", "k")
    await cache.get("u1", "k")
    assert kit.fallbacks == ["get"]
    assert kit.store.calls["get"] == 2  # the first read after the probe filled the cache
