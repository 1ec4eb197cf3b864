"""Checks deploy/grafana-dashboard.json the way Grafana's import would fail or silently
misbehave: JSON, a current schemaVersion, the `datasource`, `job` and `instance` variables,
every panel on the `${datasource}` variable with a query, unique panel ids and refIds, and
panels inside the 24-column grid without overlapping. Prints each finding; exits 1 on any.
    python deploy/check_dashboard.py deploy/grafana-dashboard.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Grafana 10.4 writes 39; older schemas are migrated on import, which rewrites panels.
MIN_SCHEMA_VERSION = 39
GRID_COLUMNS = 24
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def findings(dashboard: dict[str, Any]) -> list[str]:
    found: list[str] = []
    if not isinstance(dashboard.get("schemaVersion"), int) or (
        dashboard["schemaVersion"] < MIN_SCHEMA_VERSION
    ):
        found.append(f"schemaVersion must be an integer >= {MIN_SCHEMA_VERSION}")
    for key in ("uid", "title"):
        if not dashboard.get(key):
            found.append(f"no {key}")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    source = variables.get("datasource", {})
    if source.get("type") != "datasource" or source.get("query") != "prometheus":
        found.append("no `datasource` variable of type datasource for prometheus")
    for name in ("job", "instance"):
        variable = variables.get(name, {})
        if variable.get("type") != "query" or variable.get("datasource") != DATASOURCE:
            found.append(f"no `{name}` query variable on ${{datasource}}")
    panels = dashboard.get("panels", [])
    if not panels:
        found.append("no panels")
    ids = [panel.get("id") for panel in panels]
    if len(set(ids)) != len(ids) or not all(isinstance(i, int) for i in ids):
        found.append(f"panel ids must be unique integers: {ids}")
    found.extend(grid_findings(panels))
    for panel in panels:
        title = panel.get("title") or f"panel {panel.get('id')}"
        if panel.get("type") == "row":
            continue
        found.extend(panel_findings(title, panel))
    return found


def grid_findings(panels: list[dict[str, Any]]) -> list[str]:
    found = []
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        title = panel.get("title") or f"panel {panel.get('id')}"
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            found.append(f"{title}: gridPos needs integer x, y, w and h")
            continue
        if grid["x"] < 0 or grid["x"] + grid["w"] > GRID_COLUMNS:
            found.append(f"{title}: outside the {GRID_COLUMNS}-column grid")
        covered = {
            (column, line)
            for column in range(grid["x"], grid["x"] + grid["w"])
            for line in range(grid["y"], grid["y"] + grid["h"])
        }
        overlapped = sorted({cells[cell] for cell in covered if cell in cells})
        if overlapped:
            found.append(f"{title}: overlaps {', '.join(overlapped)}")
        cells.update(dict.fromkeys(covered, title))
    return found


def panel_findings(title: str, panel: dict[str, Any]) -> list[str]:
    found = []
    if panel.get("datasource") != DATASOURCE:
        found.append(f"{title}: datasource must be {DATASOURCE}")
    targets = panel.get("targets", [])
    if not targets:
        found.append(f"{title}: no query")
    references = [target.get("refId") for target in targets]
    if len(set(references)) != len(references):
        found.append(f"{title}: refIds repeat: {references}")
    for target in targets:
        if not str(target.get("expr", "")).strip():
            found.append(f"{title}: query {target.get('refId')} has no expr")
        if target.get("datasource") != DATASOURCE:
            found.append(f"{title}: query {target.get('refId')} not on ${{datasource}}")
    return found


def main(path: str) -> int:
    try:
        dashboard = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"{path}: {error}", file=sys.stderr)
        return 1
    found = findings(dashboard)
    for finding in found:
        print(f"{path}: {finding}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
