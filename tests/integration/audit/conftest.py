"""The audit trail's world: real valkey-server processes, the fake Cronium backend on a loop
thread of its own, and `serve` processes in backend mode with short audit waits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from audit_kit import SECRET, LoopThread, Service, ThreadedBackend

MakeService = Callable[..., Service]


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def fake(loop_thread: LoopThread) -> Iterator[ThreadedBackend]:
    backend = ThreadedBackend(loop_thread)
    backend.start()
    yield backend
    backend.stop()


@pytest.fixture
def service(
    start_server: Callable[..., Any], run_cli: Callable[..., Any], fake: ThreadedBackend
) -> MakeService:
    """`serve` in backend mode against the fake, audited to the backend, with waits short
    enough for a test: a retry at most every second, claims taken over after two."""

    def start(**overrides: str) -> Service:
        env = {
            "BACKEND_URL": fake.fake.base_url,
            "BACKEND_TOKEN": fake.fake.token,
            "JWT_SECRET": SECRET,
            "BACKEND_TIMEOUT": "2s",
            "BACKEND_MAX_RETRIES": "1",
            "BACKEND_RETRY_DELAY": "50ms",
            "VALKEY_READ_TIMEOUT": "300ms",
            "AUDIT_SHIP_RETRY_MAX": "1s",
            "RATE_LIMIT_PER_MIN": "100000",
            **overrides,
        }
        return Service(start_server(**env), run_cli)

    return start
