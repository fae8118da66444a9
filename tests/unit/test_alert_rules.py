"""The platform's Prometheus alert rules: valid for promtool, each alert unit-tested firing and
quiet (tests/promtool/alerts_test.yml), labelled and annotated, and reading only metrics the API
defines and jobs the platform scrapes. promtool comes from Debian's prometheus package, which
`make pytest` installs: a missing promtool fails here, never skips."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "roles" / "platform" / "files" / "prometheus" / "alerts.yml"
UNIT_TESTS = ROOT / "tests" / "promtool" / "alerts_test.yml"
METRICS_SOURCE = ROOT / "services" / "src" / "mlops_services" / "serving" / "metrics.py"
# The platform Prometheus's scrape jobs (plugins/filter/platform_monitoring.py).
JOBS = {"mlops-api", "mlflow", "postgres", "kubelet", "prometheus"}
SEVERITIES = {"critical", "warning"}


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: `make pytest` installs it (Debian's prometheus package), or apt-get install prometheus")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_pass() -> None:
    done = promtool("test", "rules", str(UNIT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_severity_a_summary_and_a_description(rule: dict) -> None:
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    assert annotations.get("summary", "").strip() and annotations.get("description", "").strip()


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    """A rule that no test sees firing could never fire; one never seen quiet could always fire."""
    cases = [case for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for case in test.get("alert_rule_test", [])]
    names = {rule["alert"] for rule in alerts()}
    assert {c["alertname"] for c in cases if c.get("exp_alerts")} == names, "alerts never tested firing (or tests of unknown alerts)"
    assert {c["alertname"] for c in cases if not c.get("exp_alerts")} == names, "alerts never tested quiet (or tests of unknown alerts)"


def test_rules_read_only_scraped_jobs_and_metrics_the_api_defines() -> None:
    """A renamed job or metric would leave a rule silently quiet, not broken."""
    expressions = " ".join(rule["expr"] for rule in alerts())
    assert set(re.findall(r'job!?=~?"([^"]+)"', expressions)) <= JOBS
    source = METRICS_SOURCE.read_text()
    for name in set(re.findall(r"\bmlops_\w+", expressions)):
        family = re.sub(r"_(total|bucket|count|sum)$", "", name)  # prometheus-client's suffixes
        assert f'"{family}"' in source, f"{name}: not a metric of services/…/serving/metrics.py"
