"""Where the processes of `serve` keep their metrics when there are several of them.

prometheus-client picks its storage once, when it is first imported: values in the process's
memory, or (with `PROMETHEUS_MULTIPROC_DIR` in the environment) in memory-mapped files in
that folder, one per process, which a scrape adds up. So `serve` exports the variable before
anything of the service imports the library, and this module never imports it at the top.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
SETTING = "metrics.multiprocessDir / PROMETHEUS_MULTIPROC_DIR"
# The files prometheus-client writes there (`<type>_<pid>.db`, gauges `gauge_<mode>_<pid>.db`):
# the only ones removed, in case the folder holds anything else.
METRIC_FILES = ("counter_*.db", "gauge_*.db", "histogram_*.db", "summary_*.db")


@contextlib.contextmanager
def multiprocess_metrics(configured: Path | None, workers: int) -> Iterator[Path | None]:
    """The folder the server's processes keep their metrics in, exported as
    `PROMETHEUS_MULTIPROC_DIR` for as long as the block runs; None (and nothing exported)
    for one worker with no `metrics.multiprocessDir`, whose metrics stay in its memory.

    A configured folder is created if needed and emptied of metric files at start, so that
    counters begin at zero, as they do in one process; it is left in place at exit. Without
    one, a fresh temporary folder is made and removed at exit (a killed `serve` leaves it
    behind in the temporary folder, which is all it costs).
    """
    if configured is None and workers == 1:
        yield None
        return
    if configured is not None:
        folder, owned = configured, False
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            for pattern in METRIC_FILES:
                for stale in folder.glob(pattern):
                    stale.unlink(missing_ok=True)
        except OSError as error:
            raise ValueError(
                f"{SETTING} {str(folder)!r} cannot be used ({error.strerror or error}); point"
                " it at a writable folder"
            ) from None
    else:
        try:
            folder, owned = Path(tempfile.mkdtemp(prefix="cronium-runtime-metrics-")), True
        except OSError as error:
            raise ValueError(
                f"no temporary folder for the metrics of {workers} workers"
                f" ({error.strerror or error}); set {SETTING} to a writable folder"
            ) from None
    previous = os.environ.get(MULTIPROC_VARIABLE)
    os.environ[MULTIPROC_VARIABLE] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_VARIABLE, None)
        else:
            os.environ[MULTIPROC_VARIABLE] = previous
        if owned:
            shutil.rmtree(folder, ignore_errors=True)


def mark_worker_dead(folder: Path, pid: int) -> None:
    """Drop a stopped worker's live gauges (in-flight requests, breaker state, audit backlog),
    whose `live*` modes count only running processes; its counters and histograms stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]
