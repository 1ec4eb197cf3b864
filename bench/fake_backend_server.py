"""The tests' fake Cronium backend (tests/integration/backend/fake_backend.py) as a server of
its own, seeded with the benchmark's executions and variables:

    python -m bench.fake_backend_server --seed SEED.json --port PORT --ready-file PATH

It listens on the loopback port, writes `<port>` to the ready file once it answers, and
serves until SIGTERM or SIGINT. SEED.json holds {"token": ..., "contexts": {id: context},
"variables": [[user, key, value], ...]}. Under load the fake's request log and the outputs
it keeps would grow without end, so they are emptied every second: the benchmark reads
nothing back from them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration" / "backend"))

from fake_backend import FakeBackend  # noqa: E402

UPDATED_AT = "2026-11-28T19:04:05.123Z"
TRIM_EVERY_S = 1.0


def seeded(seed: dict[str, object]) -> FakeBackend:
    fake = FakeBackend(token=str(seed["token"]))
    contexts = seed["contexts"]
    assert isinstance(contexts, dict)
    fake.contexts.update(contexts)
    variables = seed["variables"]
    assert isinstance(variables, list)
    for user, key, value in variables:
        fake.variables[(user, key)] = {"value": value, "updatedAt": UPDATED_AT}
    return fake


async def _trim(fake: FakeBackend) -> None:
    while True:
        await asyncio.sleep(TRIM_EVERY_S)
        fake.received.clear()
        fake.audit.clear()
        for kept in (*fake.outputs.values(), *fake.conditions.values()):
            del kept[:-1]


async def serve(fake: FakeBackend, port: int, ready_file: Path) -> None:
    await fake.start(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    trimming = asyncio.create_task(_trim(fake))
    await asyncio.to_thread(ready_file.write_text, f"{fake.port}\n")
    try:
        await stop.wait()
    finally:
        trimming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trimming
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args()
    fake = seeded(json.loads(args.seed.read_text()))
    uvloop.run(serve(fake, args.port, args.ready_file))


if __name__ == "__main__":
    main()
