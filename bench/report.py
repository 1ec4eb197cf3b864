"""What the benchmark measured, in numbers and in Markdown: pure functions, no processes.

wrk's own summary is made for people; `bench/wrk/workload.lua` prints one JSON line from wrk's
`done()` instead (prefixed `BENCH_WRK `), which `parse_wrk_output` reads. Every figure of a
(target, workload, load shape) is the median over the repeats, each figure on its own.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

WRK_MARKER = "BENCH_WRK "
KIB_PER_MIB = 1024

# The targets of issue 10 (2 cores, wrk, Valkey and the service on the same cores).
READ_RPS_TARGET = 8500.0
READ_P99_TARGET_MS = 5.0
MIXED_P99_TARGET_MS = 20.0
COLD_START_TARGET_S = 0.8
IDLE_RSS_TARGET_MIB = 60.0
LOAD_RSS_TARGET_MIB = 120.0

WIDE, NARROW = "-t2 -c32", "-t1 -c8"

WORKLOADS: dict[str, str] = {
    "health": "`GET /health`",
    "variable_read": "cached `GET .../variables/{key}`",
    "input_read": "cached `GET .../input`",
    "variable_write": "`PUT .../variables/{key}`",
    "output_write": "`POST .../output`",
    "mixed": "mixed script (input, 3 reads, 1 write, output)",
}

SERVICE, BARE, BARE_H11 = "service", "bare", "bare-h11"
# The service as it was before a change (`--before DIR`), measured in the same go.
BEFORE = "service-before"
TARGET_NAMES: dict[str, str] = {
    SERVICE: "the service (`cronium-runtime serve`)",
    BEFORE: "the service built from an earlier revision (`--before`)",
    BARE: "bare Litestar app, the same server settings (httptools, bounded head)",
    BARE_H11: "bare Litestar app on uvicorn's h11 parser, as `serve` ran before (extra data point)",
}


class WrkOutputError(ValueError):
    """wrk's output holds no result line from the benchmark's `done()`."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    # wrk counts an answer with a status of 400 or more as a status error; the routes
    # measured never answer 1xx or 3xx, so this is the count of answers that were not 2xx.
    non_2xx: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors


def parse_wrk_output(text: str) -> WrkResult:
    """The result line `done()` printed; microseconds become milliseconds."""
    for line in text.splitlines():
        if not line.startswith(WRK_MARKER):
            continue
        try:
            raw = json.loads(line[len(WRK_MARKER) :])
            errors, latency = raw["errors"], raw["latency_us"]
            return WrkResult(
                requests=int(raw["requests"]),
                duration_s=float(raw["duration_us"]) / 1e6,
                p50_ms=float(latency["p50"]) / 1000,
                p90_ms=float(latency["p90"]) / 1000,
                p99_ms=float(latency["p99"]) / 1000,
                max_ms=float(latency["max"]) / 1000,
                non_2xx=int(errors["status"]),
                connect_errors=int(errors["connect"]),
                read_errors=int(errors["read"]),
                write_errors=int(errors["write"]),
                timeouts=int(errors["timeout"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise WrkOutputError(f"wrk's result line cannot be read ({error}): {line}") from None
    raise WrkOutputError(f"wrk printed no {WRK_MARKER.strip()} line; its output:\n{text}")


def failure_message(result: WrkResult) -> str | None:
    """Why a run is worthless (some request failed), or None when every request was 2xx."""
    if result.failed == 0:
        return None
    return (
        f"{result.failed:,} of {result.requests:,} requests failed: {result.non_2xx:,} answered"
        f" with a status of 400 or more, socket errors: connect {result.connect_errors},"
        f" read {result.read_errors}, write {result.write_errors}, timeout {result.timeouts}"
    )


# ------------------------------------------------------------------------- the rate limit

_POLICY_QUOTA = re.compile(r'^"exec";q=(\d+);w=60$')
_REMAINING = re.compile(r'^"exec";r=(\d+);t=\d+$')


def rate_limit_quota(policy_header: str) -> int:
    """q of `RateLimit-Policy: "exec";q=<limit>;w=60`."""
    match = _POLICY_QUOTA.match(policy_header.strip())
    if match is None:
        raise ValueError(f"not a RateLimit-Policy of the service: {policy_header!r}")
    return int(match.group(1))


def rate_limit_remaining(header: str) -> int:
    """r of `RateLimit: "exec";r=<remaining>;t=<seconds>`."""
    match = _REMAINING.match(header.strip())
    if match is None:
        raise ValueError(f"not a RateLimit field of the service: {header!r}")
    return int(match.group(1))


def pool_size(peak_rps: float, limit_per_min: int) -> int:
    """Executions enough that `peak_rps` spread over them stays within each one's limit.

    The bucket refills `limit_per_min` a minute: a request rate per execution at or under
    that never empties it, however long the benchmark runs.
    """
    return max(1, math.ceil(peak_rps * 60 / limit_per_min))


def per_execution_per_min(rps: float, executions: int) -> float:
    return rps * 60 / executions


# ------------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Run:
    """One measured wrk run against one target, and what the processes spent meanwhile."""

    target: str
    workload: str
    shape: str
    repeat: int
    wrk: WrkResult
    cpu_s: float  # the target's processes (all workers), user + system
    peak_rss_kib: int  # VmHWM during the run, summed over the target's processes
    peak_rss_worker_kib: int  # the largest single process's VmHWM
    valkey_cpu_s: float
    backend_cpu_s: float
    wrk_cpu_s: float


@dataclass(frozen=True)
class Summary:
    target: str
    workload: str
    shape: str
    repeats: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_s: float
    cpu_us_per_request: float
    peak_rss_mib: float
    peak_rss_worker_mib: float
    valkey_us_per_request: float
    backend_us_per_request: float
    wrk_us_per_request: float


def _per_request_us(cpu_s: float, requests: int) -> float:
    return cpu_s * 1e6 / requests if requests else 0.0


def summarise(runs: Iterable[Run]) -> list[Summary]:
    """One summary per (target, workload, shape), in the order first seen: medians."""
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.target, run.workload, run.shape), []).append(run)
    summaries = []
    for (target, workload, shape), group in groups.items():

        def median(values: Iterable[float]) -> float:
            return float(statistics.median(values))

        summaries.append(
            Summary(
                target=target,
                workload=workload,
                shape=shape,
                repeats=len(group),
                rps=median(run.wrk.rps for run in group),
                p50_ms=median(run.wrk.p50_ms for run in group),
                p99_ms=median(run.wrk.p99_ms for run in group),
                cpu_s=median(run.cpu_s for run in group),
                cpu_us_per_request=median(
                    _per_request_us(run.cpu_s, run.wrk.requests) for run in group
                ),
                peak_rss_mib=median(run.peak_rss_kib for run in group) / KIB_PER_MIB,
                peak_rss_worker_mib=median(run.peak_rss_worker_kib for run in group) / KIB_PER_MIB,
                valkey_us_per_request=median(
                    _per_request_us(run.valkey_cpu_s, run.wrk.requests) for run in group
                ),
                backend_us_per_request=median(
                    _per_request_us(run.backend_cpu_s, run.wrk.requests) for run in group
                ),
                wrk_us_per_request=median(
                    _per_request_us(run.wrk_cpu_s, run.wrk.requests) for run in group
                ),
            )
        )
    return summaries


@dataclass(frozen=True)
class Startup:
    """Cold starts of one target: process start to the first 200 on `/health`, and the
    resident memory (summed over its processes) a second after that."""

    target: str
    seconds: list[float]
    idle_rss_kib: list[int]

    @property
    def cold_start_s(self) -> float:
        return float(statistics.median(self.seconds))

    @property
    def idle_rss_mib(self) -> float:
        return float(statistics.median(self.idle_rss_kib)) / KIB_PER_MIB


# ----------------------------------------------------------------------------------- goals


@dataclass(frozen=True)
class Goal:
    """One target of issue 10, for the service."""

    label: str
    metric: Literal["rps", "p99_ms", "cold_start_s", "idle_rss_mib", "load_rss_mib"]
    bound: float
    at_least: bool  # True: the figure must be >= bound; False: <= bound
    workload: str | None = None
    shape: str | None = None

    def met_by(self, figure: float) -> bool:
        return figure >= self.bound if self.at_least else figure <= self.bound

    @property
    def text(self) -> str:
        sign = ">=" if self.at_least else "<="
        unit = {
            "rps": " req/s",
            "p99_ms": " ms",
            "cold_start_s": " s",
            "idle_rss_mib": " MiB",
            "load_rss_mib": " MiB",
        }[self.metric]
        quantity = "p99 " if self.metric == "p99_ms" else ""
        return f"{quantity}{sign} {_number(self.bound)}{unit}"


GOALS: tuple[Goal, ...] = (
    Goal("cached variable read, -t2 -c32", "rps", READ_RPS_TARGET, True, "variable_read", WIDE),
    Goal("cached input read, -t2 -c32", "rps", READ_RPS_TARGET, True, "input_read", WIDE),
    Goal(
        "cached variable read p99, -t1 -c8",
        "p99_ms",
        READ_P99_TARGET_MS,
        False,
        "variable_read",
        NARROW,
    ),
    Goal(
        "cached input read p99, -t1 -c8", "p99_ms", READ_P99_TARGET_MS, False, "input_read", NARROW
    ),
    Goal("mixed workload p99, -t1 -c8", "p99_ms", MIXED_P99_TARGET_MS, False, "mixed", NARROW),
    Goal("cold start", "cold_start_s", COLD_START_TARGET_S, False),
    Goal("idle RSS", "idle_rss_mib", IDLE_RSS_TARGET_MIB, False),
    Goal("RSS under load, per worker (largest)", "load_rss_mib", LOAD_RSS_TARGET_MIB, False),
)


@dataclass(frozen=True)
class GoalCheck:
    goal: Goal
    figure: float | None  # None: not measured in this run
    bare: float | None  # the bare app's figure, for the framework ceiling
    before: float | None = None  # the earlier revision's figure, when it was measured

    @property
    def verdict(self) -> str:
        if self.figure is None:
            return "not measured"
        return "met" if self.goal.met_by(self.figure) else "missed"


def check_goals(summaries: Sequence[Summary], startups: Sequence[Startup]) -> list[GoalCheck]:
    def summary(target: str, workload: str | None, shape: str | None) -> Summary | None:
        for found in summaries:
            if (found.target, found.workload, found.shape) == (target, workload, shape):
                return found
        return None

    def startup(target: str) -> Startup | None:
        return next((found for found in startups if found.target == target), None)

    def figure(goal: Goal, target: str) -> float | None:
        if goal.metric in ("rps", "p99_ms"):
            found = summary(target, goal.workload, goal.shape)
            return None if found is None else float(getattr(found, goal.metric))
        if goal.metric == "load_rss_mib":
            peaks = [found.peak_rss_worker_mib for found in summaries if found.target == target]
            return max(peaks) if peaks else None
        started = startup(target)
        if started is None:
            return None
        return started.cold_start_s if goal.metric == "cold_start_s" else started.idle_rss_mib

    return [
        GoalCheck(goal, figure(goal, SERVICE), figure(goal, BARE), figure(goal, BEFORE))
        for goal in GOALS
    ]


def goal_for_row(workload: str, shape: str) -> Goal | None:
    return next((goal for goal in GOALS if (goal.workload, goal.shape) == (workload, shape)), None)


# -------------------------------------------------------------------------------- Markdown


def _number(value: float) -> str:
    """8,500 / 812 / 4.25 / 0.318: thousands separated, three significant digits below 100."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def _ratio(service: float | None, bare: float | None) -> str:
    if service is None or not bare:
        return "-"
    return f"{service / bare:.2f}"


def _cell(value: float | None) -> str:
    return "-" if value is None else _number(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Tables:
    """The report's tables, each a Markdown string."""

    throughput: str
    resources: str
    startup: str
    goals: str
    extra: list[str] = field(default_factory=list)


def render_tables(summaries: Sequence[Summary], startups: Sequence[Startup]) -> Tables:
    throughput, resources = _load_tables(summaries)
    return Tables(
        throughput=throughput,
        resources=resources,
        startup=_startup_table(startups),
        goals=_goals_table(summaries, startups),
    )


def _load_tables(summaries: Sequence[Summary]) -> tuple[str, str]:
    by_key = {(s.target, s.workload, s.shape): s for s in summaries}
    rows_seen: list[tuple[str, str]] = []
    for found in summaries:
        if (found.workload, found.shape) not in rows_seen:
            rows_seen.append((found.workload, found.shape))
    rows_seen.sort(key=lambda row: (row[1] != WIDE, list(WORKLOADS).index(row[0])))
    has_h11 = any(found.target == BARE_H11 for found in summaries)
    has_before = any(found.target == BEFORE for found in summaries)

    def get(target: str, workload: str, shape: str, name: str) -> float | None:
        found = by_key.get((target, workload, shape))
        return None if found is None else float(getattr(found, name))

    throughput_rows = []
    resource_rows = []
    for workload, shape in rows_seen:
        service_rps = get(SERVICE, workload, shape, "rps")
        bare_rps = get(BARE, workload, shape, "rps")
        service_p99 = get(SERVICE, workload, shape, "p99_ms")
        bare_p99 = get(BARE, workload, shape, "p99_ms")
        goal = goal_for_row(workload, shape)
        verdict = "-"
        if goal is not None:
            figure = get(SERVICE, workload, shape, goal.metric)
            verdict = goal.text + _verdict(goal, figure)
        row = [
            WORKLOADS[workload],
            f"`{shape}`",
            _cell(service_rps),
            _cell(bare_rps),
            _ratio(service_rps, bare_rps),
            _cell(get(SERVICE, workload, shape, "p50_ms")),
            _cell(service_p99),
            _cell(bare_p99),
            _ratio(service_p99, bare_p99),
        ]
        if has_before:
            before_rps = get(BEFORE, workload, shape, "rps")
            before_p99 = get(BEFORE, workload, shape, "p99_ms")
            row += [
                _cell(before_rps),
                _ratio(service_rps, before_rps),
                _cell(before_p99),
                _ratio(service_p99, before_p99),
            ]
        if has_h11:
            row.append(_cell(get(BARE_H11, workload, shape, "rps")))
        row.append(verdict)
        throughput_rows.append(row)
        resource_rows.append(
            [
                WORKLOADS[workload],
                f"`{shape}`",
                *(
                    _cell(get(SERVICE, workload, shape, name))
                    for name in ("cpu_s", "cpu_us_per_request")
                ),
                _cell(get(BARE, workload, shape, "cpu_us_per_request")),
                *(
                    [_cell(get(BEFORE, workload, shape, "cpu_us_per_request"))]
                    if has_before
                    else []
                ),
                *(
                    _cell(get(SERVICE, workload, shape, name))
                    for name in (
                        "valkey_us_per_request",
                        "backend_us_per_request",
                        "wrk_us_per_request",
                        "peak_rss_mib",
                    )
                ),
                _cell(get(BARE, workload, shape, "peak_rss_mib")),
            ]
        )
    header = [
        "workload",
        "load",
        "service req/s",
        "bare req/s",
        "service / bare",
        "service p50 ms",
        "service p99 ms",
        "bare p99 ms",
        "p99 service / bare",
    ]
    if has_before:
        header += ["before req/s", "service / before", "before p99 ms", "p99 service / before"]
    if has_h11:
        header.append("bare (h11) req/s")
    header.append("issue 10 target")
    resources_header = [
        "workload",
        "load",
        "service CPU s",
        "service CPU µs/req",
        "bare CPU µs/req",
        *(["before CPU µs/req"] if has_before else []),
        "Valkey CPU µs/req",
        "backend CPU µs/req",
        "wrk CPU µs/req",
        "service peak RSS MiB",
        "bare peak RSS MiB",
    ]
    return _table(header, throughput_rows), _table(resources_header, resource_rows)


def _verdict(goal: Goal, figure: float | None) -> str:
    if figure is None:
        return ""
    return ": met" if goal.met_by(figure) else ": **missed**"


def _startup_table(startups: Sequence[Startup]) -> str:
    started = {found.target: found for found in startups}
    rows = []
    for label, metric in (
        ("cold start s (median)", "cold_start_s"),
        ("idle RSS MiB (median)", "idle_rss_mib"),
    ):
        figures = {target: float(getattr(found, metric)) for target, found in started.items()}
        goal = next(goal for goal in GOALS if goal.metric == metric)
        row = [
            label,
            _cell(figures.get(SERVICE)),
            _cell(figures.get(BARE)),
            _ratio(figures.get(SERVICE), figures.get(BARE)),
        ]
        if BEFORE in started:
            row += [
                _cell(figures.get(BEFORE)),
                _ratio(figures.get(SERVICE), figures.get(BEFORE)),
            ]
        if BARE_H11 in started:
            row.append(_cell(figures.get(BARE_H11)))
        row.append(goal.text + _verdict(goal, figures.get(SERVICE)))
        rows.append(row)
    header = ["", "service", "bare", "service / bare"]
    if BEFORE in started:
        header += ["before", "service / before"]
    if BARE_H11 in started:
        header.append("bare (h11)")
    header.append("issue 10 target")
    return _table(header, rows)


def _goals_table(summaries: Sequence[Summary], startups: Sequence[Startup]) -> str:
    checks = check_goals(summaries, startups)
    has_before = any(check.before is not None for check in checks)
    rows = [
        [
            check.goal.label,
            check.goal.text,
            _cell(check.figure),
            _cell(check.bare),
            *([_cell(check.before)] if has_before else []),
            "**missed**" if check.verdict == "missed" else check.verdict,
        ]
        for check in checks
    ]
    header = ["target", "bound", "service", "bare app"]
    if has_before:
        header.append("before")
    return _table([*header, "verdict"], rows)


_COMPUTED: dict[type, tuple[str, ...]] = {
    WrkResult: ("rps", "socket_errors"),
    Startup: ("cold_start_s", "idle_rss_mib"),
    GoalCheck: ("verdict",),
}


def to_json(value: Any) -> Any:
    """Dataclasses (with their computed figures) as plain JSON values."""
    if is_dataclass(value) and not isinstance(value, type):
        plain = {item.name: to_json(getattr(value, item.name)) for item in fields(value)}
        return plain | {name: getattr(value, name) for name in _COMPUTED.get(type(value), ())}
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


# ------------------------------------------------------------------------ docs/benchmarks.md

BEGIN_MARK = "<!-- bench:results:begin (written by ./dev bench; edit outside these marks) -->"
END_MARK = "<!-- bench:results:end -->"

DOC_HEAD = """\
# Benchmarks

Issue 10's benchmark: `./dev bench` (see the README) starts Valkey, a fake Cronium backend and
the service on loopback, drives them with wrk, and writes the section between the marks
below; everything outside the marks is kept, so the history of changes lives here too.

"""

DOC_TAIL = """
## History

Each performance change adds a line here: what changed, and the figures before and after
(from the results above, or from `bench/results/*.json`).
"""


def update_document(existing: str | None, section: str) -> str:
    """`docs/benchmarks.md` with `section` between the marks, whatever else it holds kept."""
    block = f"{BEGIN_MARK}\n{section.rstrip()}\n{END_MARK}\n"
    if existing is None:
        return DOC_HEAD + block + DOC_TAIL
    start, end = existing.find(BEGIN_MARK), existing.find(END_MARK)
    if start == -1 or end == -1 or end < start:
        return existing.rstrip() + "\n\n" + block
    rest = existing[end + len(END_MARK) :].lstrip("\n")
    return existing[:start] + block + ("\n" + rest if rest else "")


@dataclass(frozen=True)
class RunFacts:
    """How a benchmark run was made, for its report."""

    started: str  # UTC, ISO-8601
    minutes: float
    results_file: str
    quick: bool
    targets: list[str]
    repeats: int
    duration_s: float
    warmup_s: float
    workers: int
    service_env: list[str]  # settings given to the service for an experiment
    cold_starts: int
    pool: int
    limit_per_min: int
    peak_per_execution_per_min: float
    fewest_remaining: int | None
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    before: str | None = None  # the earlier revision measured as `service-before`


def _load(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def render_machine(machine: dict[str, Any]) -> str:
    packages = ", ".join(f"{name} {number}" for name, number in machine["packages"].items())
    return "\n".join(
        _wrap(line)
        for line in [
            f"- CPU: {machine['cpu']}, {machine['cores']} cores"
            f" ({machine['cores_usable']} usable by the benchmark)",
            f"- Memory: {machine['memory_gib']} GiB",
            f"- OS: {machine['os']}, kernel {machine['kernel']}",
            f"- Python {machine['python']}; {machine['valkey_server']}; {machine['wrk']}",
            f"- Packages: {packages}",
            f"- Revision: {machine['revision']}",
        ]
    )


def _wrap(text: str, width: int = 95) -> str:
    """A paragraph, or a `- ` bullet, filled to `width` once its figures are in."""
    indent = "  " if text.startswith("- ") else ""
    return textwrap.fill(
        " ".join(text.split()),
        width=width,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def render_method(facts: RunFacts) -> str:
    workers = "1 worker" if facts.workers == 1 else f"{facts.workers} workers"
    settings = "every other setting at its default"
    if facts.service_env:
        given = ", ".join(f"`{item}`" for item in facts.service_env)
        settings = f"set for this experiment: {given}; every other setting at its default"
    bullets = [
        f"""- Everything on this machine, on loopback, sharing its cores: `valkey-server` (no
        persistence), the tests' fake Cronium backend
        (`tests/integration/backend/fake_backend.py`, aiohttp) serving {facts.pool:,} seeded
        executions, each with its own user, input and four variables, the service
        (`cronium-runtime serve`, {workers}, backend mode with Valkey, {settings}: rate limit
        {facts.limit_per_min:,}/min per execution, log level info with an access line per
        request unless set otherwise, audit delivered to the backend) and wrk.""",
        f"""- One token per execution, minted by `cronium-runtime token` with the service's
        secret. Each wrk thread rotates its requests over its own slice of the executions
        (wrk's Lua cannot pin an execution to a connection), so the rate limit is in force and
        never reached: {facts.pool:,} executions keep each one under
        {facts.limit_per_min:,} requests a minute up to
        {facts.pool * facts.limit_per_min / 60:,.0f} req/s in all.""",
        """- Before the load, every execution's input and variables are read once, so the reads
        measured are cache hits; the cache keeps its default TTL.""",
        """- Workloads: the `GET /health` liveness probe; a cached variable read; a cached input
        read; a variable write (lock, backend write, cache update); an output write; a mixed
        script (read input, read 3 variables, write 1, write output, in turn).""",
        f"""- Load shapes `-t2 -c32` and `-t1 -c8`; for each workload and shape, a
        {facts.warmup_s:g} s warm-up per target, then {facts.repeats} run(s) of
        {facts.duration_s:g} s, the targets taking turns within each repeat so that a change
        in the machine's other load touches all of them alike. Figures are medians over the
        repeats. A run in which any request failed (a status of 400 or more, or a socket
        error) stops the benchmark.""",
        """- CPU: user + system time of the target's processes during the run, from
        /proc/<pid>/stat; Valkey's, the fake backend's and wrk's too, per request. Peak RSS:
        VmHWM of each process, reset before each run (`/proc/<pid>/clear_refs`), summed over
        the processes.""",
        f"""- Cold start: from just before the process is started to the first 200 on
        `/health`, median of {facts.cold_starts} starts; idle RSS: VmRSS one second after
        that.""",
        """- The bare app (`bench/bare_app.py`): Litestar with the same routes and request
        bodies, answering constant JSON, under uvicorn with the service's server settings
        (httptools under the service's 64 KiB request-head bound,
        `entrypoints.cli.http_protocol`, the same worker count and keep-alive, no access log);
        its figures are the framework's ceiling, and `service / bare` the share of it the
        service reaches. `bare-h11` is the same app on uvicorn's h11 parser, which `serve`
        used before, for comparison only.""",
    ]
    if facts.before:
        bullets.append(
            f"""- `service-before`: the service built from {facts.before}, in its own
            virtualenv, with the same environment, Valkey and backend (its own store folder),
            measured in turns with the others: `service / before` is the change's effect."""
        )
    return "\n".join(_wrap(bullet) for bullet in bullets)


def render_section(facts: RunFacts, machine: dict[str, Any], tables: Tables) -> str:
    quick = (
        "\n**A `--quick` run: it checks the harness and measures nothing worth comparing.**\n"
        if facts.quick
        else ""
    )
    remaining = (
        "not sampled"
        if facts.fewest_remaining is None
        else f"{facts.fewest_remaining:,} of {facts.limit_per_min:,}"
    )
    opening = _wrap(
        f"""Started {facts.started} and took {facts.minutes:.0f} min; every figure is in
        `{facts.results_file}` (git-ignored). Load average (1, 5, 15 min) before:
        {_load(facts.load_before)}; after: {_load(facts.load_after)}."""
    )
    rate_limit = _wrap(
        f"""In force for every authenticated request and never reached: the busiest run sent
        {facts.peak_per_execution_per_min:,.0f} requests a minute to each execution, under the
        limit of {facts.limit_per_min:,}; the fewest requests an execution sampled after the
        service's runs had left was {remaining}."""
    )
    return f"""\
## Latest run

{opening}
{quick}
### Machine

{render_machine(machine)}

### Method

{render_method(facts)}

### Throughput and latency

{tables.throughput}

### Where the CPU goes

CPU time per request of each process during the service's runs, and the bare app's beside
it: what the service spends above the bare app is its own work.

{tables.resources}

### Start and memory

{tables.startup}

### Targets of issue 10

{tables.goals}

### Rate limit

{rate_limit}
"""
