"""The access line is written without loguru, and must read exactly as the line loguru would
have written through the configured sinks: same fields, same order, same text.

Each case runs in a child process: `configure_logging` sets up the process's one logger."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

# Writes the same request's access line twice: through loguru, then through `log_access`.
BOTH_LINES = """
import sys
from loguru import logger
from entrypoints.logs import configure_logging, log_access

configure_logging(sys.argv[1], sys.argv[2])
fields = dict(method="PUT", route="/executions/{execution_id}/variables/{key}", status=200,
              ms=12.346, request_id="req-1", client=CLIENT)
logger.info("{method} {route} {status} {ms:.1f}ms", **fields)
log_access(logger_name="__main__", **fields)
"""
TEXT_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z ")


def both_lines(level: str, fmt: str, client: str | None = "10.0.0.7") -> list[str]:
    """stderr of a process logging one access line both ways, under a timezone far from UTC:
    the times must be UTC all the same."""
    done = subprocess.run(
        [sys.executable, "-c", BOTH_LINES.replace("CLIENT", repr(client)), level, fmt],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TZ": "America/Los_Angeles"},
        check=True,
    )
    return done.stderr.splitlines()


def assert_utc_now(stamp: str) -> None:
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=5), stamp


@pytest.mark.parametrize("client", ["10.0.0.7", None])
def test_the_json_access_line_is_the_one_loguru_writes(client: str | None):
    through_loguru, direct = [json.loads(line) for line in both_lines("info", "json", client)]

    assert list(direct) == list(through_loguru)
    assert {**direct, "time": None} == {**through_loguru, "time": None}
    assert direct["message"] == "PUT /executions/{execution_id}/variables/{key} 200 12.3ms"
    assert direct["client"] == client
    assert direct["logger"] == "__main__"
    assert_utc_now(direct["time"])
    assert_utc_now(through_loguru["time"])


def test_the_text_access_line_is_the_one_loguru_writes():
    through_loguru, direct = both_lines("debug", "text")

    assert TEXT_TIME.sub("", direct) == TEXT_TIME.sub("", through_loguru)
    assert TEXT_TIME.sub("", direct) == (
        "INFO    PUT /executions/{execution_id}/variables/{key} 200 12.3ms method=PUT"
        " route=/executions/{execution_id}/variables/{key} status=200 ms=12.346"
        " request_id=req-1 client=10.0.0.7"
    )
    for line in (direct, through_loguru):
        stamp = TEXT_TIME.match(line)
        assert stamp is not None, line
        assert_utc_now(stamp[1] + "Z")


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize("level", ["warning", "error"])
def test_no_access_line_above_info(level: str, fmt: str):
    assert both_lines(level, fmt) == []


def run_child(script: str, fmt: str = "json") -> subprocess.CompletedProcess[str]:
    preamble = (
        "import asyncio, json, os, sys\n"
        "from loguru import logger\n"
        "from entrypoints.logs import configure_logging, log_access\n"
        f"configure_logging('info', {fmt!r})\n"
        "def access(request_id):\n"
        "    log_access(logger_name='t', method='GET', route='/health', status=200, ms=0.1,\n"
        "               request_id=request_id, client=None)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", preamble + script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def request_ids(text: str) -> list[str]:
    return [
        json.loads(line).get("request_id", json.loads(line)["message"])
        for line in text.splitlines()
    ]


def test_the_lines_of_one_loop_turn_are_written_together_and_in_order():
    done = run_child(
        """
class Recording:
    def __init__(self):
        self.writes = []
    def write(self, text):
        self.writes.append(text)
        return len(text)
    def flush(self):
        pass

async def serve():
    access("r1"); access("r2"); access("r3")
    logger.warning("w")
    access("r4"); access("r5")
    await asyncio.sleep(0)
    access("r6")

recording = sys.stderr = Recording()
asyncio.run(serve())
sys.stderr = sys.__stderr__
print(json.dumps(recording.writes))
"""
    )

    assert done.returncode == 0, done.stderr
    writes = json.loads(done.stdout)
    assert [request_ids(text) for text in writes] == [["r1", "r2", "r3", "w"], ["r4", "r5"], ["r6"]]


def test_a_long_turn_writes_its_lines_as_they_come_a_pipeful_at_a_time():
    done = run_child(
        """
from entrypoints.logs import StderrLines

class Recording:
    def __init__(self):
        self.writes = []
    def write(self, text):
        self.writes.append(text)
        return len(text)
    def flush(self):
        pass

async def serve():
    for n in range(StderrLines.MAX_HELD + 10):
        access(f"r{n}")

recording = sys.stderr = Recording()
asyncio.run(serve())
sys.stderr = sys.__stderr__
print(json.dumps([StderrLines.MAX_HELD, recording.writes]))
"""
    )

    assert done.returncode == 0, done.stderr
    most, writes = json.loads(done.stdout)
    assert [len(request_ids(text)) for text in writes] == [most, 10]
    assert request_ids("".join(writes)) == [f"r{n}" for n in range(most + 10)]


def test_lines_held_when_the_loop_stops_for_good_are_written_at_exit():
    done = run_child(
        """
async def serve():
    access("r1"); access("r2")
    raise SystemExit(3)  # out of the loop at once: no turn ends after the lines

asyncio.new_event_loop().run_until_complete(serve())
"""
    )

    assert done.returncode == 3
    assert request_ids(done.stderr) == ["r1", "r2"]


def test_a_forked_child_does_not_write_the_lines_its_parent_held():
    done = run_child(
        """
async def serve():
    access("parent")
    child = os.fork()
    if child == 0:
        access("child")
        raise SystemExit(0)
    os.waitpid(child, 0)

asyncio.run(serve())
"""
    )

    assert done.returncode == 0, done.stderr
    assert sorted(request_ids(done.stderr)) == ["child", "parent"]
