"""What the audit trail's integration tests share: the fake backend on a loop thread of its
own, service processes in backend mode, and readers for every place the trail is kept.
Their fixtures are in this folder's conftest.py."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

from processes import wait_until  # noqa: F401 (re-exported)

# The fake backend lives beside the backend tests; this folder reuses it.
_BACKEND_TESTS = str(Path(__file__).resolve().parents[1] / "backend")
if _BACKEND_TESTS not in sys.path:
    sys.path.insert(0, _BACKEND_TESTS)

from fake_backend import CONTEXT, FakeBackend  # noqa: E402

SECRET = "audit-trail-integration-secret-40-chars!"
EXECUTION = "exec-1"
USER = "user-1"
STREAM_KEY = "cronium:audit:outbox"
GROUP = "cronium-runtime"
DELIVERY_DEADLINE = 60.0  # seconds for the trail to reach its sinks on a loaded machine

assert len(SECRET) == 40


class LoopThread:
    """An asyncio loop running in a daemon thread; `run` waits for a coroutine's result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any]) -> Any:
        """`fn()` on the loop's thread, where the fake's state is touched."""

        async def on_loop() -> Any:
            return fn()

        return self.run(on_loop())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class ThreadedBackend:
    """`FakeBackend` served from a `LoopThread`, knowing the execution `exec-1`, with its
    audit route switched down and up."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.fake = FakeBackend()
        self.fake.contexts[EXECUTION] = dict(CONTEXT)

    def start(self) -> None:
        self.loop.run(self.fake.start())

    def stop(self) -> None:
        self.loop.run(self.fake.stop())

    def audit_down(self) -> None:
        self.loop.call(lambda: self.fake.fail("audit"))

    def audit_up(self) -> None:
        self.loop.call(lambda: self.fake.faults.pop("audit", None))

    def audit_events(self) -> list[dict[str, Any]]:
        return list(self.loop.call(lambda: list(self.fake.audit)))

    def audit_ids(self) -> set[str]:
        return {event["id"] for event in self.audit_events()}

    def state(self) -> str:
        """Everything the backend holds, as one text (to look for values in)."""

        def dump() -> str:
            fake = self.fake
            return json.dumps(
                {
                    "variables": {f"{u}/{k}": v for (u, k), v in fake.variables.items()},
                    "outputs": fake.outputs,
                    "conditions": fake.conditions,
                },
                ensure_ascii=False,
            )

        return str(self.loop.call(dump))


class Service:
    """One `serve` process and tokens for the execution `exec-1` of user `user-1`."""

    def __init__(self, process: Any, run_cli: Callable[..., Any]) -> None:
        self.process = process
        self.run_cli = run_cli
        self._token: str | None = None

    @property
    def token(self) -> str:
        if self._token is None:
            done = self.run_cli(self.process.env, "token", "--execution", EXECUTION, "--user", USER)
            assert done.returncode == 0, done.stderr
            self._token = done.stdout.strip()
        return self._token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        request_id: str | None = None,
        timeout: float = 15.0,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        if request_id is not None:
            headers["X-Request-ID"] = request_id
        return self.process.request(method, path, body=body, headers=headers, timeout=timeout)

    def metric(self, name: str, **labels: str) -> float:
        """A sample of `/metrics` (0 when absent)."""
        text = self.process.request("GET", "/metrics").body.decode()
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "")
        for line in text.splitlines():
            found = re.fullmatch(pattern + r" (\S+)", line)
            if found:
                return float(found.group(1))
        return 0.0

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; as a crash or an OOM kill."""
        self.process.process.kill()
        self.process.returncode = self.process.process.wait(timeout=10)


def stream_dump(client: Any, key: str = STREAM_KEY) -> str:
    """Every field of every entry the stream still holds, as one text."""
    entries = client.xrange(key)
    return "\n".join(
        f"{entry_id!r} {fields!r}"
        + "".join(value.decode(errors="replace") for value in fields.values())
        for entry_id, fields in entries
    )


def files_text(paths: Iterable[Path]) -> str:
    """The content of every file among `paths` that exists (rotated ones included)."""
    texts = []
    for path in paths:
        for candidate in sorted(path.parent.glob(path.name + "*")):
            if candidate.is_file():
                texts.append(candidate.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(texts)


def leaked(markers: Iterable[str], *places: str) -> list[str]:
    """The markers that appear in any of `places`."""
    return sorted({marker for marker in markers for place in places if marker in place})
