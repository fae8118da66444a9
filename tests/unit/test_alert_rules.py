"""The platform's Prometheus alert rules: valid for promtool, each alert unit-tested firing and
quiet (tests/promtool/alerts_test.yml), labelled and annotated, and reading only metrics the API
defines and jobs the platform scrapes. promtool comes from Debian's prometheus package, which
`make pytest` installs: a missing promtool fails here, never skips."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "roles" / "platform" / "files" / "prometheus" / "alerts.yml"
UNIT_TESTS = ROOT / "tests" / "promtool" / "alerts_test.yml"
METRICS_SOURCE = ROOT / "services" / "src" / "mlops_services" / "serving" / "metrics.py"
CERT_EXPORTER = ROOT / "services" / "images" / "backup" / "mlops_cert_exporter.py"
# The platform Prometheus's scrape jobs (plugins/filter/platform_monitoring.py, platform_certs.py).
JOBS = {"mlops-api", "mlflow", "postgres", "kubelet", "prometheus", "k3s-certificates"}
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
    exporter = CERT_EXPORTER.read_text()
    for name in set(re.findall(r"\bmlops_\w+", expressions)):
        if name.startswith("mlops_k3s_certificate_"):  # the node certificates' exporter writes its lines itself
            assert re.search(rf"\b{name}\b", exporter), f"{name}: not a metric of mlops_cert_exporter.py"
            continue
        family = re.sub(r"_(total|bucket|count|sum)$", "", name)  # prometheus-client's suffixes
        assert f'"{family}"' in source, f"{name}: not a metric of services/…/serving/metrics.py"


def test_the_certificate_exporter_serves_what_the_rules_read(tmp_path: Path) -> None:
    """The exporter on real certificates (openssl), its output parsed by promtool: a certificate
    with 20 days left, a leaf with its CA in one file (the earliest counts), an unparsable file."""
    (tmp_path / "server" / "tls").mkdir(parents=True)
    (tmp_path / "agent").mkdir()

    def cert(path: Path, days: int) -> None:
        done = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(tmp_path / "key"), "-subj", "/CN=test", "-days", str(days), "-out", str(path)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    cert(tmp_path / "server" / "tls" / "client-admin.crt", 20)
    cert(tmp_path / "agent" / "ca.crt", 3650)
    cert(tmp_path / "agent" / "leaf.crt", 400)
    with (tmp_path / "agent" / "leaf.crt").open("a") as chain:
        chain.write((tmp_path / "server" / "tls" / "client-admin.crt").read_text())
    (tmp_path / "agent" / "broken.crt").write_text("not a certificate\n")
    run = [sys.executable, str(CERT_EXPORTER), f"--root={tmp_path}", "--glob=server/tls/**/*.crt", "--glob=agent/*.crt", "--node=n1"]
    done = subprocess.run([*run, "--once"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "broken.crt: no certificate" in done.stderr
    check = subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"], input=done.stdout, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in done.stdout.splitlines() if not line.startswith("#")}
    metric = "mlops_k3s_certificate_expiry_timestamp_seconds"
    days = {Path(k.split('file="')[1].rstrip('"}')).name: (v - time.time()) / 86400 for k, v in values.items() if k.startswith(metric)}
    assert set(days) == {"client-admin.crt", "ca.crt", "leaf.crt"}
    assert 19.9 < days["client-admin.crt"] < 20.1 and 19.9 < days["leaf.crt"] < 20.1 and days["ca.crt"] > 3649
    assert values['mlops_k3s_certificate_files{node="n1"}'] == 3 and values['mlops_k3s_certificate_read_errors{node="n1"}'] == 1
