"""The Prometheus alerting rules shipped for on-call (``config/prometheus/alerts.yml``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from riskmon.metrics import REGISTRY
from riskmon.testing import stack_required

ROOT = Path(__file__).resolve().parents[2]
RULES = yaml.safe_load((ROOT / "config" / "prometheus" / "alerts.yml").read_text())["groups"]


def exported_names() -> set[str]:
    """Every series name the worker's /metrics can carry."""
    names: set[str] = set()
    metric: Metric
    for metric in REGISTRY.collect():
        names.add(metric.name)
        if metric.type == "counter":
            names.add(metric.name + "_total")
        if metric.type == "histogram":
            names.update(metric.name + s for s in ("_bucket", "_sum", "_count"))
    return names


def runbook_symptoms() -> set[str]:
    """The first cell of every runbook row of README.md, without backticks."""
    text = (ROOT / "README.md").read_text().split("## Runbook", 1)[1]
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    return {row.split(" | ")[0].lstrip("| ").replace("`", "") for row in rows[1:]}


def test_every_alert_reads_metrics_the_worker_exports() -> None:
    """A misspelt metric makes an alert that never fires: each ``riskmon_*`` name in an
    expression is one the worker exports."""
    exported = exported_names()
    rules = [r for g in RULES for r in g["rules"]]
    assert len(rules) >= 5
    for rule in rules:
        for name in re.findall(r"\briskmon_[a-z_]+", rule["expr"]):
            assert name in exported, (rule["alert"], name)


def test_every_alert_has_a_severity_and_points_to_a_runbook_row() -> None:
    """On-call sees how urgent an alert is and where the README says what to do."""
    symptoms = runbook_symptoms()
    for rule in (r for g in RULES for r in g["rules"]):
        assert rule["labels"]["severity"] in {"page", "ticket", "info"}, rule["alert"]
        assert rule["annotations"]["summary"]
        row = rule["annotations"]["runbook"].split("Runbook: ", 1)[1]
        assert row in symptoms, (rule["alert"], row, symptoms)


def test_the_alerts_fire_as_their_promtool_unit_tests_say() -> None:
    """``promtool test rules``: each alert fires on the series it is for and stays quiet
    otherwise (``config/prometheus/alerts_test.yml``), a counter's first increment
    included. promtool comes with Debian's prometheus package (``.ci/run`` installs it)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool not installed (apt-get install prometheus)"
        if stack_required():
            pytest.fail(message + "; required under CI=true")
        pytest.skip(message)
    done = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=ROOT / "config" / "prometheus",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
