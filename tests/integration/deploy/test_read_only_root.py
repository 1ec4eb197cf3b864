"""The image's promise, kept without a container engine: with a read-only root, a tmpfs /tmp and
its data volume, as its non-root user and with its environment (read from deploy/Dockerfile),
the installed service serves scripts, its CLI works beside it, its HEALTHCHECK tells the
truth, and it writes nothing outside the data folder (see read_only_root.py)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_recipe import ImageRecipe, read_recipe
from read_only_root import HOST, PortTaken, ReadOnlyRoot, SandboxedProcess, free_port

# What compose.yaml and the Kubernetes Secret provide; 32 bytes or more.
JWT_SECRET = "read-only-root-test-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def recipe() -> ImageRecipe:
    return read_recipe()


@pytest.fixture
def root(recipe: ImageRecipe, tmp_path: Path) -> ReadOnlyRoot:
    return ReadOnlyRoot(recipe, tmp_path)


@pytest.fixture
def started(root: ReadOnlyRoot) -> Iterator[list[SandboxedProcess]]:
    """The sandboxed processes a test starts; each one still running is stopped at the end."""
    processes: list[SandboxedProcess] = []
    yield processes
    for process in processes:
        process.stop()


def deployment_environment(root: ReadOnlyRoot, **overrides: str) -> dict[str, str]:
    """The image's environment plus what a deployment adds: the secret, and here a loopback
    address on a free port, and no drain wait at the stop."""
    return root.environment(
        JWT_SECRET=JWT_SECRET, HOST=HOST, PORT=str(free_port()), DRAIN_DELAY="0s", **overrides
    )


def start_serving(
    root: ReadOnlyRoot, started: list[SandboxedProcess], logs: Path
) -> tuple[SandboxedProcess, dict[str, str]]:
    """The image's ENTRYPOINT and CMD in the sandbox, once /health answers; and its env."""
    for attempt in range(3):
        env = deployment_environment(root)
        server = root.start(
            env, *root.recipe.entrypoint, *root.recipe.cmd, logs=logs / str(attempt)
        )
        started.append(server)
        try:
            server.wait_until_healthy()
        except PortTaken:
            continue
        return server, env
    pytest.fail("three free ports in a row were taken before the server bound them")


def test_every_image_path_in_the_environment_is_moved_to_its_stand_in_here(
    recipe: ImageRecipe, root: ReadOnlyRoot
) -> None:
    env = root.environment()

    assert env["STORE_PATH"] == str(root.data_folder)
    assert env["HOME"] == str(root.data_folder)
    assert env["PATH"].split(":")[0] == str(Path(root.moved[recipe.venv]) / "bin")
    for value in env.values():
        assert recipe.data_folder not in value
        assert recipe.venv not in value


def test_the_service_serves_scripts_from_a_read_only_root_and_writes_only_its_data_folder(
    recipe: ImageRecipe, root: ReadOnlyRoot, started: list[SandboxedProcess], tmp_path: Path
) -> None:
    server, env = start_serving(root, started, tmp_path / "serve")

    healthcheck = root.run(env, *recipe.healthcheck)
    assert healthcheck.returncode == 0, healthcheck.stderr

    created = root.run(
        env, "cronium-runtime", "executions", "create", "--input", '{"name": "Ada"}', "--json"
    )
    assert created.returncode == 0, created.stderr
    execution = json.loads(created.stdout)
    assert execution["apiUrl"] == f"http://{HOST}:{server.port}"
    run, token = f"/executions/{execution['executionId']}", execution["token"]

    assert server.request("GET", f"{run}/input", token=token).json() == {
        "success": True,
        "data": {"name": "Ada"},
    }
    written = server.request("PUT", f"{run}/variables/counter", body={"value": 1}, token=token)
    assert written.status == 200, written.body
    read = server.request("GET", f"{run}/variables/counter", token=token)
    assert read.json()["data"]["value"] == 1
    output = server.request("POST", f"{run}/output", body={"data": {"n": 1}}, token=token)
    assert output.json() == {"success": True}
    ready = server.request("GET", "/health/ready")
    assert (ready.status, ready.json()["status"]) == (200, "ready")
    # The CLI beside the running server, in its own sandbox, reads what the script wrote.
    value = root.run(env, "cronium-runtime", "vars", "get", "counter")
    assert (value.returncode, value.stdout.strip()) == (0, "1"), value.stderr

    assert server.stop() == 0, server.stderr
    assert "Read-only file system" not in server.stderr
    assert not [line for line in server.stderr.splitlines() if '"level":"error"' in line]
    # Everything the service wrote is in its data folder, as the image's user.
    written_files = [path for path in root.data_folder.rglob("*") if path.is_file()]
    assert written_files, "the store was not written to the data folder"
    if root.as_root:
        assert {(p.stat().st_uid, p.stat().st_gid) for p in written_files} == {
            (recipe.uid, recipe.gid)
        }
    # The HEALTHCHECK fails once nothing answers.
    assert root.run(env, *recipe.healthcheck).returncode != 0


def test_a_write_outside_the_data_folder_fails_in_the_sandbox(
    recipe: ImageRecipe, root: ReadOnlyRoot, started: list[SandboxedProcess], tmp_path: Path
) -> None:
    # The control for the test above: a folder the image's user owns outside the data
    # folder, writable but for the read-only root, is refused, and start-up fails with it.
    outside = Path(tempfile.mkdtemp(prefix="cronium-runtime-read-only-", dir="/var/tmp"))
    try:
        if root.as_root:
            os.chown(outside, recipe.uid, recipe.gid)
        env = deployment_environment(root, STORE_PATH=str(outside / "store"))
        server = root.start(env, *recipe.entrypoint, *recipe.cmd, logs=tmp_path / "serve")
        started.append(server)

        # One line naming the setting and the reason, exit status 1: no traceback.
        assert server.wait() == 1
        assert server.stderr.strip().splitlines() == [
            f"cronium-runtime: store.path / STORE_PATH {str(outside / 'store')!r} cannot be"
            " written (Read-only file system); point it at a writable folder (the data volume)"
        ]
        assert not any(outside.iterdir())
    finally:
        shutil.rmtree(outside)
