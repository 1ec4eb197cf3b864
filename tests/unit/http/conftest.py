"""The world the HTTP tests run in: the real app over in-memory adapters, through Litestar's
test client used as a context manager so that the lifespan runs.

`make_api(...)` builds one app per test (the rate limiter and the metrics registry live in
it, so no test sees another's buckets or counters); `api` is the app with the defaults.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from http_harness import Api, MakeApi, start_api


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[MakeApi]:
    with ExitStack() as stack:
        yield functools.partial(start_api, stack, tmp_path)


@pytest.fixture
def api(make_api: MakeApi) -> Api:
    return make_api()
