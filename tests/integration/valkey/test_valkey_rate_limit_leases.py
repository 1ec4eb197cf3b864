"""`ValkeyRateLimiter`'s leases against a real valkey-server: a busy execution leases requests
in batches (few round trips, counted with INFO commandstats), a quiet one is decided request
by request, unused requests are given back, the header fields stay those of one bucket, and
all limiters together never admit more than the bucket."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from adapter_kit import Kit, ManualClock
from fault_proxy import ThreadedFaultProxy
from service_kit import Execution, StartFaultProxy, fallbacks, hammer
from valkey_servers import HOST, ValkeyServer

from adapters.valkey.client import ValkeyClient
from adapters.valkey.rate_limiter import ValkeyRateLimiter
from entrypoints.rate_limit_leases import returning_leases

SCRIPTS = ("evalsha", "eval")


async def leasing(
    kit: Kit,
    *,
    limit: int = 1000,
    lease_ttl: float = 60.0,
    largest_lease: int = 32,
    client: ValkeyClient | None = None,
    **options: Any,
) -> ValkeyRateLimiter:
    limiter = ValkeyRateLimiter(
        client=client or kit.open_client(kit.url),
        gate=kit.make_gate(),
        limit_per_minute=limit,
        lease_ttl=lease_ttl,
        largest_lease=largest_lease,
        **options,
    )
    await limiter.acquire("script-loaded")
    return limiter


async def script_calls(raw: ValkeyClient) -> int:
    """How many times Valkey was asked to run a script (EVALSHA, or EVAL) since it started.

    The first call of a process also loads the script (a refused EVALSHA, SCRIPT LOAD, the
    EVALSHA again): `leasing` makes that call, on a key of its own, before a test counts.
    """
    return scripts_run(await raw.info("commandstats"))


def scripts_run(commandstats: dict[str, Any]) -> int:
    return sum(int(commandstats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in SCRIPTS)


def refill_since(started: float, limit: int) -> int:
    """The most requests a bucket of `limit` a minute can have refilled since `started`."""
    return math.ceil((time.monotonic() - started) * limit / 60) + 1


async def test_a_busy_execution_leases_its_requests_in_batches(kit: Kit, raw: ValkeyClient) -> None:
    limiter = await leasing(kit)
    before = await script_calls(raw)

    decisions = [await limiter.acquire("exec-1") for _ in range(200)]

    assert all(decision.allowed for decision in decisions)
    # A lease of 1 for the first request (no rate known yet), then the largest, 32: 1 + 7.
    assert await script_calls(raw) - before == 8
    assert limiter.largest_lease == 32
    assert kit.fallbacks == []


async def test_a_quiet_execution_is_decided_by_the_shared_bucket_request_by_request(
    kit: Kit, raw: ValkeyClient
) -> None:
    clock = ManualClock()
    limiter = await leasing(kit, lease_ttl=1.0, clock=clock)
    other = await leasing(kit)
    before = await script_calls(raw)

    for _ in range(5):
        assert (await limiter.acquire("exec-1")).allowed
        clock.advance(1.5)  # less than one request per lease_ttl

    assert await script_calls(raw) - before == 5  # one lease of 1 per request
    started = time.monotonic()
    seen = (await other.acquire("exec-1")).remaining
    # Nothing held back in a lease: the bucket holds exactly the five, as without leases.
    assert 994 <= seen <= 994 + refill_since(started, 1000)


async def test_remaining_and_reset_count_a_lease_as_if_taken_request_by_request(
    kit: Kit,
) -> None:
    limiter = await leasing(kit, clock=ManualClock())

    decisions = [await limiter.acquire("exec-1") for _ in range(40)]

    assert [decision.remaining for decision in decisions] == list(range(999, 959, -1))
    # Full again one interval (60 ms) per request taken, rounded up to whole seconds.
    assert [decision.reset_after for decision in decisions] == [
        max(1, math.ceil(0.06 * taken)) for taken in range(1, 41)
    ]


async def test_a_small_limit_is_exact_with_a_whole_second_retry_after(
    kit: Kit, raw: ValkeyClient
) -> None:
    limiter = await leasing(kit, limit=32)  # one request every 1.875 s; leases of at most 2
    before = await script_calls(raw)

    decisions = [await limiter.acquire("exec-1") for _ in range(34)]

    assert limiter.largest_lease == 2
    assert [(d.allowed, d.remaining) for d in decisions] == [
        *((True, 31 - index) for index in range(32)),
        (False, 0),
        (False, 0),
    ]
    # The last allowed one and the refused ones: the next request fits in 1.875 s.
    assert [d.reset_after for d in decisions[31:]] == [2, 2, 2]
    # 1 + 15 leases of 2 + a last lease of 1 (all the bucket had), then a script per refusal.
    assert await script_calls(raw) - before == 19


async def test_unused_requests_come_back_when_the_lease_expires(kit: Kit) -> None:
    clock = ManualClock()
    limiter = await leasing(kit, lease_ttl=1.0, clock=clock)
    other = await leasing(kit, largest_lease=1)
    await limiter.acquire("exec-1")
    await limiter.acquire("exec-1")  # leases 32, hands out 1: 33 taken from the bucket
    started = time.monotonic()

    assert 966 <= (await other.acquire("exec-1")).remaining <= 966 + refill_since(started, 1000)
    clock.advance(0.5)
    await limiter.give_back_expired()  # not expired yet: nothing comes back
    assert 965 <= (await other.acquire("exec-1")).remaining <= 965 + refill_since(started, 1000)

    clock.advance(0.5)
    await limiter.give_back_expired()

    # The 31 unused are back: 1000 - 2 handed out - 3 taken by the other.
    assert 995 <= (await other.acquire("exec-1")).remaining <= 995 + refill_since(started, 1000)
    await limiter.give_back_expired()  # given back once, never twice
    assert 994 <= (await other.acquire("exec-1")).remaining <= 994 + refill_since(started, 1000)


async def test_an_expired_lease_is_given_back_with_the_keys_next_lease(
    kit: Kit, raw: ValkeyClient
) -> None:
    clock = ManualClock()
    limiter = await leasing(kit, lease_ttl=1.0, clock=clock)
    other = await leasing(kit, largest_lease=1)
    await limiter.acquire("exec-1")
    await limiter.acquire("exec-1")  # 33 taken, 31 unused
    clock.advance(1.0)
    before = await script_calls(raw)

    assert (await limiter.acquire("exec-1")).allowed
    started = time.monotonic()

    assert await script_calls(raw) - before == 1  # given back and leased again in one script
    # The 31 came back; the new lease is of 1 (the last one handed out 1 in its lease_ttl):
    # 3 taken, and the other's own.
    assert 996 <= (await other.acquire("exec-1")).remaining <= 996 + refill_since(started, 1000)


async def test_closing_gives_back_every_lease(kit: Kit) -> None:
    limiter = await leasing(kit)
    other = await leasing(kit, largest_lease=1)
    for key in ("exec-1", "exec-2"):
        await limiter.acquire(key)
        await limiter.acquire(key)  # 33 taken each
    started = time.monotonic()

    await limiter.close()

    for key in ("exec-1", "exec-2"):
        assert 997 <= (await other.acquire(key)).remaining <= 997 + refill_since(started, 1000)


async def test_the_containers_resource_gives_back_expired_leases_then_all_at_shutdown(
    kit: Kit, raw: ValkeyClient
) -> None:
    clock = ManualClock()
    limiter = await leasing(kit, lease_ttl=1.0, clock=clock)
    # The timer every 25 ms of real time; the leases expire on the manual clock.
    resource = returning_leases(lambda: limiter, True, 0.05)
    await anext(resource)

    async def backlog_ms(key: str) -> int:
        return int(await raw.pttl(f"cronium:rl:{{{key}}}"))

    async def wait_for_backlog_under(key: str, ms: int) -> None:
        async with asyncio.timeout(5):
            while await backlog_ms(key) >= ms:
                await asyncio.sleep(0.01)

    try:
        await limiter.acquire("exec-1")
        await limiter.acquire("exec-1")  # 33 taken: the bucket is full again in 1.98 s
        clock.advance(1.0)  # exec-1's lease expires
        await limiter.acquire("exec-2")
        await limiter.acquire("exec-2")  # 33 taken, a lease that expires in 1 s

        await wait_for_backlog_under("exec-1", 200)  # 2 taken: full again in 0.12 s
        assert await backlog_ms("exec-2") > 1900  # its lease is still out
    finally:
        with pytest.raises(StopAsyncIteration):
            await anext(resource)  # the container shuts the resource down

    assert await backlog_ms("exec-2") < 200


async def test_concurrent_requests_of_one_execution_wait_for_one_lease(
    kit: Kit, raw: ValkeyClient
) -> None:
    limiter = await leasing(kit)
    before = await script_calls(raw)

    async with asyncio.timeout(5):
        decisions = await asyncio.gather(*(limiter.acquire("exec-1") for _ in range(50)))

    assert all(decision.allowed for decision in decisions)
    assert sorted(decision.remaining for decision in decisions) == list(range(950, 1000))
    # A lease of 1, then two of 32 (the first 32 spoken for at once): not 50 round trips.
    assert await script_calls(raw) - before == 3


async def test_limiters_that_lease_never_admit_more_than_the_bucket_together(kit: Kit) -> None:
    limit = 512  # leases of up to 32
    limiters = [await leasing(kit, limit=limit) for _ in range(3)]
    started = time.monotonic()

    allowed = 0
    for index in range(1200):
        allowed += (await limiters[index % 3].acquire("exec-1")).allowed

    # Every request a lease took was handed out (each limiter kept asking), none beyond.
    assert limit <= allowed <= limit + refill_since(started, limit)


async def test_a_refusal_while_another_limiter_holds_a_lease_is_within_the_tolerance(
    kit: Kit,
) -> None:
    """The stated tolerance: a limiter holding a lease may see the others refused while it
    has up to `largest_lease` - 1 requests unused; they come back when it expires."""
    clock = ManualClock()
    holder = await leasing(kit, limit=512, lease_ttl=1.0, clock=clock)
    drainer = await leasing(kit, limit=512, largest_lease=1)
    started = time.monotonic()
    await holder.acquire("exec-1")
    await holder.acquire("exec-1")  # 33 taken, 31 unused

    drained = 0
    while (await drainer.acquire("exec-1")).allowed:
        drained += 1
    assert 512 - 33 <= drained <= 512 - 33 + refill_since(started, 512)

    clock.advance(1.0)
    await holder.give_back_expired()

    taken_back = 0
    while (await drainer.acquire("exec-1")).allowed:
        taken_back += 1
    assert 31 <= taken_back <= 31 + refill_since(started, 512)


async def test_with_valkey_gone_a_lease_is_still_handed_out_then_the_local_limiter_answers(
    kit: Kit, valkey_server: ValkeyServer, fault_proxy_factory: StartFaultProxy
) -> None:
    assert valkey_server.port is not None
    proxy: ThreadedFaultProxy = fault_proxy_factory(valkey_server.port)
    client = kit.open_client(
        f"valkey://{HOST}:{proxy.port}", command_timeout=0.2, connect_timeout=0.2
    )
    limiter = await leasing(kit, client=client)
    await limiter.acquire("exec-1")
    await limiter.acquire("exec-1")  # a lease of 32, 31 unused

    proxy.drop()
    from_the_lease = [await limiter.acquire("exec-1") for _ in range(31)]
    assert kit.fallbacks == []
    assert [decision.remaining for decision in from_the_lease][-1] == 999 - 32

    local = await limiter.acquire("exec-1")

    assert (local.allowed, local.remaining) == (True, 999)  # a fresh bucket in this process
    assert kit.fallbacks == ["rate_limit"]


@pytest.mark.parametrize("largest_lease", [0, -1])
async def test_a_lease_of_no_requests_is_refused(kit: Kit, largest_lease: int) -> None:
    with pytest.raises(ValueError, match="largest_lease"):
        await leasing(kit, largest_lease=largest_lease)


# ------------------------------------------------------------------- service processes

# Hundreds of requests on a machine other work shares: a slow Valkey answer must not turn
# into a fallback (a bucket per process), which these tests are not about.
PATIENT = {"VALKEY_READ_TIMEOUT": "2s"}


def server_script_calls(server: ValkeyServer) -> int:
    client = server.client()
    try:
        return scripts_run(client.info("commandstats"))
    finally:
        client.close()


def remaining_in(answer: Any) -> int:
    found = re.fullmatch(r'"exec";r=(\d+);t=(\d+)', answer.headers["RateLimit"])
    assert found, answer.headers["RateLimit"]
    return int(found.group(1))


def test_two_serving_processes_lease_with_few_round_trips_and_share_one_limit(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    valkey_server: ValkeyServer,
) -> None:
    limit = 600  # leases of up to 32 (the default largest lease)
    a = service(valkey_server.url(), **PATIENT, RATE_LIMIT_PER_MIN=str(limit))
    b = service(valkey_server.url(), **PATIENT, RATE_LIMIT_PER_MIN=str(limit))
    script = new_execution()
    started = time.monotonic()
    before = server_script_calls(valkey_server)

    within = hammer(script, [a, b], 400)

    assert [answer.status for answer in within] == [200] * 400
    # Leases of up to 32 per process, not a script per request (nor per ten).
    assert server_script_calls(valkey_server) - before <= 400 // 10

    beyond = hammer(script, [a, b], 400)

    allowed = [answer.status for answer in within + beyond].count(200)
    assert limit <= allowed <= limit + math.ceil((time.monotonic() - started) * limit / 60) + 1
    assert {answer.status for answer in beyond[0::2]} == {200, 429}
    assert {answer.status for answer in beyond[1::2]} == {200, 429}
    for answer in beyond:
        if answer.status == 429:
            assert int(answer.headers["Retry-After"]) >= 1
    assert fallbacks(a) == fallbacks(b) == 0


def test_a_process_that_stops_gives_its_leases_back(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    valkey_server: ValkeyServer,
) -> None:
    limit = 600
    a = service(valkey_server.url(), **PATIENT, RATE_LIMIT_PER_MIN=str(limit))
    b = service(
        valkey_server.url(), **PATIENT, RATE_LIMIT_PER_MIN=str(limit), RATE_LIMIT_LEASE_TTL="1h"
    )
    script = new_execution()
    started = time.monotonic()
    assert [answer.status for answer in hammer(script, [b], 2)] == [200, 200]  # 1 + 32 taken

    assert b.stop() == 0

    refilled = math.ceil((time.monotonic() - started) * limit / 60) + 1
    # Only what b handed out (2) and this request are gone from the bucket, not b's lease.
    assert 597 <= remaining_in(hammer(script, [a], 1)[0]) <= 597 + refilled
