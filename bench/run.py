"""`./dev bench [--quick]`: issue 10's benchmark, from nothing to `docs/benchmarks.md`.

Starts valkey-server, the fake Cronium backend and the service on loopback, seeds the
executions and mints their tokens, times cold starts, drives wrk through each workload and
load shape against the service and the bare Litestar app in turns, then writes
`bench/results/<time>.json`, prints the Markdown tables and rewrites the results section of
`docs/benchmarks.md`. Whatever it started is stopped at the end, on failure and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import procfs
from bench.machine import git_revision, machine_facts
from bench.processes import (
    HOST,
    REPO,
    BenchError,
    Child,
    Children,
    die_with_parent,
    health_status,
    request,
    spawn,
    start_with_retries,
    valkey_ping,
    wait_until,
)
from bench.report import (
    BARE,
    BARE_H11,
    BEFORE,
    KIB_PER_MIB,
    SERVICE,
    WORKLOADS,
    Run,
    RunFacts,
    Startup,
    WrkResult,
    check_goals,
    failure_message,
    parse_wrk_output,
    per_execution_per_min,
    pool_size,
    rate_limit_quota,
    rate_limit_remaining,
    render_section,
    render_tables,
    summarise,
    to_json,
    update_document,
)

LUA = REPO / "bench" / "wrk" / "workload.lua"
RESULTS = REPO / "bench" / "results"
DOCUMENT = REPO / "docs" / "benchmarks.md"
SHAPES = ((2, 32), (1, 8))
TARGETS = (SERVICE, BEFORE, BARE, BARE_H11)
SERVICES = frozenset({SERVICE, BEFORE})
# Above the Go service's 8,300 req/s and a bare Litestar app's 10-12k on two workers: the
# pool of executions is sized so that even this rate keeps each one under its limit.
PEAK_RPS = 15_000
TOKEN_TTL = "2h"  # noqa: S105 - a lifetime, not a secret
WRK_TIMEOUT = "5s"
IDLE_SETTLE_S = 1.0
RATE_SAMPLE = 8
# The service's environment that the benchmark itself decides (`--service-env` adds others).
MANAGED_ENV = frozenset(
    {"PATH", "HOME", "XDG_DATA_HOME", "CONFIG_FILE", "STORE_PATH", "HOST", "PORT", "JWT_SECRET",
     "BACKEND_URL", "BACKEND_TOKEN", "VALKEY_URL", "WORKERS", "DRAIN_DELAY"}
)  # fmt: skip

INPUT = {"name": "bench", "items": [1, 2, 3], "nested": {"a": "b"}}
VARIABLES = {
    "greeting": "hello",
    "threshold": 0.75,
    "settings": {"retries": 3, "mode": "fast", "targets": ["a", "b"]},
    "counter": 0,
}


@dataclass(frozen=True)
class Execution:
    id: str
    user: str
    token: str = ""


@dataclass
class Target:
    name: str
    child: Child
    port: int


@dataclass
class State:
    valkey: Child | None = None
    backend: Child | None = None
    targets: list[Target] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    fewest_remaining: int | None = None
    peak_per_execution: float = 0.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./dev bench",
        description="Issue 10's benchmark: the service and a bare Litestar app under wrk.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="check the harness: 1 repeat of 3 s, 1 s warm-ups, 2 cold starts; docs untouched",
    )
    parser.add_argument("--repeats", type=int, help="runs per workload and shape (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up (default 3)")
    parser.add_argument("--cold-starts", type=int, help="cold starts per target (default 5)")
    parser.add_argument(
        "--workers", type=int, default=1, help="server workers, service and bare app (default 1)"
    )
    parser.add_argument(
        "--before",
        metavar="DIR",
        type=Path,
        help="also measure the service of this checkout (its own ./dev-built .venv), e.g. a"
        " `git worktree` of the revision before a change, as target service-before",
    )
    parser.add_argument(
        "--targets",
        default=",".join(name for name in TARGETS if name != BEFORE),
        help=f"comma-separated, of {', '.join(TARGETS)} (default: all)",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, of {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the service only, for an experiment (LOG_LEVEL=warn); repeatable,"
        " named in the report",
    )
    parser.add_argument(
        "--profile",
        metavar="WORKLOAD",
        choices=tuple(WORKLOADS),
        help="instead of the benchmark: profile the service under one workload with py-spy"
        " (bench/profile.py); results in bench/results/profile-*",
    )
    parser.add_argument(
        "--profile-seconds", type=float, default=15.0, help="seconds per profile run (default 15)"
    )
    parser.add_argument(
        "--profile-rate", type=int, default=200, help="py-spy samples a second (default 200)"
    )
    parser.add_argument(
        "--profile-unpinned",
        action="store_true",
        help="do not give the profiled service a core of its own (see bench/profile.py)",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (logs, store, Valkey)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.repeats = args.repeats or (1 if quick else 3)
    args.duration = args.duration or (3.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 3.0)
    args.cold_starts = args.cold_starts or (2 if quick else 5)
    args.targets = _choices(parser, "--targets", args.targets, TARGETS)
    args.workloads = _choices(parser, "--workloads", args.workloads, tuple(WORKLOADS))
    if args.before is not None:
        args.before = args.before.resolve()
        if not (args.before / ".venv" / "bin" / "cronium-runtime").is_file():
            parser.error(
                f"--before {args.before}: no .venv/bin/cronium-runtime there; run"
                " `./dev cli --version` in that checkout first"
            )
        if BEFORE not in args.targets:
            args.targets = [name for name in TARGETS if name in {*args.targets, BEFORE}]
    elif BEFORE in args.targets:
        parser.error("--targets service-before needs --before DIR")
    if SERVICE not in args.targets:
        parser.error("--targets must include service")
    for item in args.service_env:
        name, equals, _ = item.partition("=")
        if not equals or not name or name in MANAGED_ENV:
            parser.error(
                f"--service-env {item!r}: expected NAME=VALUE, NAME not one the benchmark sets"
                f" ({', '.join(sorted(MANAGED_ENV))})"
            )
    if args.profile and args.workers != 1:
        parser.error("--profile samples one worker's process: leave --workers at 1")
    if min(args.repeats, args.cold_starts, args.workers) < 1 or args.duration <= 0:
        parser.error("--repeats, --cold-starts, --workers and --duration must be positive")
    return args


def _choices(
    parser: argparse.ArgumentParser, option: str, text: str, allowed: tuple[str, ...]
) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in allowed]
    if unknown or not chosen:
        parser.error(f"{option}: {', '.join(unknown) or 'none given'}; choose from {allowed}")
    return [item for item in allowed if item in chosen]


def say(text: str) -> None:
    print(f"==> {text}", file=sys.stderr, flush=True)


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: stop everything, then exit."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


class Bench:
    def __init__(self, args: argparse.Namespace, children: Children, folder: Path) -> None:
        self.args = args
        self.children = children
        self.folder = folder
        self.state = State()
        self.runs: list[Run] = []
        self.startups: list[Startup] = []
        self.secret = secrets.token_urlsafe(48)
        self.backend_token = secrets.token_urlsafe(24)
        self.pool_file = folder / "pool.txt"
        self.limit = 0
        self.service_env: dict[str, str] = {}

    # ------------------------------------------------------------------- the environment

    def start_valkey(self) -> None:
        folder = self.folder / "valkey"
        folder.mkdir()
        binary = shutil.which("valkey-server")
        if binary is None:
            raise BenchError("valkey-server is not installed: `./dev bench` installs it")

        def start(port: int) -> Child:
            argv = [
                binary,
                "--port", str(port),
                "--bind", HOST,
                "--dir", str(folder),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
            ]  # fmt: skip
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            return self.children.add(spawn("valkey-server", argv, env=env, log=folder / "log"))

        def ready(child: Child, port: int) -> None:
            wait_until(lambda: valkey_ping(port), child, "valkey-server")

        self.state.valkey, port = start_with_retries(start, ready)
        self.service_env["VALKEY_URL"] = f"valkey://{HOST}:{port}"

    def plan_executions(self) -> None:
        """The pool: sized from the service's own rate-limit setting (its default unless
        `--service-env` sets one), each execution with a user of its own so that writes do
        not wait on each other's variable locks."""
        from entrypoints.settings import SettingsError, load_settings

        try:
            self.limit = load_settings(self.service_env).security.rate_limit_per_min
        except SettingsError as error:
            raise BenchError(f"the service's settings: {error}") from None
        # At least one execution per wrk thread: each thread rotates over a slice of its own.
        count = max(pool_size(PEAK_RPS, self.limit), *(threads for threads, _ in SHAPES))
        self.state.executions = [
            Execution(id=f"bench-{index:05d}", user=f"bench-user-{index:05d}")
            for index in range(count)
        ]

    def start_backend(self) -> None:
        folder = self.folder / "backend"
        folder.mkdir()
        seed = folder / "seed.json"
        seed.write_text(
            json.dumps(
                {
                    "token": self.backend_token,
                    "contexts": {
                        execution.id: _context(index, execution)
                        for index, execution in enumerate(self.state.executions)
                    },
                    "variables": [
                        [execution.user, key, value]
                        for execution in self.state.executions
                        for key, value in VARIABLES.items()
                    ],
                }
            )
        )
        ready_file = folder / "ready"

        def start(port: int) -> Child:
            ready_file.unlink(missing_ok=True)
            argv = [
                sys.executable, "-m", "bench.fake_backend_server",
                "--seed", str(seed), "--port", str(port), "--ready-file", str(ready_file),
            ]  # fmt: skip
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.folder)}
            return self.children.add(spawn("fake backend", argv, env=env, log=folder / "log"))

        def ready(child: Child, port: int) -> None:
            wait_until(
                lambda: ready_file.exists() and ready_file.read_text().strip() == str(port),
                child,
                "the fake backend",
            )

        self.state.backend, self.backend_port = start_with_retries(start, ready)
        self.service_env["BACKEND_URL"] = f"http://{HOST}:{self.backend_port}"

    def prepare_service_env(self) -> None:
        home = self.folder / "home"
        home.mkdir()
        empty_config = self.folder / "empty-config.yaml"
        empty_config.touch()
        # Only what the benchmark decides; nothing else of this machine's environment.
        self.service_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"),
            "CONFIG_FILE": str(empty_config),
            "STORE_PATH": str(self.folder / "store"),
            "HOST": HOST,
            "JWT_SECRET": self.secret,
            "BACKEND_TOKEN": self.backend_token,
            "WORKERS": str(self.args.workers),
            # Stopping is not measured: no readiness drain before it.
            "DRAIN_DELAY": "0s",
        }
        self.service_env.update(item.split("=", 1) for item in self.args.service_env)

    def mint_tokens(self) -> None:
        lines = "".join(f"{e.id} {e.user}\n" for e in self.state.executions)
        done = subprocess.run(
            [sys.executable, "-m", "bench.mint_tokens", TOKEN_TTL],
            input=lines,
            env=self.service_env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"cronium-runtime token failed:\n{done.stderr}")
        tokens = dict(line.split(" ", 1) for line in done.stdout.splitlines())
        self.state.executions = [
            Execution(id=e.id, user=e.user, token=tokens[e.id]) for e in self.state.executions
        ]
        self.pool_file.write_text("".join(f"{e.id} {e.token}\n" for e in self.state.executions))

    # ---------------------------------------------------------------------- the targets

    def _argv(self, name: str) -> tuple[list[str], dict[str, str]]:
        if name == SERVICE:
            return [str(Path(sys.executable).with_name("cronium-runtime")), "serve"], dict(
                self.service_env
            )
        if name == BEFORE:
            # Its own store folder: the two services' local files stay apart.
            env = dict(self.service_env, STORE_PATH=str(self.folder / "store-before"))
            return [str(self.args.before / ".venv" / "bin" / "cronium-runtime"), "serve"], env
        http = "h11" if name == BARE_H11 else "bounded"
        argv = [sys.executable, "-m", "bench.bare_app", "--http", http]
        argv += ["--workers", str(self.args.workers)]
        return argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.folder)}

    def start_target(self, name: str, log: Path) -> tuple[Child, int]:
        argv, env = self._argv(name)

        def start(port: int) -> Child:
            if name in SERVICES:
                env["PORT"] = str(port)
                return self.children.add(spawn(name, argv, env=env, log=log, cwd=self.folder))
            return self.children.add(spawn(name, [*argv, "--port", str(port)], env=env, log=log))

        def ready(child: Child, port: int) -> None:
            wait_until(lambda: health_status(port) == 200, child, name)

        return start_with_retries(start, ready)

    def cold_starts(self) -> None:
        for name in self.args.targets:
            seconds, idle = [], []
            for attempt in range(self.args.cold_starts):
                child, _ = self.start_target(name, self.folder / "cold-starts" / f"{name}.log")
                # start_with_retries returns once the first 200 has come: that is the start.
                seconds.append(time.monotonic() - child.started_at)
                time.sleep(IDLE_SETTLE_S)
                idle.append(sum(procfs.memory_kib(procfs.tree(child.pid), "VmRSS").values()))
                self.stop_target(name, child)
                say(
                    f"cold start {attempt + 1}/{self.args.cold_starts} {name}:"
                    f" {seconds[-1]:.3f} s, idle RSS {idle[-1] / KIB_PER_MIB:.1f} MiB"
                )
            self.startups.append(Startup(target=name, seconds=seconds, idle_rss_kib=idle))

    def stop_target(self, name: str, child: Child) -> None:
        """Stop a target and check that it stopped as asked: the service exits 0 on SIGTERM;
        plain uvicorn (the bare app) ends by raising SIGTERM again once it has shut down."""
        status = self.children.stop(child)
        expected = {0} if name in SERVICES else {0, -signal.SIGTERM}
        if status not in expected:
            raise BenchError(
                f"{name} exited with status {status} on SIGTERM; its log:\n{child.log_tail()}"
            )

    def start_targets(self) -> None:
        for name in self.args.targets:
            child, port = self.start_target(name, self.folder / "logs" / f"{name}.log")
            self.state.targets.append(Target(name=name, child=child, port=port))
        self.check_targets()

    def check_targets(self) -> None:
        """Each target answers each request of the workloads with 2xx; the service is in
        backend mode with Valkey up and the rate limit it announces is the planned one."""
        service = self.target(SERVICE)
        ready = request(service.port, "GET", "/health/ready")
        checks = ready.json().get("checks", {})
        if ready.status != 200 or ready.json().get("status") != "ready":
            raise BenchError(f"the service is not ready: {ready.status} {ready.body!r}")
        for dependency in ("backend", "valkey"):
            if checks.get(dependency, {}).get("status") != "up":
                raise BenchError(f"the service's {dependency} is not up: {checks}")
        first = self.state.executions[0]
        for target in self.state.targets:
            for method, path, body in _probes(first):
                answer = request(target.port, method, path, token=first.token, body=body)
                if not 200 <= answer.status < 300:
                    raise BenchError(
                        f"{target.name}: {method} {path} answered {answer.status}:"
                        f" {answer.body[:500]!r}"
                    )
                if target.name == SERVICE and path.endswith("/input"):
                    announced = rate_limit_quota(answer.headers["ratelimit-policy"])
                    if announced != self.limit:
                        raise BenchError(
                            f"the service announces a limit of {announced}/min, not the"
                            f" {self.limit}/min the pool was sized for"
                        )

    def fill_cache(self) -> None:
        """Read every execution's input and variables once, so that the reads measured are
        cache hits; over one kept-alive connection."""
        import http.client

        service = self.target(SERVICE)
        connection = http.client.HTTPConnection(HOST, service.port, timeout=30)
        try:
            for execution in self.state.executions:
                base = f"/executions/{execution.id}"
                paths = [f"{base}/input"]
                paths += [f"{base}/variables/{key}" for key in VARIABLES if key != "counter"]
                for path in paths:
                    connection.request(
                        "GET", path, headers={"Authorization": f"Bearer {execution.token}"}
                    )
                    answer = connection.getresponse()
                    body = answer.read()
                    if answer.status != 200:
                        raise BenchError(f"filling the cache: GET {path}: {answer.status} {body!r}")
        finally:
            connection.close()

    def target(self, name: str) -> Target:
        return next(target for target in self.state.targets if target.name == name)

    # ----------------------------------------------------------------------------- wrk

    def wrk(
        self, target: Target, workload: str, threads: int, connections: int, seconds: float
    ) -> WrkResult:
        argv = [
            "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s",
            "--timeout", WRK_TIMEOUT, "-s", str(LUA), f"http://{HOST}:{target.port}",
            "--", str(self.pool_file), workload, str(threads),
        ]  # fmt: skip
        wrk = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - the harness starts no threads
        )
        try:
            output, _ = wrk.communicate(timeout=seconds + 60)
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
        if wrk.returncode != 0:
            raise BenchError(f"wrk exited with status {wrk.returncode}:\n{output}")
        result = parse_wrk_output(output)
        if (why := failure_message(result)) is not None:
            raise BenchError(
                f"{target.name}, {workload}, -t{threads} -c{connections}: {why}.\n"
                f"{self._diagnose(target, workload)}"
                f"The last lines of its log:\n{target.child.log_tail()}"
            )
        return result

    def _diagnose(self, target: Target, workload: str) -> str:
        """One request of each kind the workload sends, and what it answered."""
        first = self.state.executions[0]
        lines = ["One request of each kind, now:"]
        for method, path, body in _probes(first):
            try:
                answer = request(target.port, method, path, token=first.token, body=body)
                lines.append(f"  {method} {path}: {answer.status} {answer.body[:300]!r}")
            except OSError as error:
                lines.append(f"  {method} {path}: {error}")
        return "\n".join(lines) + "\n"

    def measure(
        self, target: Target, workload: str, threads: int, connections: int, repeat: int
    ) -> Run:
        pids = procfs.tree(target.child.pid)
        procfs.reset_peak_memory(pids)
        assert self.state.valkey is not None and self.state.backend is not None
        valkey, backend = self.state.valkey.pid, self.state.backend.pid
        others = [valkey, backend]
        before = procfs.cpu_seconds(pids + others)
        wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = self.wrk(target, workload, threads, connections, self.args.duration)
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        pids = procfs.tree(target.child.pid)
        after = procfs.cpu_seconds(pids + others)
        peaks = procfs.memory_kib(pids, "VmHWM")

        def spent(pid_list: list[int]) -> float:
            return sum(after[pid] - before.get(pid, 0.0) for pid in pid_list if pid in after)

        run = Run(
            target=target.name,
            workload=workload,
            shape=f"-t{threads} -c{connections}",
            repeat=repeat,
            wrk=result,
            cpu_s=spent(pids),
            peak_rss_kib=sum(peaks.values()),
            peak_rss_worker_kib=max(peaks.values(), default=0),
            valkey_cpu_s=spent([valkey]),
            backend_cpu_s=spent([backend]),
            wrk_cpu_s=(wrk_after.ru_utime + wrk_after.ru_stime)
            - (wrk_before.ru_utime + wrk_before.ru_stime),
        )
        target.child.truncate_log()
        return run

    def sample_remaining(self) -> int:
        """The fewest requests left, right now, to a few executions spread over the pool."""
        service = self.target(SERVICE)
        executions = self.state.executions
        step = max(1, len(executions) // RATE_SAMPLE)
        fewest = None
        for execution in executions[::step][:RATE_SAMPLE]:
            answer = request(
                service.port, "GET", f"/executions/{execution.id}/input", token=execution.token
            )
            left = rate_limit_remaining(answer.headers["ratelimit"])
            fewest = left if fewest is None else min(fewest, left)
        assert fewest is not None
        return fewest

    def load(self) -> None:
        pool = len(self.state.executions)
        for threads, connections in SHAPES:
            for workload in self.args.workloads:
                shape = f"-t{threads} -c{connections}"
                if self.args.warmup > 0:
                    for target in self.state.targets:
                        say(f"warm-up {target.name} {workload} {shape}")
                        self.wrk(target, workload, threads, connections, self.args.warmup)
                        target.child.truncate_log()
                for repeat in range(1, self.args.repeats + 1):
                    for target in self.state.targets:
                        run = self.measure(target, workload, threads, connections, repeat)
                        self.runs.append(run)
                        note = ""
                        if target.name == SERVICE and workload != "health":
                            rate = per_execution_per_min(run.wrk.rps, pool)
                            self.state.peak_per_execution = max(self.state.peak_per_execution, rate)
                            left = self.sample_remaining()
                            if self.state.fewest_remaining is not None:
                                left = min(left, self.state.fewest_remaining)
                            self.state.fewest_remaining = left
                            note = (
                                f"; {rate:,.0f}/min per execution (limit {self.limit:,}),"
                                f" fewest left {left:,}"
                            )
                        say(
                            f"{target.name:<14} {workload:<14} {shape} {repeat}/"
                            f"{self.args.repeats}: {run.wrk.rps:>8,.0f} req/s"
                            f"  p50 {run.wrk.p50_ms:6.2f} ms  p99 {run.wrk.p99_ms:6.2f} ms"
                            f"  CPU {run.cpu_s:5.2f} s  peak RSS"
                            f" {run.peak_rss_kib / KIB_PER_MIB:5.1f} MiB{note}"
                        )

    def run(self) -> None:
        say(f"working in {self.folder}")
        self.prepare_service_env()
        self.start_valkey()
        self.plan_executions()
        self.start_backend()
        say(f"minting {len(self.state.executions):,} tokens with `cronium-runtime token`")
        self.mint_tokens()
        self.cold_starts()
        self.start_targets()
        say("reading every execution's input and variables once (cache fill)")
        self.fill_cache()
        self.load()
        for target in list(self.state.targets):
            self.stop_target(target.name, target.child)


def _context(index: int, execution: Execution) -> dict[str, Any]:
    return {
        "executionId": execution.id,
        "jobId": f"job-{index:05d}",
        "eventId": "event-bench",
        "userId": execution.user,
        "metadata": {"input": INPUT, "trigger": "bench"},
        "event": {
            "id": "event-bench",
            "name": "Benchmark",
            "type": "PYTHON",
            "content": "print(1)",
            "runLocation": "LOCAL",
            "serverId": None,
        },
        "user": {"id": execution.user, "email": f"{execution.user}@example.com", "name": "Bench"},
    }


def _probes(execution: Execution) -> list[tuple[str, str, Any]]:
    base = f"/executions/{execution.id}"
    return [
        ("GET", "/health", None),
        ("GET", f"{base}/input", None),
        ("GET", f"{base}/variables/settings", None),
        ("PUT", f"{base}/variables/counter", {"value": {"count": 42, "by": "bench"}}),
        ("POST", f"{base}/output", {"data": {"greeting": "hello, bench"}}),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed: `./dev bench` installs it", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    if args.profile:
        from bench import profile

        return profile.main(args)
    load_before = os.getloadavg()
    started = datetime.now(UTC)
    machine = machine_facts(REPO)
    benches: list[Bench] = []

    def run(children: Children, folder: Path) -> None:
        benches.append(Bench(args, children, folder))
        benches[0].run()

    failed = supervised("bench", "cronium-bench-", keep=args.keep, work=run)
    if failed is not None:
        return failed
    return report(args, benches[0], started, load_before, machine)


def supervised(
    label: str, prefix: str, *, keep: bool, work: Callable[[Children, Path], None]
) -> int | None:
    """Runs `work` with a fresh folder and a set of child processes, and stops every child
    whatever happens; the exit status of a failure, or None."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    children = Children()
    ok = False
    try:
        work(children, folder)
        ok = True
    except KeyboardInterrupt:
        say(f"interrupted: stopping everything the {label} started")
        return 130
    except BenchError as error:
        print(f"\n{label}: FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the stopping short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        children.close()
        if ok and not keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            say(f"logs kept in {folder}")
    return None


def report(
    args: argparse.Namespace,
    bench: Bench,
    started: datetime,
    load_before: tuple[float, float, float],
    machine: dict[str, Any],
) -> int:
    load_after = os.getloadavg()
    summaries = summarise(bench.runs)
    tables = render_tables(summaries, bench.startups)
    RESULTS.mkdir(exist_ok=True)
    results_file = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    facts = RunFacts(
        started=started.strftime("%Y-%m-%d %H:%M UTC"),
        minutes=(datetime.now(UTC) - started).total_seconds() / 60,
        results_file=str(results_file.relative_to(REPO)),
        quick=args.quick,
        targets=args.targets,
        repeats=args.repeats,
        duration_s=args.duration,
        warmup_s=args.warmup,
        workers=args.workers,
        service_env=list(args.service_env),
        cold_starts=args.cold_starts,
        pool=len(bench.state.executions),
        limit_per_min=bench.limit,
        peak_per_execution_per_min=bench.state.peak_per_execution,
        fewest_remaining=bench.state.fewest_remaining,
        load_before=load_before,
        load_after=load_after,
        before=git_revision(args.before) if args.before else None,
    )
    results = {
        "facts": asdict(facts),
        "machine": machine,
        "startups": to_json(bench.startups),
        "summaries": to_json(summaries),
        "goals": to_json(check_goals(summaries, bench.startups)),
        "runs": to_json(bench.runs),
    }
    results_file.write_text(json.dumps(results, indent=2) + "\n")
    section = render_section(facts, machine, tables)
    print(section)
    if args.quick or args.no_docs:
        say(f"results in {results_file}; docs/benchmarks.md left as it was")
    else:
        DOCUMENT.parent.mkdir(exist_ok=True)
        existing = DOCUMENT.read_text() if DOCUMENT.exists() else None
        DOCUMENT.write_text(update_document(existing, section))
        say(f"results in {results_file} and {DOCUMENT.relative_to(REPO)}")
    return 0
