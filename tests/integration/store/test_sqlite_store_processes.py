"""Several processes on one store file, as `serve` and the command line share it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.sqlite.variables import SqliteVariableRepository

if TYPE_CHECKING:
    from conftest import OpenStore

WRITES = 200
DEADLINE = 30.0  # the whole exchange takes about a second; this only bounds a hang

# Opens the store (both writers at once, on a file that does not exist yet), says "ready",
# waits for "go" on stdin, then interleaves its own keys with updates of the shared one.
WRITER = f"""
import asyncio, sys
from datetime import UTC, datetime
from adapters.sqlite.store import SqliteStore
from adapters.sqlite.variables import SqliteVariableRepository

async def main(folder, name):
    store = SqliteStore(folder)
    await store.open()
    variables = SqliteVariableRepository(store)
    print("ready", flush=True)
    sys.stdin.readline()
    for n in range({WRITES}):
        own = f"{{name}}-{{n:03d}}"
        await variables.put("local", own, {{"by": name, "n": n}}, datetime.now(UTC))
        await variables.put("local", "shared", f"{{name}}-{{n}}", datetime.now(UTC))
    await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_two_processes_writing_one_file_at_once_lose_nothing_and_never_see_it_locked(
    open_store: OpenStore, store_folder: Path
) -> None:
    names = ("a", "b")
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            str(store_folder),
            name,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for name in names
    ]
    try:
        async with asyncio.timeout(DEADLINE):
            for writer in writers:
                assert writer.stdout is not None
                line = await writer.stdout.readline()
                assert line == b"ready\n", (await writer.communicate())[1].decode()
            results = await asyncio.gather(*(writer.communicate(b"go\n") for writer in writers))
    finally:
        for writer in writers:
            if writer.returncode is None:
                writer.kill()
                await writer.wait()

    for writer, (_, stderr) in zip(writers, results, strict=True):
        assert "locked" not in stderr.decode()
        assert writer.returncode == 0, stderr.decode()
    variables = SqliteVariableRepository(await open_store())
    own_keys = {f"{name}-{n:03d}" for name in names for n in range(WRITES)}
    listed = {summary.key for summary in await variables.list("local")}
    assert listed == own_keys | {"shared"}
    for name in names:
        for n in range(WRITES):
            variable = await variables.get("local", f"{name}-{n:03d}")
            assert variable is not None
            assert variable.value == {"by": name, "n": n}
    shared = await variables.get("local", "shared")
    assert shared is not None
    # Each writer's updates commit in its own order, so the last one to commit left its last.
    assert shared.value in {f"{name}-{WRITES - 1}" for name in names}
