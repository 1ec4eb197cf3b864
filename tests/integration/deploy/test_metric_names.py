"""Every metric that deploy/prometheus-rules.yaml and deploy/grafana-dashboard.json name
exists in a real service's `/metrics`, and they group and filter only by labels the service
exports (route templates, codes, kinds; never a raw path or an id).

The service runs in one process with Valkey and the (fake) Cronium backend, so every family
is registered: a one-process registry lists a family's `# TYPE` line before its first
sample. One script request, one refused request and the audit shipper's delivery make the
labelled families show their labels.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from processes import REPO
from valkey_servers import ValkeyServer, require_binary

# The audit tests' kit runs the fake backend on a loop thread of its own; this folder reuses it.
_AUDIT_TESTS = str(Path(__file__).resolve().parents[1] / "audit")
if _AUDIT_TESTS not in sys.path:
    sys.path.insert(0, _AUDIT_TESTS)

from audit_kit import (  # noqa: E402
    DELIVERY_DEADLINE,
    EXECUTION,
    SECRET,
    LoopThread,
    Service,
    ThreadedBackend,
    wait_until,
)

RULES = REPO / "deploy" / "prometheus-rules.yaml"
DASHBOARD = REPO / "deploy" / "grafana-dashboard.json"
PREFIX = "cronium_runtime_"
# Labels Prometheus adds at scrape time, and the histogram's bucket bound.
SCRAPE_LABELS = {"job", "instance", "le"}
# A label of any of these names would make a series per request, execution or user.
UNBOUNDED_LABELS = {"path", "url", "uri", "execution", "execution_id", "id", "user", "key"}
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\{([^{}]*)\}")
MATCHER_NAME = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
TEMPLATE_LABEL = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)|\{\{\s*\.?([a-zA-Z_]\w*)\s*\}\}")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ")
TEMPLATE_WORDS = {"humanize", "humanizePercentage", "humanizeDuration", "value", "labels"}


# --- what the files name ------------------------------------------------------------------


def rule_queries() -> tuple[list[str], list[str], set[str]]:
    """The rules' expressions, their annotation and label texts, and the recorded names."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    expressions = [str(rule["expr"]) for rule in rules]
    texts = [
        str(text)
        for rule in rules
        for text in [*rule.get("annotations", {}).values(), *rule.get("labels", {}).values()]
    ]
    return expressions, texts, {rule["record"] for rule in rules if "record" in rule}


def dashboard_queries() -> tuple[list[str], list[str]]:
    """The dashboard's expressions (panels and variables) and its legend formats."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    targets = [
        target
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if panel.get("type") != "row"
    ]
    variables = [
        str(variable["definition"])
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    ]
    return [str(target["expr"]) for target in targets] + variables, [
        str(target.get("legendFormat", "")) for target in targets
    ]


def metric_names(expression: str) -> set[str]:
    """The service's metric names an expression reads (recorded names contain a colon)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
    return {
        name
        for name in IDENTIFIER.findall(without_strings)
        if name.startswith(PREFIX) or ":" in name
    }


def label_names(expression: str) -> set[str]:
    """The labels an expression groups by or matches on."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
    names = {
        name.strip()
        for grouping in GROUPING.findall(without_strings)
        for name in grouping.split(",")
        if name.strip()
    }
    for matchers in MATCHERS.findall(without_strings):
        names.update(MATCHER_NAME.findall(matchers))
    return names


def template_labels(text: str) -> set[str]:
    found = {a or b for a, b in TEMPLATE_LABEL.findall(text)}
    return found - TEMPLATE_WORDS


# --- what the service exports -------------------------------------------------------------


class Exported:
    """The families of a `/metrics` text, with their types, and every label its samples use."""

    def __init__(self, text: str) -> None:
        self.types: dict[str, str] = {}
        self.labels: set[str] = set()
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind
            elif line and not line.startswith("#"):
                sample = SAMPLE.match(line)
                if sample and sample.group(2):
                    self.labels.update(re.findall(r'([a-zA-Z_]\w*)="', sample.group(2)))

    def family(self, name: str) -> str | None:
        """The family a sample name belongs to: a histogram's `_bucket`, `_sum` and
        `_count`, and a counter's `_total`, resolve to theirs."""
        if name in self.types:
            return name
        for suffix, kinds in (
            ("_bucket", {"histogram"}),
            ("_sum", {"histogram", "summary"}),
            ("_count", {"histogram", "summary"}),
            ("_total", {"counter"}),
        ):
            base = name.removesuffix(suffix)
            if base != name and self.types.get(base) in kinds:
                return base
        return None


@pytest.fixture
def exported(start_server: Any, run_cli: Any, tmp_path: Path) -> Iterator[Exported]:
    require_binary("valkey-server")
    valkey = ValkeyServer(tmp_path / "valkey")
    valkey.start()
    loop = LoopThread()
    backend = ThreadedBackend(loop)
    backend.start()
    try:
        process = start_server(
            JWT_SECRET=SECRET,
            BACKEND_URL=backend.fake.base_url,
            BACKEND_TOKEN=backend.fake.token,
            VALKEY_URL=valkey.url(),
            STORE_PATH=str(tmp_path / "store"),
        )
        service = Service(process, run_cli)
        assert service.call("GET", f"/executions/{EXECUTION}/input").status == 200
        assert process.request("GET", f"/executions/{EXECUTION}/input").status == 401
        delivered = wait_until(
            lambda: 'cronium_runtime_audit_deliveries_total{sink="' in metrics_text(process),
            DELIVERY_DEADLINE,
        )
        assert delivered, metrics_text(process)
        yield Exported(metrics_text(process))
        process.stop()
    finally:
        backend.stop()
        loop.close()
        valkey.stop()


def metrics_text(process: Any) -> str:
    answer = process.request("GET", "/metrics")
    assert answer.status == 200
    return str(answer.body.decode())


# --- the checks ---------------------------------------------------------------------------


def test_every_metric_the_rules_and_the_dashboard_name_is_exported(exported: Exported) -> None:
    rule_expressions, _, recorded = rule_queries()
    dashboard_expressions, _ = dashboard_queries()
    named = {
        name
        for expression in rule_expressions + dashboard_expressions
        for name in metric_names(expression)
    }
    assert named, "no metric names found: the extraction is broken"
    missing = sorted(
        name for name in named if name not in recorded and exported.family(name) is None
    )
    assert not missing, f"named but not in /metrics: {missing}"
    unrecorded = sorted(name for name in named if ":" in name and name not in recorded)
    assert not unrecorded, f"recording-rule names used but never recorded: {unrecorded}"


def test_the_dashboard_shows_every_family_the_service_exports(exported: Exported) -> None:
    dashboard_expressions, _ = dashboard_queries()
    shown = {
        exported.family(name)
        for expression in dashboard_expressions
        for name in metric_names(expression)
    }
    families = {name for name in exported.types if name.startswith(PREFIX)}
    # A counter's or histogram's `_created` timestamps are a gauge family: nothing to chart.
    families = {
        name
        for name in families
        if not (
            name.endswith("_created")
            and {(base := name.removesuffix("_created")), f"{base}_total"} & families
        )
    }
    assert sorted(families - shown) == []


def test_rules_and_panels_use_only_labels_the_service_exports(exported: Exported) -> None:
    rule_expressions, rule_texts, _ = rule_queries()
    dashboard_expressions, legends = dashboard_queries()
    used = {name for text in rule_expressions + dashboard_expressions for name in label_names(text)}
    used |= {name for text in rule_texts + legends for name in template_labels(text)}
    assert {"route", "status", "sink", "operation", "code", "kind"} <= used, used
    assert not used & UNBOUNDED_LABELS
    allowed = exported.labels | SCRAPE_LABELS
    assert sorted(used - allowed) == [], f"exported labels: {sorted(exported.labels)}"
    # A route is matched by its template only, never by a literal path of one execution.
    literals = re.findall(r'route\s*(?:=~|!~|!=|=)\s*"([^"]*)"', " ".join(rule_expressions))
    literals += re.findall(
        r'route\s*(?:=~|!~|!=|=)\s*\\?"([^"\\]*)', " ".join(dashboard_expressions)
    )
    assert all("{" in value or not value.startswith("/executions/") for value in literals)


def test_the_checks_see_a_name_or_label_that_is_not_exported() -> None:
    """The control: a misspelt family and a raw path label are caught by the same helpers."""
    exported = Exported(
        "# TYPE cronium_runtime_http_requests_total counter\n"
        'cronium_runtime_http_requests_total{route="/health",method="GET",status="200"} 1.0\n'
        "# TYPE cronium_runtime_http_request_duration_seconds histogram\n"
    )
    expression = (
        'sum by (path) (rate(cronium_runtime_http_request_total{status=~"5.."}[5m]))'
        " / histogram_quantile(0.99, cronium_runtime_http_request_duration_seconds_bucket)"
    )
    names = metric_names(expression)
    assert exported.family("cronium_runtime_http_request_total") is None
    assert exported.family("cronium_runtime_http_request_duration_seconds_bucket") == (
        "cronium_runtime_http_request_duration_seconds"
    )
    assert "cronium_runtime_http_request_total" in names
    assert label_names(expression) == {"path", "status"}
    assert "path" not in exported.labels | SCRAPE_LABELS
