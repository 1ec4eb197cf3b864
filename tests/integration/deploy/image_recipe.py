"""What deploy/Dockerfile gives a container, read from the file itself, so that the tests which
run the service the way the image does cannot drift from it."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from processes import REPO

DOCKERFILE = REPO / "deploy" / "Dockerfile"

# What the base image (python:3.11-slim-bookworm) sets that the Dockerfile builds on.
BASE_IMAGE_ENV = {
    "PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass(frozen=True)
class ImageRecipe:
    """The final stage's run-time configuration."""

    env: dict[str, str]
    uid: int
    gid: int
    volumes: tuple[str, ...]
    workdir: str
    exposed_ports: tuple[int, ...]
    healthcheck: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]

    @property
    def data_folder(self) -> str:
        """The one declared volume: the only place on the root the service writes."""
        (volume,) = self.volumes
        return volume

    @property
    def venv(self) -> str:
        """The virtual environment the image installs into: the parent of PATH's first entry."""
        first = self.env["PATH"].split(":")[0]
        assert first.endswith("/bin"), self.env["PATH"]
        return first.removesuffix("/bin")


def read_recipe(path: Path = DOCKERFILE) -> ImageRecipe:
    stages = _stages(path.read_text(encoding="utf-8"))
    final = stages[-1]
    env = dict(BASE_IMAGE_ENV)
    found: dict[str, str] = {}
    volumes: list[str] = []
    for keyword, argument in final:
        if keyword == "ENV":
            for pair in shlex.split(argument):
                name, separator, value = pair.partition("=")
                # Only the `ENV NAME=value ...` form: anything else is misread, so say so.
                assert separator, f"ENV {argument!r}: use NAME=value pairs"
                env[name] = _VARIABLE.sub(lambda m: env.get(m[1] or m[2], ""), value)
        elif keyword == "VOLUME":
            volumes.extend(json.loads(argument))
        elif keyword in {"USER", "WORKDIR", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD"}:
            found[keyword] = argument
    user, group = found["USER"].split(":")
    _options, separator, command = found["HEALTHCHECK"].partition(" CMD ")
    assert separator, "HEALTHCHECK: expected options, then CMD in its exec (JSON) form"
    return ImageRecipe(
        env=env,
        uid=int(user),
        gid=int(group),
        volumes=tuple(volumes),
        workdir=found["WORKDIR"],
        exposed_ports=tuple(int(port.split("/")[0]) for port in found["EXPOSE"].split()),
        healthcheck=tuple(json.loads(command)),
        entrypoint=tuple(json.loads(found["ENTRYPOINT"])),
        cmd=tuple(json.loads(found["CMD"])),
    )


def _stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each stage: (KEYWORD, argument), continuation lines joined."""
    stages: list[list[tuple[str, str]]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        # Docker drops comment lines, even inside a continued instruction.
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, argument = (pending + stripped).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append((keyword.upper(), argument.strip()))
    return stages
