"""The benchmark harness's pure helpers: reading wrk's and /proc's output, medians, the
targets, the tables and the results section of docs/benchmarks.md. The benchmark itself is
not a test (`./dev bench`); nothing here measures a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import bare_app, report
from bench.procfs import parse_stat, parse_status_kib
from bench.report import (
    BARE,
    NARROW,
    SERVICE,
    WIDE,
    Run,
    Startup,
    WrkOutputError,
    WrkResult,
)

from entrypoints.cli.http_protocol import MAX_REQUEST_HEAD, BoundedHttpToolsProtocol
from entrypoints.settings import load_settings


def wrk_line(**overrides: object) -> str:
    raw: dict[str, object] = {
        "requests": 50_000,
        "duration_us": 10_000_000,
        "bytes": 9_000_000,
        "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
        "latency_us": {"mean": 3100.5, "max": 41_000, "p50": 2_500, "p90": 4_000,
                       "p99": 7_250, "p999": 20_000},
    }  # fmt: skip
    raw.update(overrides)
    return report.WRK_MARKER + json.dumps(raw)


def result(requests: int = 50_000, p99_ms: float = 7.25, **errors: int) -> WrkResult:
    return WrkResult(
        requests=requests,
        duration_s=10.0,
        p50_ms=2.5,
        p90_ms=4.0,
        p99_ms=p99_ms,
        max_ms=41.0,
        non_2xx=errors.get("non_2xx", 0),
        connect_errors=errors.get("connect", 0),
        read_errors=errors.get("read", 0),
        write_errors=errors.get("write", 0),
        timeouts=errors.get("timeout", 0),
    )


def run(
    target: str = SERVICE,
    workload: str = "variable_read",
    shape: str = WIDE,
    *,
    requests: int = 50_000,
    p99_ms: float = 7.25,
    cpu_s: float = 10.0,
    worker_kib: int = 80 * 1024,
) -> Run:
    return Run(
        target=target,
        workload=workload,
        shape=shape,
        repeat=1,
        wrk=result(requests, p99_ms),
        cpu_s=cpu_s,
        peak_rss_kib=worker_kib,
        peak_rss_worker_kib=worker_kib,
        valkey_cpu_s=1.0,
        backend_cpu_s=0.0,
        wrk_cpu_s=2.0,
    )


# --- wrk's output --------------------------------------------------------------------------


def test_the_result_line_is_found_among_wrks_own_summary_and_read_in_milliseconds() -> None:
    output = "\n".join(
        [
            "Running 10s test @ http://127.0.0.1:8081",
            "  2 threads and 32 connections",
            wrk_line(),
            "Requests/sec:   5000.00",
        ]
    )

    parsed = report.parse_wrk_output(output)

    assert parsed.requests == 50_000
    assert parsed.rps == pytest.approx(5000.0)
    assert (parsed.p50_ms, parsed.p90_ms, parsed.p99_ms, parsed.max_ms) == (2.5, 4.0, 7.25, 41.0)
    assert parsed.failed == 0


def test_output_without_a_result_line_is_refused_with_the_output_quoted() -> None:
    with pytest.raises(WrkOutputError, match=r"(?s)no BENCH_WRK line.*unable to connect"):
        report.parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused")


def test_a_broken_result_line_is_refused() -> None:
    with pytest.raises(WrkOutputError, match="cannot be read"):
        report.parse_wrk_output(report.WRK_MARKER + '{"requests": 1}')


def test_a_run_where_every_request_was_2xx_has_no_failure() -> None:
    assert report.failure_message(result()) is None


@pytest.mark.parametrize(
    ("errors", "counted"),
    [({"non_2xx": 3}, "3 of 50,000 requests failed: 3 answered with a status of 400"),
     ({"timeout": 2, "read": 1}, "3 of 50,000 requests failed: 0 answered")],
)  # fmt: skip
def test_a_run_with_any_failed_request_says_how_many_and_how(
    errors: dict[str, int], counted: str
) -> None:
    message = report.failure_message(result(**errors))

    assert message is not None
    assert message.startswith(counted)


def test_wrk_status_errors_count_as_not_2xx() -> None:
    errors = {"connect": 1, "read": 2, "write": 3, "status": 4, "timeout": 5}

    parsed = report.parse_wrk_output(wrk_line(errors=errors))

    assert parsed.non_2xx == 4
    assert parsed.socket_errors == 11


# --- the rate limit ------------------------------------------------------------------------


def test_the_rate_limit_fields_of_the_service_are_read() -> None:
    assert report.rate_limit_quota('"exec";q=1000;w=60') == 1000
    assert report.rate_limit_remaining('"exec";r=998;t=1') == 998


@pytest.mark.parametrize("header", ['"exec";q=1000;w=30', "1000", ""])
def test_a_rate_limit_policy_of_another_shape_is_refused(header: str) -> None:
    with pytest.raises(ValueError, match="RateLimit-Policy"):
        report.rate_limit_quota(header)


def test_the_pool_keeps_each_execution_within_its_limit_at_the_peak_rate() -> None:
    size = report.pool_size(15_000, 1000)

    assert size == 900
    assert report.per_execution_per_min(15_000, size) <= 1000
    assert report.per_execution_per_min(15_000, size - 1) > 1000


def test_a_pool_is_never_empty() -> None:
    assert report.pool_size(0, 1000) == 1


# --- /proc ---------------------------------------------------------------------------------


def test_stat_fields_are_counted_from_the_last_parenthesis_of_the_command_name() -> None:
    fields = ["S", "41", "42", "42", "0", "-1", "4194560", "1", "0", "0", "0", "250", "31"]
    text = "4242 (python (bench) x) " + " ".join(fields) + " 0 0 20 0 1 0 100\n"

    assert parse_stat(text) == (41, 281)


def test_a_status_line_is_read_in_kib_and_an_absent_one_is_zero() -> None:
    text = "Name:\tpython\nVmHWM:\t   81234 kB\nVmRSS:\t   70000 kB\n"

    assert parse_status_kib(text, "VmHWM") == 81234
    assert parse_status_kib(text, "VmRSS") == 70000
    assert parse_status_kib("Name:\tzombie\n", "VmRSS") == 0


# --- summaries and targets -----------------------------------------------------------------


def test_each_figure_is_the_median_of_its_own_over_the_repeats() -> None:
    runs = [
        run(requests=30_000, p99_ms=9.0, cpu_s=9.0),
        run(requests=50_000, p99_ms=4.0, cpu_s=10.0),
        run(requests=40_000, p99_ms=30.0, cpu_s=20.0),
        run(BARE, requests=90_000),
    ]

    service, bare = report.summarise(runs)

    assert (service.target, service.repeats, bare.target, bare.repeats) == (SERVICE, 3, BARE, 1)
    assert service.rps == pytest.approx(4000.0)
    assert service.p99_ms == 9.0
    assert service.cpu_s == 10.0
    # 9 s over 30,000, 10 s over 50,000, 20 s over 40,000: 300, 200, 500 µs.
    assert service.cpu_us_per_request == pytest.approx(300.0)
    assert service.peak_rss_mib == 80.0


def test_targets_are_met_missed_or_not_measured() -> None:
    summaries = report.summarise(
        [
            run(requests=90_000),  # 9,000 req/s
            run(BARE, requests=120_000),
            run(workload="input_read", requests=60_000),
            run(workload="mixed", shape=NARROW, p99_ms=19.0, worker_kib=130 * 1024),
        ]
    )
    startups = [Startup(SERVICE, [0.9, 0.7, 0.75], [50 * 1024, 70 * 1024, 55 * 1024])]

    checks = {check.goal.label: check for check in report.check_goals(summaries, startups)}

    assert checks["cached variable read, -t2 -c32"].verdict == "met"
    assert checks["cached variable read, -t2 -c32"].bare == pytest.approx(12_000.0)
    assert checks["cached input read, -t2 -c32"].verdict == "missed"
    assert checks["cached input read p99, -t1 -c8"].verdict == "not measured"
    assert checks["mixed workload p99, -t1 -c8"].verdict == "met"
    assert checks["cold start"].figure == 0.75
    assert checks["cold start"].verdict == "met"
    assert checks["idle RSS"].verdict == "met"
    assert checks["RSS under load, per worker (largest)"].figure == 130.0
    assert checks["RSS under load, per worker (largest)"].verdict == "missed"


def test_the_tables_give_the_share_of_the_bare_app_and_the_target_beside_the_figure() -> None:
    summaries = report.summarise(
        [run(requests=40_000, p99_ms=10.0), run(BARE, requests=80_000, p99_ms=5.0)]
    )
    startups = [Startup(SERVICE, [0.6], [64 * 1024]), Startup(BARE, [0.3], [40 * 1024])]

    tables = report.render_tables(summaries, startups)

    row = next(line for line in tables.throughput.splitlines() if "variables/{key}" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2:5] == ["4,000", "8,000", "0.50"]
    assert cells[6:9] == ["10.0", "5.00", "2.00"]
    assert cells[-1] == ">= 8,500 req/s: **missed**"
    assert "| cold start s (median) | 0.600 | 0.300 | 2.00 | <= 0.800 s: met |" in tables.startup
    assert "| idle RSS MiB (median) | 64.0 | 40.0 | 1.60 | <= 60.0 MiB: **missed** |" in (
        tables.startup
    )


def test_an_earlier_revision_measured_beside_gets_its_own_columns_and_ratios() -> None:
    summaries = report.summarise(
        [
            run(requests=40_000, p99_ms=10.0, cpu_s=10.0),
            run(report.BEFORE, requests=10_000, p99_ms=40.0, cpu_s=10.0),
            run(BARE, requests=80_000, p99_ms=5.0),
        ]
    )
    startups = [Startup(SERVICE, [0.6], [64 * 1024]), Startup(report.BEFORE, [0.9], [70 * 1024])]

    tables = report.render_tables(summaries, startups)

    header = tables.throughput.splitlines()[0]
    assert "| before req/s | service / before | before p99 ms | p99 service / before |" in header
    row = next(line for line in tables.throughput.splitlines() if "variables/{key}" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[9:13] == ["1,000", "4.00", "40.0", "0.25"]
    cpu_row = next(line for line in tables.resources.splitlines() if "variables/{key}" in line)
    # 10 s over 40,000 requests (the bare app: over 80,000; before: over 10,000).
    assert [cell.strip() for cell in cpu_row.strip("|").split("|")][3:6] == ["250", "125", "1,000"]
    assert "| cold start s (median) | 0.600 | - | - | 0.900 | 0.67 |" in tables.startup
    goals = tables.goals.splitlines()
    assert goals[0].startswith("| target | bound | service | bare app | before | verdict |")


def test_results_hold_the_computed_figures_as_plain_json() -> None:
    startup = Startup(SERVICE, [0.5, 0.7, 0.6], [61440])

    plain = report.to_json({"runs": [run()], "startups": [startup]})

    json.dumps(plain)
    assert plain["runs"][0]["wrk"]["rps"] == pytest.approx(5000.0)
    assert plain["startups"][0]["cold_start_s"] == 0.6
    assert plain["startups"][0]["idle_rss_mib"] == 60.0


# --- docs/benchmarks.md --------------------------------------------------------------------


def test_a_new_document_gets_the_section_between_the_marks_and_a_history() -> None:
    document = report.update_document(None, "## Latest run\n\nfigures")

    assert document.startswith("# Benchmarks\n")
    assert f"{report.BEGIN_MARK}\n## Latest run\n\nfigures\n{report.END_MARK}\n" in document
    assert document.rstrip().endswith("(from the results above, or from `bench/results/*.json`).")


def test_an_update_replaces_only_what_is_between_the_marks() -> None:
    before = report.update_document(None, "old figures")
    edited = before.replace("## History\n", "## History\n\n- cache in process: 4k -> 8k req/s\n")

    after = report.update_document(edited, "new figures")

    assert "old figures" not in after
    assert "new figures" in after
    assert "- cache in process: 4k -> 8k req/s" in after
    assert after.count(report.BEGIN_MARK) == 1


def test_a_document_without_marks_keeps_its_text_and_gets_the_section_at_the_end() -> None:
    after = report.update_document("# Benchmarks\n\nNotes by hand.\n", "figures")

    assert after.startswith("# Benchmarks\n\nNotes by hand.\n\n" + report.BEGIN_MARK)
    assert after.endswith(report.END_MARK + "\n")


# --- the bare app --------------------------------------------------------------------------


def test_the_bare_app_is_served_with_the_settings_serve_uses(tmp_path: Path) -> None:
    defaults = load_settings({"HOME": str(tmp_path)}, cwd=tmp_path)

    assert bare_app.PROTOCOLS["bounded"] == (
        f"{BoundedHttpToolsProtocol.__module__}:{BoundedHttpToolsProtocol.__name__}"
    )
    assert bare_app.H11_MAX_REQUEST_HEAD == MAX_REQUEST_HEAD
    assert defaults.server.idle_timeout == bare_app.KEEP_ALIVE_S
    assert defaults.server.shutdown_timeout == bare_app.SHUTDOWN_TIMEOUT_S
    assert defaults.server.workers == 1


def test_the_section_names_the_machine_the_method_and_an_experiments_settings() -> None:
    facts = report.RunFacts(
        started="2026-11-28 23:00 UTC",
        minutes=24.6,
        results_file="bench/results/20261128T230000Z.json",
        quick=False,
        targets=[SERVICE, BARE],
        repeats=3,
        duration_s=10.0,
        warmup_s=3.0,
        workers=1,
        service_env=["LOG_LEVEL=warn"],
        cold_starts=5,
        pool=900,
        limit_per_min=1000,
        peak_per_execution_per_min=61.5,
        fewest_remaining=998,
        load_before=(1.35, 1.27, 1.37),
        load_after=(2.0, 1.9, 1.8),
    )
    machine = {
        "cpu": "AMD EPYC 7B13",
        "cores": 2,
        "cores_usable": 2,
        "memory_gib": 23.5,
        "os": "Debian GNU/Linux 12 (bookworm)",
        "kernel": "6.1.0",
        "python": "3.11.7",
        "packages": {"litestar": "2.25.0", "uvicorn": "0.54.0"},
        "valkey_server": "Valkey server v=8.1.1",
        "wrk": "wrk debian/4.1.0-3+b2 [epoll]",
        "revision": "dac870a",
    }
    tables = report.render_tables(report.summarise([run()]), [])

    section = report.render_section(facts, machine, tables)

    flat = " ".join(section.split())
    assert "took 25 min" in flat
    assert "before: 1.35, 1.27, 1.37; after: 2.00, 1.90, 1.80" in flat
    assert "- CPU: AMD EPYC 7B13, 2 cores (2 usable by the benchmark)" in flat
    assert "Packages: litestar 2.25.0, uvicorn 0.54.0" in flat
    assert "set for this experiment: `LOG_LEVEL=warn`" in flat
    assert "900 executions keep each one under 1,000 requests a minute up to 15,000 req/s" in flat
    assert "sent 62 requests a minute to each execution" in flat
    assert "had left was 998 of 1,000" in flat
    assert tables.throughput in section
    assert "--quick" not in section
