"""CPU time and memory of a process and its descendants, read from Linux's /proc.

- CPU: utime + stime of /proc/<pid>/stat (clock ticks), for each live process of the tree.
- Peak memory: VmHWM of /proc/<pid>/status. Writing `5` to /proc/<pid>/clear_refs resets it
  to the current RSS (Linux 4.0 and later), so each run reads its own peak.
- Resident memory now: VmRSS.

A server with several workers is a tree (uvicorn's or our supervisor and its workers), so
every figure is summed over the tree, or, for the per-worker target, its largest process.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_stat(text: str) -> tuple[int, int]:
    """(parent pid, utime + stime in clock ticks) from the text of /proc/<pid>/stat.

    The command name (field 2) is in parentheses and may itself hold spaces and
    parentheses, so the fields are counted from the last `)`.
    """
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return int(fields[1]), int(fields[11]) + int(fields[12])


def parse_status_kib(text: str, name: str) -> int:
    """A `Name:   1234 kB` line of /proc/<pid>/status, in KiB (0 when absent: a zombie)."""
    prefix = f"{name}:"
    for line in text.splitlines():
        if line.startswith(prefix):
            return int(line[len(prefix) :].split()[0])
    return 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None  # the process ended meanwhile


def tree(root: int) -> list[int]:
    """`root` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        text = _read(entry / "stat")
        if text is None:
            continue
        parent, _ = parse_stat(text)
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """Each process's CPU time so far (user + system), by pid."""
    seconds = {}
    for pid in pids:
        text = _read(PROC / str(pid) / "stat")
        if text is not None:
            seconds[pid] = parse_stat(text)[1] / CLOCK_TICKS
    return seconds


def memory_kib(pids: list[int], name: str) -> dict[int, int]:
    """`VmRSS` or `VmHWM` of each process, in KiB, by pid."""
    sizes = {}
    for pid in pids:
        text = _read(PROC / str(pid) / "status")
        if text is not None:
            sizes[pid] = parse_status_kib(text, name)
    return sizes


def reset_peak_memory(pids: list[int]) -> bool:
    """Reset each process's VmHWM to its current RSS; False when the kernel refused one."""
    done = True
    for pid in pids:
        try:
            (PROC / str(pid) / "clear_refs").write_text("5")
        except OSError:
            done = False
    return done
