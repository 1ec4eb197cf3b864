"""What the operations tests share: a webhook that holds its answer until told, requests on
one keep-alive connection, which worker holds a connection, and the metrics read back."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from processes import owner_of, wait_until  # noqa: F401 (re-exported)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

HOST = "127.0.0.1"
SECRET = "operations-tests-secret-of-forty-chars!!"
STARTED = re.compile(r"Started server process \[(\d+)\]")
# What no clean shutdown leaves on stderr: aiohttp's and asyncio's complaints about what was
# not closed or awaited, and Python's ResourceWarnings (shown: PYTHONWARNINGS in the tests).
UNCLEAN = re.compile(
    r"unclosed|ResourceWarning|Task was destroyed|never awaited|Traceback", re.IGNORECASE
)

assert len(SECRET) == 40

Samples = dict[str, list[tuple[dict[str, str], float]]]


# --- requests on a connection of one's own -----------------------------------------------


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """One request on `connection`, which stays open (keep-alive) for the next; http.client
    opens it again if the server closed it."""
    sent = dict(headers or {})
    payload = raw_body
    if body is not None:
        payload = json.dumps(body).encode()
    if payload is not None:
        sent["Content-Type"] = "application/json"
    connection.request(method, path, body=payload, headers=sent)
    answer = connection.getresponse()
    return Answer(answer.status, answer.headers, answer.read())


def one_connection_per_worker(
    port: int, pids: list[int], attempts: int = 100
) -> tuple[dict[int, http.client.HTTPConnection], list[http.client.HTTPConnection]]:
    """Keep-alive connections until each worker holds one (the kernel hands each accepted
    connection to one of them): {pid: connection}, and every connection opened."""
    held: dict[int, http.client.HTTPConnection] = {}
    opened = []
    for _ in range(attempts):
        connection = http.client.HTTPConnection(HOST, port, timeout=10.0)
        opened.append(connection)
        assert exchange(connection, "GET", "/health").status == 200
        held.setdefault(owner_of(connection, port, pids), connection)
        if len(held) == len(pids):
            return held, opened
    raise AssertionError(f"after {attempts} connections only {sorted(held)} of {pids} answered")


def listener_closed(port: int) -> bool:
    """Whether a new connection to `port` is refused."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


# --- metrics ---------------------------------------------------------------------------------


def parse_metrics(text: str) -> Samples:
    """The samples of a Prometheus text answer, by sample name."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def series(samples: Samples, name: str, *labels: str) -> Counter[tuple[str, ...]]:
    """The values of sample `name`, keyed by the values of `labels`."""
    values: Counter[tuple[str, ...]] = Counter()
    for sample_labels, value in samples.get(name, []):
        values[tuple(sample_labels[label] for label in labels)] += value
    return values


def single(samples: Samples, name: str) -> float:
    [(_, value)] = samples[name]
    return value


def worker_files(folder: Path) -> dict[int, Samples]:
    """Each process's own counters and histograms, read from its files in the metrics folder
    the way a scrape reads them all."""
    files_of: dict[int, list[str]] = {}
    for path in folder.glob("*.db"):
        kind, *_, pid = path.stem.split("_")
        if kind in {"counter", "histogram"}:
            files_of.setdefault(int(pid), []).append(str(path))
    by_pid: dict[int, Samples] = {}
    for pid, files in files_of.items():
        samples: Samples = {}
        for metric in MultiProcessCollector.merge(files, accumulate=True):
            for sample in metric.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        by_pid[pid] = samples
    return by_pid


# --- a webhook that answers when told ------------------------------------------------------


@dataclass
class HeldWebhook:
    """A loopback HTTP server whose every POST waits for `release` before it answers 200: a
    tool call that takes as long as the test wants, with nothing added to the service."""

    url: str = ""
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    bodies: list[bytes] = field(default_factory=list)


@contextmanager
def held_webhook() -> Iterator[HeldWebhook]:
    hook = HeldWebhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            hook.bodies.append(self.rfile.read(length))
            hook.arrived.set()
            hook.release.wait(60.0)
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except ConnectionError:
                pass  # the caller gave up on the answer (a call cut off at shutdown)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: pytest shows what a test prints."""

    server = ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="held-webhook", daemon=True)
    thread.start()
    hook.url = f"http://{HOST}:{server.server_address[1]}/hook"
    try:
        yield hook
    finally:
        hook.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5.0)


# --- executions of the embedded store ------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}
