"""`./dev bench --profile WORKLOAD`: where the service's CPU goes under one workload.

The same stack as the benchmark (valkey-server, the fake backend, the service with one
worker, the executions and their tokens, the cache filled), the service's threads on the
last core and everything else the harness starts on the others (`--profile-unpinned`: not),
then, at `-t2 -c32`:

1. a warm-up, and a clean run of `--profile-seconds` (no profiler): req/s, latency, the CPU
   time per request of each process and of each of the service's threads (user, system, and
   its time waiting for a core), from /proc, with Valkey's `INFO commandstats` and the
   service's `/metrics` read before and after it;
2. a short run under Valkey's `MONITOR`: the service's round trips per request by command;
3. the same run as 1 with `py-spy record` sampling the service's process (Python frames
   only, no `--native`).

It writes to `bench/results/profile-<time>-<workload>.*`: `.raw.txt` (py-spy's collapsed
stacks), `.speedscope.json` (open it in https://www.speedscope.app), `.json` (every
figure) and `.md` (the tables, also printed): the share and the µs of CPU per request of
each component of the service (see `bench.profile_analysis.classify`), the functions with
the most time, the round trips and the counters per request.

Why the pinning: py-spy samples a thread whenever it is runnable, also while it waits for
a core. Sharing its core with Valkey, the backend and wrk, the service is preempted by the
process it has just woken right after each socket write, and the samples pile up there
(unpinned, 31% of the samples of a cached read ended in a socket write, while the kernel
as a whole had 11% of the service's on-CPU time by `perf`). On a core of its own its waits
are the other load's, spread over its code alike, which the per-thread scaling assumes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import procfs
from bench import profile_analysis as analysis
from bench.machine import machine_facts
from bench.processes import HOST, BenchError, Children, request, spawn, wait_until
from bench.report import SERVICE, WORKLOADS, Run
from bench.run import RESULTS, Bench, Target, say, supervised

THREADS, CONNECTIONS = 2, 32
MONITOR_SECONDS = 3.0
TOP = 25


def _valkey_info(port: int, section: str) -> str:
    """`INFO <section>` over a raw connection: the reply is one RESP bulk string."""
    with socket.create_connection((HOST, port), timeout=5.0) as connection:
        connection.sendall(f"INFO {section}\r\n".encode())
        reply = b""
        while b"\r\n" not in reply:
            reply += connection.recv(65536)
        head, _, body = reply.partition(b"\r\n")
        if not head.startswith(b"$"):
            raise BenchError(f"valkey-server answered INFO with {head!r}")
        length = int(head[1:])
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
    return body[:length].decode()


@dataclass(frozen=True)
class ThreadTimes:
    """One thread's times so far: CPU in user and kernel mode (/proc/<pid>/task/<tid>/stat)
    and the time it spent runnable but waiting for a core (schedstat's run delay)."""

    name: str
    user_s: float
    system_s: float
    waiting_s: float

    def minus(self, before: ThreadTimes | None) -> ThreadTimes:
        if before is None:
            return self
        return ThreadTimes(
            self.name,
            self.user_s - before.user_s,
            self.system_s - before.system_s,
            self.waiting_s - before.waiting_s,
        )


def thread_times(pid: int) -> dict[int, ThreadTimes]:
    """Each thread of `pid`, by thread id."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            stat = (task / "stat").read_text()
            schedstat = (task / "schedstat").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        threads[int(task.name)] = ThreadTimes(
            name=name,
            user_s=int(fields[11]) / procfs.CLOCK_TICKS,
            system_s=int(fields[12]) / procfs.CLOCK_TICKS,
            waiting_s=int(schedstat[1]) / 1e9 if len(schedstat) > 1 else 0.0,
        )
    return threads


def times_delta(
    before: dict[int, ThreadTimes], after: dict[int, ThreadTimes]
) -> dict[int, ThreadTimes]:
    return {tid: times.minus(before.get(tid)) for tid, times in after.items()}


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of `pid` on `cores` (threads it starts later inherit the mask)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cores)


class Profiler:
    def __init__(self, args: argparse.Namespace, bench: Bench, children: Children) -> None:
        self.args = args
        self.bench = bench
        self.children = children
        self.workload: str = args.profile
        self.py_spy = Path(sys.executable).with_name("py-spy")
        if not self.py_spy.exists():
            raise BenchError(f"{self.py_spy} is missing: `./dev bench` installs the dev extras")

    @property
    def valkey_port(self) -> int:
        port = urlsplit(self.bench.service_env["VALKEY_URL"]).port
        assert port is not None
        return port

    def commandstats(self) -> dict[str, analysis.CommandStat]:
        return analysis.parse_commandstats(_valkey_info(self.valkey_port, "commandstats"))

    def metrics(self, target: Target) -> dict[str, float]:
        return analysis.parse_metrics(request(target.port, "GET", "/metrics").body.decode())

    def clean_run(self, target: Target) -> dict[str, Any]:
        say(f"clean run: {self.workload} -t{THREADS} -c{CONNECTIONS}, {self.args.duration:g} s")
        stats_before, metrics_before = self.commandstats(), self.metrics(target)
        threads_before = thread_times(target.child.pid)
        run = self.bench.measure(target, self.workload, THREADS, CONNECTIONS, 1)
        threads = times_delta(threads_before, thread_times(target.child.pid))
        stats = analysis.commandstats_delta(stats_before, self.commandstats())
        metrics = analysis.metrics_delta(metrics_before, self.metrics(target))
        return {"run": run, "threads": threads, "commandstats": stats, "metrics": metrics}

    def monitor_run(self, target: Target, folder: Path) -> dict[str, Any]:
        say(f"MONITOR run: {self.workload}, {MONITOR_SECONDS:g} s")
        log = folder / "monitor.txt"
        argv = ["valkey-cli", "-h", HOST, "-p", str(self.valkey_port), "monitor"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        monitor = self.children.add(spawn("valkey-cli monitor", argv, env=env, log=log))
        wait_until(lambda: log.read_text().startswith("OK"), monitor, "valkey-cli monitor")
        result = self.bench.wrk(target, self.workload, THREADS, CONNECTIONS, MONITOR_SECONDS)
        self.children.stop(monitor)
        trips, scripted = analysis.parse_monitor(log.read_text(errors="replace"))
        return {"requests": result.requests, "round_trips": trips, "scripted": scripted}

    def profiled_run(
        self, target: Target, raw: Path, folder: Path
    ) -> tuple[Run, dict[int, ThreadTimes]]:
        say(f"profiled run: py-spy at {self.args.profile_rate} Hz, {self.args.duration:g} s")
        log = folder / "py-spy.log"
        argv = [
            str(self.py_spy), "record", "--pid", str(target.child.pid),
            "--format", "raw", "--function", "--full-filenames", "--threads",
            "--rate", str(self.args.profile_rate), "--output", str(raw),
        ]  # fmt: skip
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        spy = self.children.add(spawn("py-spy", argv, env=env, log=log))
        wait_until(lambda: "Sampling process" in log.read_text(), spy, "py-spy")
        threads_before = thread_times(target.child.pid)
        run = self.bench.measure(target, self.workload, THREADS, CONNECTIONS, 2)
        threads = times_delta(threads_before, thread_times(target.child.pid))
        # py-spy writes its output when interrupted, as after a Ctrl-C.
        spy.popen.send_signal(signal.SIGINT)
        try:
            spy.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise BenchError(f"py-spy did not stop; its log:\n{spy.log_tail()}") from None
        self.children.stop(spy)
        if not raw.exists():
            raise BenchError(f"py-spy wrote no profile; its log:\n{spy.log_tail()}")
        return run, threads


def _per_request(run: Run) -> dict[str, float]:
    requests = max(1, run.wrk.requests)
    return {
        "requests": run.wrk.requests,
        "rps": run.wrk.rps,
        "p50_ms": run.wrk.p50_ms,
        "p99_ms": run.wrk.p99_ms,
        "service_cpu_s": run.cpu_s,
        "service_us": run.cpu_s * 1e6 / requests,
        "valkey_us": run.valkey_cpu_s * 1e6 / requests,
        "backend_us": run.backend_cpu_s * 1e6 / requests,
        "wrk_us": run.wrk_cpu_s * 1e6 / requests,
    }


def _run_line(name: str, figures: dict[str, float]) -> str:
    return (
        f"| {name} | {figures['rps']:,.0f} | {figures['p50_ms']:.2f} | {figures['p99_ms']:.1f} |"
        f" {figures['service_cpu_s']:.2f} | {figures['service_us']:,.0f} |"
        f" {figures['valkey_us']:,.0f} | {figures['backend_us']:,.0f} | {figures['wrk_us']:,.0f} |"
    )


def _threads_table(
    facts: dict[str, Any], samples: list[analysis.Sample]
) -> tuple[str, dict[int, float]]:
    """Each thread's times in both runs and py-spy's samples of it; and the clean run's µs
    of CPU per request of each thread, which the samples are scaled to."""
    rate = facts["rate"]
    sampled: dict[int, int] = {}
    names: dict[int, str] = {}
    for sample in samples:
        tid = analysis.thread_id(sample.thread)
        if tid is not None:
            sampled[tid] = sampled.get(tid, 0) + sample.count
            names[tid] = sample.thread.partition(": ")[2]
    clean: dict[int, ThreadTimes] = facts["clean_threads"]
    profiled: dict[int, ThreadTimes] = facts["profiled_threads"]
    per_request = 1e6 / max(1, facts["clean"]["requests"])
    thread_us = {tid: (t.user_s + t.system_s) * per_request for tid, t in clean.items()}
    lines = [
        "| thread | clean run: user µs/req | system µs/req | waiting for a core µs/req |"
        " profiled run: CPU s | waiting s | py-spy samples, as s |",
        "|---|---|---|---|---|---|---|",
    ]
    for tid in sorted(clean, key=lambda tid: -thread_us[tid]):
        times = clean[tid]
        if thread_us[tid] <= 0 and not sampled.get(tid):
            continue
        during = profiled.get(tid, ThreadTimes(times.name, 0.0, 0.0, 0.0))
        lines.append(
            f"| {names.get(tid, times.name)} ({tid}) | {times.user_s * per_request:,.0f} |"
            f" {times.system_s * per_request:,.0f} | {times.waiting_s * per_request:,.0f} |"
            f" {during.user_s + during.system_s:.2f} | {during.waiting_s:.2f} |"
            f" {sampled.get(tid, 0) / rate:.2f} |"
        )
    return "\n".join(lines), thread_us


def render(facts: dict[str, Any], samples: list[analysis.Sample]) -> str:
    clean, profiled = facts["clean"], facts["profiled"]
    threads, thread_us = _threads_table(facts, samples)
    weighed = analysis.weigh(samples, thread_us)
    components = analysis.component_shares(weighed)
    facts["components"] = [asdict(row) for row in components]
    packages = [row for row in analysis.package_self_time(weighed) if row.share >= 0.005]
    top_self, _ = analysis.top_functions(weighed, own_only=False, limit=TOP)
    _, top_own = analysis.top_functions(weighed, own_only=True, limit=TOP)
    monitor = facts["monitor"]
    env = ", ".join(f"`{item}`" for item in facts["service_env"]) or "none"
    parts = [
        f"## Profile: {WORKLOADS[facts['workload']]}, `-t{THREADS} -c{CONNECTIONS}`",
        "",
        f"{facts['started']}, revision {facts['revision']}; `--service-env`: {env}; runs of"
        f" {facts['seconds']:g} s. Load average (1, 5, 15 min) before: {facts['load_before']};"
        f" after: {facts['load_after']}.",
        "",
        "| run | req/s | p50 ms | p99 ms | service CPU s | service µs/req | Valkey µs/req |"
        " backend µs/req | wrk µs/req |",
        "|---|---|---|---|---|---|---|---|---|",
        _run_line("clean (no profiler)", clean),
        _run_line(f"under py-spy ({facts['rate']} Hz)", profiled),
        "",
        "### Threads of the service",
        "",
        "py-spy counts a thread as busy while it is runnable, also while it waits for a core,"
        " so its samples are scaled, thread by thread, to the CPU time /proc counted in the"
        " clean run: within a thread, a stack's share of the samples is taken as its share of"
        " that thread's CPU. That holds while the waits fall anywhere in the code alike:"
        + (
            " the service ran alone on its core (pinned), so that the processes it wakes"
            " (Valkey, the backend, wrk) cannot preempt it right after each socket write."
            if facts["pinned"]
            else " it ran unpinned, so the processes it wakes preempt it right after its"
            " socket writes, and the samples there overstate their CPU."
        ),
        "",
        threads,
        "",
        "### Components",
        "",
        analysis.render_components(components),
        "",
        f"### Valkey round trips ({monitor['requests']:,} requests under MONITOR)",
        "",
        analysis.render_round_trips(
            monitor["round_trips"], monitor["scripted"], max(1, monitor["requests"]),
            facts["commandstats"],
        ),
        "",
        "### Counters of the service per request (clean run, from /metrics)",
        "",
        analysis.render_metrics(facts["metrics"], max(1, clean["requests"])),
        "",
        "### Time by the package of the innermost frame",
        "",
        analysis.render_top(packages, "package"),
        "",
        "### Functions with the most time of their own",
        "",
        analysis.render_top(top_self, "function"),
        "",
        "### The service's own functions, inclusive",
        "",
        analysis.render_top(top_own, "function"),
        "",
    ]  # fmt: skip
    return "\n".join(parts)


def _measure(
    args: argparse.Namespace, bench: Bench, profiler: Profiler, raw: Path
) -> dict[str, Any]:
    """Bring the stack up as the benchmark does, then the three runs."""
    say(f"working in {bench.folder}")
    cores = sorted(os.sched_getaffinity(0))
    service_core = {cores[-1]} if len(cores) > 1 and not args.profile_unpinned else None
    if service_core is not None:
        # Everything this harness starts from now on inherits the other cores.
        os.sched_setaffinity(0, set(cores[:-1]))
    bench.prepare_service_env()
    bench.start_valkey()
    bench.plan_executions()
    bench.start_backend()
    say(f"minting {len(bench.state.executions):,} tokens with `cronium-runtime token`")
    bench.mint_tokens()
    bench.start_targets()
    if service_core is not None:
        pin(bench.target(SERVICE).child.pid, service_core)
        say(f"the service on core {cores[-1]}, everything else on {cores[:-1]}")
    say("reading every execution's input and variables once (cache fill)")
    bench.fill_cache()
    target = bench.target(SERVICE)
    if args.warmup > 0:
        say(f"warm-up {args.warmup:g} s")
        bench.wrk(target, args.profile, THREADS, CONNECTIONS, args.warmup)
    clean = profiler.clean_run(target)
    monitor = profiler.monitor_run(target, bench.folder)
    profiled, profiled_threads = profiler.profiled_run(target, raw, bench.folder)
    bench.stop_target(SERVICE, target.child)
    return {
        "pinned": service_core is not None,
        "clean": _per_request(clean["run"]),
        "profiled": _per_request(profiled),
        "clean_threads": clean["threads"],
        "profiled_threads": profiled_threads,
        "commandstats": clean["commandstats"],
        "metrics": clean["metrics"],
        "monitor": monitor,
    }


def main(args: argparse.Namespace) -> int:
    args.duration = args.profile_seconds
    args.targets = [SERVICE]
    load_before = os.getloadavg()
    started = datetime.now(UTC)
    machine = machine_facts(Path(__file__).resolve().parents[1])
    RESULTS.mkdir(exist_ok=True)
    base = RESULTS / f"profile-{started.strftime('%Y%m%dT%H%M%SZ')}-{args.profile}"
    raw = base.with_name(base.name + ".raw.txt")
    results: list[dict[str, Any]] = []

    def run(children: Children, folder: Path) -> None:
        bench = Bench(args, children, folder)
        results.append(_measure(args, bench, Profiler(args, bench, children), raw))

    failed = supervised("bench --profile", "cronium-profile-", keep=args.keep, work=run)
    if failed is not None:
        return failed
    measured = results[0]
    samples = analysis.parse_raw(raw.read_text())
    facts: dict[str, Any] = {
        "workload": args.profile,
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "revision": machine.get("revision", "unknown"),
        "service_env": list(args.service_env),
        "rate": args.profile_rate,
        "seconds": args.duration,
        "load_before": ", ".join(f"{v:.2f}" for v in load_before),
        "load_after": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
        **measured,
    }
    summary = render(facts, samples)
    base.with_name(base.name + ".md").write_text(summary)
    speedscope = analysis.to_speedscope(
        samples, f"cronium-runtime {args.profile}", args.profile_rate
    )
    base.with_name(base.name + ".speedscope.json").write_text(json.dumps(speedscope))
    facts["commandstats"] = {k: asdict(v) for k, v in facts["commandstats"].items()}
    for key in ("clean_threads", "profiled_threads"):
        facts[key] = {tid: asdict(times) for tid, times in facts[key].items()}
    facts["machine"] = machine
    base.with_name(base.name + ".json").write_text(json.dumps(facts, indent=2, default=str) + "\n")
    print(summary)
    say(f"profile in {base}.{{md,json,raw.txt,speedscope.json}}")
    return 0
