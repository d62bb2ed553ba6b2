"""deploy/: Prometheus config and rules pass promtool (rules with their unit tests), and the Grafana dashboard
parses, points at the provisioned datasource, and queries only metrics Rollwatch serves, each of them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from cli.commands.dlq import DeadLetterMetrics
from sinks.metrics import DeliveryMetrics, Metrics, SyncMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "rollwatch.json"
METRIC_NAME = re.compile(r"\brollwatch_[a-z_]+\b")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"), "gauge": ("",)}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: apt-get install prometheus"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def served_series() -> dict[str, str]:
    """Every series name a worker, register sync, the deliverer or the dead-letter exporter can expose, mapped
    to its family."""
    registry = CollectorRegistry()
    Metrics(registry)
    DeliveryMetrics(registry)
    SyncMetrics(registry, started=0.0)
    DeadLetterMetrics(registry)
    names = {}
    for family in registry.collect():
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = family.name
    return names


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", "rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 11 rules found" in checked.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    tested = promtool("test", "rules", "rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alerting_rule_has_a_unit_test() -> None:
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "rules.test.yml").read_text())
    tested = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert alerts == tested


def test_promtool_accepts_the_config(tmp_path: Path) -> None:
    syntax = promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
    # The full check opens the rule files, which the config names at their path inside the container.
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert "/etc/prometheus/rules.yml" in config
    local = tmp_path / "prometheus.yml"
    local.write_text(config.replace("/etc/prometheus/rules.yml", str(PROMETHEUS / "rules.yml")))
    full = promtool("check", "config", str(local), cwd=tmp_path)
    assert full.returncode == 0, full.stdout + full.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The checks above can fail: a rule with a PromQL syntax error is refused."""
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum by (topic (rate(x[5m]))\n")
    assert promtool("check", "rules", str(broken), cwd=tmp_path).returncode != 0


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses expressions only inside rules, so each query becomes a recording rule.
    recordings = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(dashboard_expressions())]
    rules = {"groups": [{"name": "dashboard", "rules": recordings}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", str(path), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_queries_name_only_metrics_rollwatch_serves(source: str) -> None:
    expressions = dashboard_expressions() if source == "dashboard" else rule_expressions()
    served = served_series()
    used = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    assert used, f"the {source} queries no Rollwatch metric"
    assert used <= set(served), f"not served: {sorted(used - set(served))}"


def test_the_dashboard_shows_every_metric_family() -> None:
    served = served_series()
    shown = {served[name] for expr in dashboard_expressions() for name in METRIC_NAME.findall(expr)}
    assert shown == set(served.values())


def test_the_dashboard_uses_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [datasource] = provisioned["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    board = dashboard()
    assert board["uid"] and board["title"]
    panels = board["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"]


def test_the_dashboard_provider_loads_the_folder_the_dashboards_are_in() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "rollwatch.yml").read_text())
    [entry] = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"] == "/var/lib/grafana/dashboards"
    assert DASHBOARD.parent.name == "dashboards"
