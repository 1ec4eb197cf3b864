"""Where `serve` keeps the metrics of its processes: the folder it exports as
PROMETHEUS_MULTIPROC_DIR, made, emptied and removed as the settings say."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from entrypoints.cli.metrics_folder import (
    MULTIPROC_VARIABLE,
    mark_worker_dead,
    multiprocess_metrics,
)


def test_one_worker_without_a_folder_keeps_its_metrics_in_memory() -> None:
    with multiprocess_metrics(None, workers=1) as folder:
        assert folder is None
        assert MULTIPROC_VARIABLE not in os.environ


def test_several_workers_get_a_fresh_temporary_folder_removed_at_exit() -> None:
    with multiprocess_metrics(None, workers=2) as folder:
        assert folder is not None
        assert folder.is_dir()
        assert list(folder.iterdir()) == []
        assert os.environ[MULTIPROC_VARIABLE] == str(folder)
        (folder / "counter_1.db").write_bytes(b"\0" * 8)

    assert not folder.exists()
    assert MULTIPROC_VARIABLE not in os.environ


def test_a_configured_folder_is_emptied_of_metric_files_at_start_and_kept(tmp_path: Path) -> None:
    configured = tmp_path / "metrics"
    configured.mkdir()
    stale = [
        configured / name
        for name in (
            "counter_11.db",
            "histogram_11.db",
            "gauge_livesum_11.db",
            "gauge_max_11.db",
            "summary_11.db",
        )
    ]
    for path in stale:
        path.write_bytes(b"\0" * 8)
    other = configured / "notes.txt"
    other.write_text("kept")

    with multiprocess_metrics(configured, workers=1) as folder:
        assert folder == configured
        assert os.environ[MULTIPROC_VARIABLE] == str(configured)
        assert not any(path.exists() for path in stale)
        assert other.exists()

    assert configured.is_dir()
    assert MULTIPROC_VARIABLE not in os.environ


def test_a_configured_folder_is_created_when_missing(tmp_path: Path) -> None:
    configured = tmp_path / "not" / "yet"

    with multiprocess_metrics(configured, workers=2) as folder:
        assert folder == configured
        assert configured.is_dir()


def test_a_variable_set_before_is_restored_at_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_VARIABLE, "/somewhere/else")

    with multiprocess_metrics(tmp_path / "metrics", workers=1):
        assert os.environ[MULTIPROC_VARIABLE] == str(tmp_path / "metrics")

    assert os.environ[MULTIPROC_VARIABLE] == "/somewhere/else"


def test_a_folder_that_cannot_be_made_stops_start_up_naming_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    with (
        pytest.raises(ValueError, match=r"metrics\.multiprocessDir / PROMETHEUS_MULTIPROC_DIR"),
        multiprocess_metrics(blocker / "metrics", workers=2),
    ):
        pass

    assert MULTIPROC_VARIABLE not in os.environ


def test_a_dead_workers_live_gauges_go_and_its_counters_stay(tmp_path: Path) -> None:
    names = [
        "gauge_livesum_7.db",
        "gauge_livemax_7.db",
        "counter_7.db",
        "histogram_7.db",
        "gauge_livesum_8.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"\0" * 8)

    mark_worker_dead(tmp_path, 7)

    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "counter_7.db",
        "gauge_livesum_8.db",
        "histogram_7.db",
    ]
