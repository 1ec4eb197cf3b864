"""What `./dev bench --profile` recorded, in numbers: pure functions, no processes.

- py-spy's `raw` output (collapsed stacks: `thread (tid): name;frame;frame... COUNT`, each
  frame `function (file:line)`) is read into samples; each sample is charged to one
  component of the service by `classify`, and the components' shares of the samples times
  the CPU time a request cost (from /proc) give the microseconds per request of each.
- The same stacks become a speedscope document (one sampled profile per thread), and a
  top-like summary: the functions with the most samples of their own and in all.
- Valkey's MONITOR output counts the service's round trips by command (the commands that
  Lua scripts run are listed apart: they are no round trip); `INFO commandstats` gives
  Valkey's own time per command; the service's `/metrics` before and after give the backend
  calls, audit events and token verifications per request.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# ------------------------------------------------------------------------- py-spy samples

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int

    @property
    def label(self) -> str:
        return f"{self.function} ({short_path(self.file)})"


@dataclass(frozen=True)
class Sample:
    thread: str
    frames: tuple[Frame, ...]  # outermost first, as py-spy writes them
    count: int


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text)
    if match is None:  # py-spy writes a bare name for a frame it could not place
        return Frame(function=text, file="", line=0)
    return Frame(match["function"], match["file"], int(match["line"] or 0))


def parse_raw(text: str) -> list[Sample]:
    """py-spy `record --format raw --threads` output; a stack without `--threads` counts as
    the thread `all`."""
    samples = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        thread = "all"
        if parts[0].startswith("thread ("):
            thread, parts = parts[0], parts[1:]
        frames = tuple(parse_frame(part) for part in parts if part)
        samples.append(Sample(thread=thread, frames=frames, count=int(count)))
    return samples


def short_path(path: str) -> str:
    """`litestar/routes/http.py` for a package's file, `src:adapters/...` for the service's
    own, `stdlib:asyncio/tasks.py` for the standard library's."""
    if "/site-packages/" in path:
        return path.rsplit("/site-packages/", 1)[1]
    if "/src/" in path:
        return "src:" + path.rsplit("/src/", 1)[1]
    match = re.search(r"/lib/python3\.\d+/(.*)$", path)
    if match:
        return "stdlib:" + match.group(1)
    return path


# --------------------------------------------------------------------------- components

UVICORN = "uvicorn (HTTP server: bounded httptools, or h11)"
LITESTAR = "Litestar (routing, DI, serialization)"
EVENT_LOOP = "event loop (uvloop, asyncio), outside any request's frames"
# valkey-py sends each command under `asyncio.wait_for`, which on Python 3.11 runs it in a
# task of its own: those stacks do not show which adapter sent the command.
VALKEY_SEND = "valkey-py command sends (their own tasks; the caller is not in the stack)"

# The service's own files (under src/), the first match wins: (path prefix, functions or
# None for any, component). A frame of a file listed in `_PASS_THROUGH` is charged to
# whoever called it: shared helpers (the Valkey gate, the backend client, the domain).
_OWN: tuple[tuple[str, frozenset[str] | None, str], ...] = (
    ("entrypoints/cli/http_protocol.py", None, UVICORN),
    ("entrypoints/http/observability.py", None, "observability middleware (id, metrics, log)"),
    ("entrypoints/http/auth.py", frozenset({"provide_request_context"}), "dependency providers"),
    ("entrypoints/http/routes.py", frozenset({"variable_key"}), "dependency providers"),
    ("entrypoints/http/auth.py", None, "auth middleware (bearer, RateLimit headers)"),
    ("adapters/auth/", None, "token verify (JWT, verified-token cache)"),
    ("adapters/memory/revocations.py", frozenset({"is_revoked", "holds", "sweep"}),
     "revocation check (in memory)"),
    ("adapters/memory/revocations.py", None, "revocation refresh (background task)"),
    ("adapters/valkey/revocations.py", None, "revocation refresh (background task)"),
    ("adapters/sqlite/revocations.py", None, "revocation refresh (background task)"),
    ("adapters/valkey/rate_limiter.py", None, "rate limit (leases from Valkey's GCRA bucket)"),
    ("entrypoints/rate_limit_leases.py", None, "rate limit (leases from Valkey's GCRA bucket)"),
    ("adapters/memory/rate_limiter.py", None, "rate limit (in-process bucket)"),
    ("entrypoints/http/idempotency.py", None, "idempotency middleware"),
    ("entrypoints/http/body.py", None, "body check (UTF-8, depth, strict decode)"),
    ("entrypoints/http/routes.py", None, "route handlers and response models"),
    ("entrypoints/http/schemas.py", None, "route handlers and response models"),
    ("entrypoints/http/health.py", None, "route handlers and response models"),
    ("entrypoints/http/app.py", None, "dependency providers"),
    ("entrypoints/http/methods.py", None, "OPTIONS/405 wrapper"),
    ("entrypoints/http/errors.py", None, "error handlers"),
    ("adapters/valkey/variables.py", None, "variable cache (Valkey GET, fill, lock)"),
    ("adapters/valkey/executions.py", None, "execution cache (Valkey GET)"),
    ("adapters/memory/execution_cache.py", None, "execution cache (in process)"),
    ("adapters/backend_http/repositories.py", None, "backend calls (cache miss, writes)"),
    ("adapters/valkey/audit_outbox.py", frozenset({"append", "_xadd_one", "_xadd_many"}),
     "audit record (outbox XADD)"),
    ("adapters/valkey/audit_outbox.py", None, "audit shipping (background task)"),
    ("adapters/sqlite/audit_outbox.py", frozenset({"append", "_insert_many", "_insert"}),
     "audit record (outbox XADD)"),
    ("adapters/turn_batches.py", None, "audit record (outbox XADD)"),
    ("adapters/sqlite/audit_outbox.py", None, "audit shipping (background task)"),
    ("adapters/audit/log.py", None, "audit record (outbox XADD)"),
    ("application/audit.py", None, "audit record (outbox XADD)"),
    ("application/audit_shipping.py", None, "audit shipping (background task)"),
    ("entrypoints/audit_shipping.py", None, "audit shipping (background task)"),
    ("adapters/audit/", None, "audit shipping (background task)"),
    ("entrypoints/rate_limited_reports.py", None, "rate-limited reports (background task)"),
    ("application/record_rate_limited.py", None, "rate-limited reports (background task)"),
    ("adapters/valkey/idempotency.py", None, "idempotency store"),
    ("application/", None, "use case (own code)"),
    ("entrypoints/", None, "other service code"),
    ("adapters/", None, "other service code"),
)  # fmt: skip
_PASS_THROUGH_OWN = (
    "domain/",
    "entrypoints/cli/",  # `serve` and the server's loop, under every stack of the process
    "entrypoints/logs.py",  # the log sink: its caller's line
    "adapters/valkey/gate.py",
    "adapters/valkey/client.py",
    "adapters/backend_http/client.py",
    "adapters/request_context.py",
    "adapters/clock.py",
    "adapters/audit/metrics.py",
)
# ValkeyAuditOutbox._call wraps both the request's XADD and the shipper's reads.
_PASS_THROUGH_FUNCTIONS = {"adapters/valkey/audit_outbox.py": frozenset({"_call", "<lambda>"})}
# Packages whose frames own the time spent in them, whoever called them. uvicorn's own
# server loop (uvicorn/server.py, under every stack) is not its HTTP work: only its protocols.
_OWNING_PACKAGES = {
    "uvicorn/protocols": UVICORN,
    "h11": UVICORN,
    "httptools": UVICORN,
    "litestar": LITESTAR,
}
# The innermost frame when the event loop runs native code: uvloop's run loop (libuv's
# epoll, socket reads and writes, C callbacks) shows as the Python frame that started it.
_LOOP_RUNNERS = frozenset({"Runner.run", "run_until_complete", "run_forever", "run"})


def _package(path: str) -> str:
    short = short_path(path)
    if short.startswith("stdlib:"):
        return "stdlib " + short[len("stdlib:") :].split("/", 1)[0].removesuffix(".py")
    if short.startswith("src:"):
        return "src"
    return short.split("/", 1)[0].removesuffix(".py") if "/" in short else short


def _own_component(frame: Frame) -> str | None:
    """The component of a frame of the service's own code; None: pass it to its caller."""
    relative = short_path(frame.file)[len("src:") :]
    if relative.startswith(_PASS_THROUGH_OWN) and not relative.startswith(_OWN[0][0]):
        return None
    function = frame.function.rsplit(".", 1)[-1]
    for prefix, passed in _PASS_THROUGH_FUNCTIONS.items():
        if relative.startswith(prefix) and function in passed:
            return None
    for prefix, functions, component in _OWN:
        if relative.startswith(prefix) and (functions is None or function in functions):
            return component
    return "other service code"


def _uvicorn_part(frames: Sequence[Frame]) -> str:
    names = {frame.function for frame in frames if "uvicorn/" in frame.file}
    if any(name.endswith("RequestResponseCycle.send") for name in names):
        return "send the answer (framing, socket write)"
    if any(name.endswith(("data_received", "handle_events")) for name in names):
        return "read and parse the request, start its task"
    if any(name.endswith("run_asgi") for name in names):
        return "the request's task (run_asgi)"
    return "other (connections, timers)"


def classify(frames: Sequence[Frame]) -> tuple[str, str]:
    """(component, detail) of one stack, walking from the innermost frame outwards.

    The component is the first frame's that owns its time: the service's own code (by file,
    see `_OWN`), or uvicorn/h11 or Litestar. Libraries the service calls (valkey-py, loguru,
    prometheus_client, PyJWT, msgspec, aiohttp, the standard library) are charged to their
    caller; `detail` names the library the component was in (the one it called directly),
    or "own code". A stack with no owner is the event loop's (socket reads that feed
    valkey-py and aiohttp, task switching), its detail the innermost package.
    """
    library: str | None = None
    for frame in reversed(frames):
        if "/src/" in frame.file and "/site-packages/" not in frame.file:
            component = _own_component(frame)
            if component is not None:
                return component, f"in {library}" if library else "own code"
            continue
        package = _package(frame.file)
        owner = _owning_package(frame.file, package)
        if owner is not None:
            component = _OWNING_PACKAGES[owner]
            if component == UVICORN:
                return component, _uvicorn_part(frames)
            return component, f"in {library}" if library else "own code"
        library = package
    return _unowned(frames)


def _unowned(frames: Sequence[Frame]) -> tuple[str, str]:
    """A stack that only the event loop is under: a callback, or a task of its own."""
    if not frames:
        return EVENT_LOOP, "unknown"
    packages = {_package(frame.file) for frame in frames}
    if "valkey" in packages:
        return VALKEY_SEND, "asyncio.wait_for's task (Python 3.11), then the socket write"
    if "anyio" in packages:
        return LITESTAR, "anyio task group: a task per dependency"
    if "aiohttp" in packages:
        return EVENT_LOOP, "aiohttp's protocol callbacks (the backend client's I/O)"
    leaf = frames[-1]
    if leaf.function in _LOOP_RUNNERS and _package(leaf.file) in {"stdlib asyncio", "uvloop"}:
        return EVENT_LOOP, "uvloop native (epoll, socket I/O, C callbacks)"
    return EVENT_LOOP, f"in {_package(leaf.file)}"


def _owning_package(path: str, package: str) -> str | None:
    if package in _OWNING_PACKAGES:
        return package
    if package == "uvicorn" and short_path(path).startswith("uvicorn/protocols/"):
        return "uvicorn/protocols"
    return None


# -------------------------------------------------------------------------------- tables

_THREAD_ID = re.compile(r"^thread \((\d+)\)")


def thread_id(label: str) -> int | None:
    """The OS thread id of py-spy's `thread (1234): name` label."""
    match = _THREAD_ID.match(label)
    return int(match.group(1)) if match else None


def weigh(samples: Sequence[Sample], thread_us: Mapping[int, float]) -> list[tuple[Sample, float]]:
    """Each sample with the µs of CPU per request it stands for.

    py-spy counts a thread as busy while it is runnable, also while another process has its
    core: on a loaded machine the samples overstate CPU time, and unevenly across threads.
    So each thread's samples are scaled to the CPU time /proc counted for that thread
    (`thread_us`: µs per request, by thread id); within a thread, a stack's share of the
    samples is taken as its share of the thread's CPU. A thread /proc did not report is
    left out (weight 0)."""
    per_thread: Counter[str] = Counter()
    for sample in samples:
        per_thread[sample.thread] += sample.count
    weighed = []
    for sample in samples:
        tid = thread_id(sample.thread)
        us = thread_us.get(tid, 0.0) if tid is not None else 0.0
        weighed.append((sample, sample.count / per_thread[sample.thread] * us))
    return weighed


def _largest(values: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(values.items(), key=lambda item: -item[1])


@dataclass(frozen=True)
class Share:
    name: str
    share: float  # of the CPU time of the sampled threads
    us_per_request: float


@dataclass(frozen=True)
class ComponentShare(Share):
    details: tuple[Share, ...]


def component_shares(
    weighed: Iterable[tuple[Sample, float]], *, min_detail: float = 0.005
) -> list[ComponentShare]:
    """Each component's µs per request and share, the largest first; with the details
    (libraries, parts of the server) that hold at least `min_detail` of the total."""
    by_component: dict[str, float] = defaultdict(float)
    by_detail: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for sample, us in weighed:
        component, detail = classify(sample.frames)
        by_component[component] += us
        by_detail[component][detail] += us
    total = sum(by_component.values())
    if not total:
        return []
    rows = []
    for component, us in _largest(by_component):
        details = tuple(
            Share(detail, n / total, n)
            for detail, n in _largest(by_detail[component])
            if n / total >= min_detail
        )
        rows.append(ComponentShare(component, us / total, us, details))
    return rows


def top_functions(
    weighed: Sequence[tuple[Sample, float]], *, own_only: bool, limit: int
) -> tuple[list[Share], list[Share]]:
    """py-spy top's two columns: the functions with the most time of their own (the
    innermost frame) and in all (anywhere in the stack, once per sample); `own_only` keeps
    the service's own functions for the second list."""
    self_us: dict[str, float] = defaultdict(float)
    total_us: dict[str, float] = defaultdict(float)
    total = 0.0
    for sample, us in weighed:
        total += us
        if sample.frames:
            self_us[sample.frames[-1].label] += us
        seen = set()
        for frame in sample.frames:
            if own_only and not short_path(frame.file).startswith("src:"):
                continue
            if frame.label not in seen:
                seen.add(frame.label)
                total_us[frame.label] += us
    if not total:
        return [], []

    def rows(values: dict[str, float]) -> list[Share]:
        return [Share(name, n / total, n) for name, n in _largest(values)[:limit]]

    return rows(self_us), rows(total_us)


def package_self_time(weighed: Iterable[tuple[Sample, float]]) -> list[Share]:
    """Time by the package of the innermost frame (the standard library by module): where
    the interpreter was, whoever called it."""
    by_package: dict[str, float] = defaultdict(float)
    for sample, us in weighed:
        by_package[_package(sample.frames[-1].file) if sample.frames else "unknown"] += us
    total = sum(by_package.values())
    if not total:
        return []
    return [Share(name, us / total, us) for name, us in _largest(by_package)]


def to_speedscope(samples: Sequence[Sample], name: str, rate: int) -> dict[str, Any]:
    """A speedscope document (https://www.speedscope.app), one sampled profile per thread,
    weights in seconds of samples."""
    frames: list[dict[str, Any]] = []
    index: dict[Frame, int] = {}
    profiles: dict[str, dict[str, Any]] = {}
    for sample in samples:
        stack = []
        for frame in sample.frames:
            if frame not in index:
                index[frame] = len(frames)
                frames.append({"name": frame.function, "file": frame.file, "line": frame.line})
            stack.append(index[frame])
        profile = profiles.setdefault(
            sample.thread,
            {"type": "sampled", "name": sample.thread, "unit": "seconds", "startValue": 0,
             "endValue": 0.0, "samples": [], "weights": []},
        )  # fmt: skip
        profile["samples"].append(stack)
        profile["weights"].append(sample.count / rate)
        profile["endValue"] += sample.count / rate
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "name": name,
        "exporter": "cronium-runtime bench/profile.py",
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": sorted(profiles.values(), key=lambda p: -p["endValue"]),
    }


# ------------------------------------------------------------------- Valkey and /metrics

_MONITOR = re.compile(r'^\d+\.\d+ \[\d+ (?P<client>[^\]]+)\] "(?P<command>[^"]*)"')


def parse_monitor(text: str) -> tuple[Counter[str], Counter[str]]:
    """(round trips by command, commands run inside Lua scripts by command) of `MONITOR`
    output; the `MONITOR` client's own lines have no client of their own."""
    trips: Counter[str] = Counter()
    scripted: Counter[str] = Counter()
    for line in text.splitlines():
        match = _MONITOR.match(line)
        if match is None:
            continue
        command = match["command"].upper()
        if match["client"] == "lua":
            scripted[command] += 1
        else:
            trips[command] += 1
    return trips, scripted


@dataclass(frozen=True)
class CommandStat:
    calls: int
    usec: int


def parse_commandstats(text: str) -> dict[str, CommandStat]:
    """`INFO commandstats`: `cmdstat_get:calls=1,usec=2,...` lines, by upper-case command."""
    stats = {}
    for line in text.splitlines():
        name, _, values = line.strip().partition(":")
        if not name.startswith("cmdstat_"):
            continue
        fields = dict(item.split("=", 1) for item in values.split(",") if "=" in item)
        stats[name[len("cmdstat_") :].upper()] = CommandStat(
            calls=int(fields.get("calls", 0)), usec=int(fields.get("usec", 0))
        )
    return stats


def commandstats_delta(
    before: Mapping[str, CommandStat], after: Mapping[str, CommandStat]
) -> dict[str, CommandStat]:
    delta = {}
    for command, stat in after.items():
        old = before.get(command, CommandStat(0, 0))
        if stat.calls > old.calls:
            delta[command] = CommandStat(stat.calls - old.calls, stat.usec - old.usec)
    return delta


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text: every sample by `name{labels}`, for counters and gauges alike."""
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            values[key] = float(value)
        except ValueError:
            continue
    return values


def metrics_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """What grew between two scrapes: the counters' samples (`_total`, and `_count` of
    histograms), skipping buckets and sums."""
    grown = {}
    for key, value in after.items():
        name = key.split("{", 1)[0]
        if not (name.endswith("_total") or name.endswith("_count")):
            continue
        delta = value - before.get(key, 0.0)
        if delta > 0:
            grown[key] = delta
    return grown


# ---------------------------------------------------------------------------- Markdown


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _us(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def render_components(rows: Sequence[ComponentShare]) -> str:
    lines = ["| component | share of CPU | µs/request |", "|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.name} | {_pct(row.share)} | {_us(row.us_per_request)} |")
        if len(row.details) > 1 or (row.details and row.details[0].name != "own code"):
            for detail in row.details:
                lines.append(
                    f"| &nbsp;&nbsp;· {detail.name} | {_pct(detail.share)} |"
                    f" {_us(detail.us_per_request)} |"
                )
    return "\n".join(lines)


def render_top(rows: Sequence[Share], heading: str) -> str:
    lines = [f"| {heading} | share | µs/request |", "|---|---|---|"]
    lines += [f"| `{row.name}` | {_pct(row.share)} | {_us(row.us_per_request)} |" for row in rows]
    return "\n".join(lines)


def render_round_trips(
    trips: Counter[str], scripted: Counter[str], requests: int, stats: Mapping[str, CommandStat]
) -> str:
    lines = [
        "| command | round trips/request | inside scripts/request | Valkey µs/call |",
        "|---|---|---|---|",
    ]
    for command in sorted(set(trips) | set(scripted), key=lambda c: (-trips[c], -scripted[c], c)):
        stat = stats.get(command)
        per_call = f"{stat.usec / stat.calls:.1f}" if stat and stat.calls else "-"
        lines.append(
            f"| {command} | {trips[command] / requests:.3f} |"
            f" {scripted[command] / requests:.3f} | {per_call} |"
        )
    lines.append(f"| **all** | **{sum(trips.values()) / requests:.3f}** | | |")
    return "\n".join(lines)


def render_metrics(delta: Mapping[str, float], requests: int) -> str:
    lines = ["| counter | per request |", "|---|---|"]
    for key, value in sorted(delta.items()):
        if value / requests >= 0.001:  # not the harness's own scrapes of /metrics
            lines.append(f"| `{key}` | {value / requests:.3f} |")
    return "\n".join(lines)
