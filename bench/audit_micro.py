"""Micro-benchmark of the audit trail's cost per request, before and after a change:

    .venv/bin/python -m bench.audit_micro [--before REV] [--repeats 5] [--records-only]

It starts a `valkey-server` and the fake Cronium backend (`bench/fake_backend_server.py`) on
free loopback ports, then runs the measurement below in child processes, alternately on the
source tree of `REV` (default HEAD, unpacked with `git archive` into a temporary folder) and
on the working tree, and prints the medians of each figure. Everything it starts, it stops.

What a child measures (one process, uvloop, the real adapters):
- `seq_us`, `seq_cpu_us`: wall and CPU µs per audited operation, one caller after another;
- `c32_us`, `c32_cpu_us`: the same with 32 concurrent callers;
- `reads_per_record`: Valkey's `total_reads_processed` per record at 32 callers (each read
  is one round trip's worth of commands arriving);
- `ship_cpu_us`: CPU µs per event the shipper delivered to the backend (one `POST
  /api/internal/audit` each), emptying an outbox of 2,000 events with nothing else running;
- `burstN_delivered_share`: events delivered / events recorded while 32 callers record for
  a few seconds, each spending `BURST_WORK_US` of CPU per request besides its record, in
  `BURST_STEPS` steps (a stand-in for the rest of a request), the shipper running beside
  them with `audit.shipConcurrency` N (4, the default, and 16).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEQUENTIAL = 3000
CONCURRENT = 32
CONCURRENT_RECORDS = 6400
SHIP_EVENTS = 2000
BURST_SECONDS = 4.0
BURST_WORK_US = 600
BURST_STEPS = 4  # the work of a request, cut in as many steps as it has awaits
TOKEN = "bench-token"  # noqa: S105 (the fake backend's, on loopback)


# ----------------------------------------------------------------------------- the child


def _busy(microseconds: int) -> None:
    end = time.perf_counter() + microseconds / 1e6
    while time.perf_counter() < end:
        pass


async def _child(  # noqa: PLR0915 (one measurement after another)
    valkey_url: str, backend_url: str, folder: Path, records_only: bool
) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from adapters.audit.log import DurableAuditLog
    from adapters.audit.metrics import AuditMetrics
    from adapters.audit.sinks.backend import BackendAuditSink
    from adapters.audit.spool import FileAuditSpool
    from adapters.backend_http.client import HttpBackendClient
    from adapters.clock import SystemClock
    from adapters.memory.audit_outbox import InMemoryAuditDeadLetters
    from adapters.valkey.audit_outbox import STREAM_KEY, ValkeyAuditOutbox
    from adapters.valkey.client import ValkeyOptions, create_client
    from adapters.valkey.gate import ValkeyGate
    from application.audit import AuditRecorder
    from application.audit_shipping import AuditShipper
    from domain.audit import AuditAction
    from domain.model import Principal, RequestContext

    client = create_client(ValkeyOptions(url=valkey_url, command_timeout=2.0))
    await client.delete(STREAM_KEY)
    registry = CollectorRegistry()
    metrics = AuditMetrics(registry)
    outbox = ValkeyAuditOutbox(
        client=client, gate=ValkeyGate(), consumer="bench", claim_idle=60.0, max_age=3600.0
    )
    log = DurableAuditLog(
        outbox=outbox, spool=FileAuditSpool(folder / "spool.jsonl"), metrics=metrics
    )
    recorder = AuditRecorder(log=log, clock=SystemClock(), key=b"k" * 32)
    context = RequestContext(
        principal=Principal(execution_id="exec-1", user_id="user-1", event_id="ev", job_id="j"),
        request_id="req-0123456789abcdef",
        client_address="127.0.0.1",
    )
    value = {"name": "a variable value", "count": 3, "items": [1, 2, 3]}

    async def one() -> None:
        async with recorder.operation(context, AuditAction.GET_VARIABLE, key="k") as op:
            op.value = value

    async def reads() -> int:
        info = await client.info("stats")
        return int(info["total_reads_processed"])

    for _ in range(200):  # warm-up
        await one()
    result: dict[str, Any] = {}

    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(SEQUENTIAL):
        await one()
    result["seq_us"] = (time.perf_counter() - wall) / SEQUENTIAL * 1e6
    result["seq_cpu_us"] = (time.process_time() - cpu) / SEQUENTIAL * 1e6

    async def caller(count: int) -> None:
        for _ in range(count):
            await one()

    before_reads = await reads()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller(CONCURRENT_RECORDS // CONCURRENT) for _ in range(CONCURRENT)))
    result["c32_us"] = (time.perf_counter() - wall) / CONCURRENT_RECORDS * 1e6
    result["c32_cpu_us"] = (time.process_time() - cpu) / CONCURRENT_RECORDS * 1e6
    result["reads_per_record"] = (await reads() - before_reads - 1) / CONCURRENT_RECORDS
    if records_only:
        await client.aclose()
        return result

    # Shipping an outbox that holds SHIP_EVENTS events, nothing else running.
    await client.delete(STREAM_KEY)
    for _ in range(SHIP_EVENTS // CONCURRENT):
        await asyncio.gather(*(one() for _ in range(CONCURRENT)))
    backend = HttpBackendClient(
        base_url=backend_url,
        token=TOKEN,
        timeout=10.0,
        max_retries=1,
        retry_delay=0.05,
        breaker_failures=5,
        breaker_cooldown=30.0,
    )
    await backend.open()

    def shipper(concurrency: int = 4) -> AuditShipper:
        return AuditShipper(
            outbox=outbox,
            sinks=[BackendAuditSink(backend)],
            spool=FileAuditSpool(folder / "spool.jsonl"),
            dead_letters=InMemoryAuditDeadLetters(),
            observer=metrics,
            concurrency=concurrency,
            retry_max=1.0,
            poll_interval=0.25,
            trim_interval=60.0,
        )

    def delivered() -> float:
        sample = registry.get_sample_value(
            "cronium_runtime_audit_deliveries_total", {"sink": "backend"}
        )
        return sample or 0.0

    first = delivered()
    cpu = time.process_time()
    left = await shipper().flush(120.0)
    shipped = delivered() - first
    result["ship_cpu_us"] = (time.process_time() - cpu) / shipped * 1e6
    assert left == 0 and shipped >= SHIP_EVENTS // CONCURRENT * CONCURRENT, (left, shipped)

    # A burst: callers record while the shipper runs beside them, at the default
    # `audit.shipConcurrency` and at a raised one.
    for concurrency in (4, 16):
        await client.delete(STREAM_KEY)
        running = shipper(concurrency)
        log = DurableAuditLog(  # woken at each record, as the container wires it
            outbox=outbox,
            spool=FileAuditSpool(folder / "spool.jsonl"),
            metrics=metrics,
            on_recorded=running.wake,
        )
        recorder = AuditRecorder(log=log, clock=SystemClock(), key=b"k" * 32)
        task = asyncio.create_task(running.run())
        recorded = 0
        stop_at = time.monotonic() + BURST_SECONDS

        async def busy_caller(until: float) -> None:
            nonlocal recorded
            while time.monotonic() < until:
                for _ in range(BURST_STEPS):
                    _busy(BURST_WORK_US // BURST_STEPS)
                    await asyncio.sleep(0)
                await one()
                recorded += 1

        first = delivered()
        await asyncio.gather(*(busy_caller(stop_at) for _ in range(CONCURRENT)))
        result[f"burst{concurrency}_recorded"] = recorded
        result[f"burst{concurrency}_delivered_share"] = (delivered() - first) / recorded
        running.stop()
        await task
        await running.flush(30.0)
    await backend.close()
    await client.aclose()
    return result


def child_main(valkey_url: str, backend_url: str, *, records_only: bool) -> None:
    import uvloop
    from loguru import logger

    logger.remove()
    with tempfile.TemporaryDirectory() as folder:
        result = uvloop.run(_child(valkey_url, backend_url, Path(folder), records_only))
    import domain.audit

    result["source"] = str(Path(domain.audit.__file__).parents[1])
    print(json.dumps(result))


# ---------------------------------------------------------------------------- the driver


def _wait_for(path: Path, deadline: float) -> str:
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise TimeoutError(f"{path} was not written in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="HEAD", help="the revision to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="one more variant: the working tree with PATH before it on sys.path (say, a"
        " folder where a package was installed with pip --target)",
    )
    parser.add_argument(
        "--records-only", action="store_true", help="measure the record path alone (quicker)"
    )
    parser.add_argument("--child", nargs=2, metavar=("VALKEY_URL", "BACKEND_URL"))
    args = parser.parse_args()
    if args.child:
        child_main(*args.child, records_only=args.records_only)
        return
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from valkey_servers import ValkeyServer, free_port

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        before_src = work / "before"
        before_src.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.before, "src"], cwd=REPO, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(before_src)], input=archive, check=True)
        server = ValkeyServer(work / "valkey")
        server.start()
        seed = work / "seed.json"
        seed.write_text(json.dumps({"token": TOKEN, "contexts": {}, "variables": []}))
        ready = work / "backend.port"
        backend = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.fake_backend_server",
                "--seed",
                str(seed),
                "--port",
                str(free_port()),
                "--ready-file",
                str(ready),
            ],
            cwd=REPO,
        )
        try:
            port = _wait_for(ready, time.monotonic() + 20)
            urls = [f"valkey://127.0.0.1:{server.port}", f"http://127.0.0.1:{port}"]
            sources = {"before": before_src / "src", "after": REPO / "src"}
            paths = {name: str(source) for name, source in sources.items()}
            for extra in args.extra:
                name, _, path = extra.partition("=")
                sources[name] = REPO / "src"
                paths[name] = f"{REPO / 'src'}{os.pathsep}{path}"
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
            for _ in range(args.repeats):
                for name, source in sources.items():
                    env = {**os.environ, "PYTHONPATH": paths[name]}
                    done = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "bench.audit_micro",
                            *(["--records-only"] if args.records_only else []),
                            "--child",
                            *urls,
                        ],
                        cwd=REPO,
                        env=env,
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    assert result["source"] == str(source), result["source"]
                    results[name].append(result)
                    print(name, json.dumps(result), flush=True)
            print("\nmedians over", args.repeats, "runs:", ", ".join(sources))
            for figure in results["before"][0]:
                if figure == "source":
                    continue
                medians = [statistics.median(r[figure] for r in results[n]) for n in sources]
                print(f"  {figure:24}", "".join(f"{m:12.3f}" for m in medians))
        finally:
            backend.terminate()
            backend.wait(10)
            server.stop()


if __name__ == "__main__":
    main()
