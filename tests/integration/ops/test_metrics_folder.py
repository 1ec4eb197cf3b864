"""`metrics.multiprocessDir` on a single `serve`: prometheus-client reads
PROMETHEUS_MULTIPROC_DIR once, when it is imported, so this works only if `serve` exports
the setting before anything of the service imports the library."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops_kit import SECRET, parse_metrics, series

REQUESTS = "cronium_runtime_http_requests_total"
# A previous run's count, written by prometheus-client itself in a process of its own.
PREVIOUS_RUN = """
from prometheus_client import Counter
Counter(
    "cronium_runtime_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
).labels("/health/ready", "GET", "200").inc(1000)
"""


def test_one_process_keeps_its_metrics_in_the_configured_folder_emptied_at_start(
    start_server: Callable[..., Any], tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    subprocess.run(
        [sys.executable, "-c", PREVIOUS_RUN],
        env={"PROMETHEUS_MULTIPROC_DIR": str(folder)},
        check=True,
        timeout=30,
    )
    [stale] = folder.glob("counter_*.db")
    (folder / "README").write_text("not a metrics file: kept\n")

    # RUNTIME_..., not the bare name prometheus-client would read by itself.
    server = start_server(JWT_SECRET=SECRET, RUNTIME_PROMETHEUS_MULTIPROC_DIR=str(folder))
    for _ in range(3):
        assert server.request("GET", "/health/ready").status == 200
    samples = parse_metrics(server.request("GET", "/metrics").body.decode())

    assert (
        series(samples, REQUESTS, "route", "method", "status")[("/health/ready", "GET", "200")] == 3
    )
    assert not stale.exists()
    assert (folder / f"counter_{server.process.pid}.db").exists()
    assert (folder / "README").exists()
    assert server.stop() == 0, server.stderr[-2000:]
    assert folder.is_dir()  # the operator's folder, left in place


def test_the_command_line_and_serve_modules_do_not_import_prometheus_client() -> None:
    probe = (
        "import sys, entrypoints.cli.main, entrypoints.cli.serve;"
        "print(sorted(name for name in sys.modules if name.startswith('prometheus_client')))"
    )

    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert done.stdout.strip() == "[]", done.stdout
