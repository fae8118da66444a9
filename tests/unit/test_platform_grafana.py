"""Unit tests for the optional Grafana (plugins/filter/platform_grafana.py) and its dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import platform_grafana as pg
import platform_stack as ps
import pytest
import yaml
from platform_settings import SETTINGS as BASE_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = (ROOT / "roles/platform/files/grafana/mlops-api.json").read_text()
SETTINGS = BASE_SETTINGS | {"sizes": BASE_SETTINGS["sizes"] | {"grafana": {"cpu": "50m", "memory": "128Mi", "memory_limit": "512Mi"}}}
IMAGE = "grafana/grafana:11.3.0"
# The platform Prometheus's scrape jobs (platform_monitoring.prometheus_config).
JOBS = {"mlops-api", "mlflow", "postgres", "kubelet", "prometheus"}


def objects(**settings) -> list[dict]:
    return pg.grafana_objects(ps.Platform(ps.plain(SETTINGS | settings)), DASHBOARD)


def by_kind_name(objs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def kubernetes_version() -> str:
    """The minor of the pinned K3s, as tools/validate_manifests.py takes it."""
    version = yaml.safe_load((ROOT / "roles/k3s/defaults/main.yml").read_text())["k3s_version"]
    major, minor = re.fullmatch(r"v(\d+)\.(\d+)\.\d+\+k3s\d+", version).groups()
    return f"{major}.{minor}.0"


def test_off_by_default():
    assert objects() == []
    assert pg.grafana_objects(ps.Platform(ps.plain({k: v for k, v in SETTINGS.items() if k != "grafana_image"})), DASHBOARD) == []


def test_with_an_image_the_provisioning_dashboards_workload_and_service_exist():
    found = by_kind_name(objects(grafana_image=IMAGE))
    assert set(found) == {
        ("ConfigMap", "grafana-provisioning"),
        ("ConfigMap", "grafana-dashboards"),
        ("Deployment", "grafana"),
        ("Service", "grafana"),
    }
    assert all(o["metadata"]["namespace"] == "mlops-prod" for o in found.values())
    assert found[("Deployment", "grafana")]["spec"]["replicas"] == 1
    svc = found[("Service", "grafana")]
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["ports"][0]["port"] == 3000
    assert "annotations" not in svc["metadata"]
    fixed = by_kind_name(objects(grafana_image=IMAGE, exposed=SETTINGS["exposed"] | {"grafana": "10.43.100.205"}))
    assert fixed[("Service", "grafana")]["metadata"]["annotations"] == {"metallb.io/loadBalancerIPs": "10.43.100.205"}


def test_the_datasource_is_the_prometheus_service_and_the_provider_reads_the_mounted_dashboards():
    found = by_kind_name(objects(grafana_image=IMAGE))
    data = found[("ConfigMap", "grafana-provisioning")]["data"]
    sources = yaml.safe_load(data["datasources.yaml"])
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "prometheus" and source["access"] == "proxy"
    assert source["url"] == "http://prometheus:9090" and source["isDefault"] is True
    prometheus_service = next(o for o in ps.platform_objects(SETTINGS)["60-prometheus.yaml"] if o["kind"] == "Service")
    assert prometheus_service["metadata"]["name"] == "prometheus"
    assert {p["port"] for p in prometheus_service["spec"]["ports"]} == {9090}
    (provider,) = yaml.safe_load(data["dashboards.yaml"])["providers"]
    assert provider["folder"] == "mlops-metal" and provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert json.loads(found[("ConfigMap", "grafana-dashboards")]["data"]["mlops-api.json"])["uid"] == "mlops-api"


def _expressions() -> list[str]:
    return [t["expr"] for p in _panels(json.loads(DASHBOARD)) for t in p.get("targets", [])]


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])  # collapsed rows
    return out


def test_the_dashboard_queries_the_provisioned_datasource_and_known_jobs_only():
    dashboard = json.loads(DASHBOARD)
    assert dashboard["uid"] == "mlops-api" and dashboard["title"] == "mlops-metal: API and model"
    assert 36 <= dashboard["schemaVersion"] <= 41
    panels = _panels(dashboard)
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = []
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus", panel["title"]
            exprs.append(target["expr"])
    for expr in exprs:
        jobs = re.findall(r'\bjob\s*(=~|!=|!~|=)\s*"([^"]*)"', expr)
        assert jobs, f"no job matcher in {expr}"
        for op, value in jobs:
            names = set(value.split("|")) if op == "=~" else {value}
            assert names <= JOBS, (expr, names - JOBS)
    text = "\n".join(exprs)
    for metric in (
        "mlops_api_requests_total",
        "mlops_api_request_seconds_bucket",
        "mlops_model_version",
        "mlops_model_loaded",
        "mlops_drift_detected",
        "mlops_drift_drifted_features_ratio",
        "mlops_inference_log_spooled_rows",
        "mlops_inference_log_rows_dropped_total",
        "up{",
    ):
        assert metric in text, metric
    assert re.search(r"histogram_quantile\(0\.95, sum by \([^)]*\ble\b[^)]*\) \(rate\(mlops_api_request_seconds_bucket", text)
    assert 'status=~"5.."' in text


def test_the_container_is_hardened_sized_pinned_and_probed():
    deploy = by_kind_name(objects(grafana_image=IMAGE))[("Deployment", "grafana")]
    pod = deploy["spec"]["template"]
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10472
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    (box,) = spec["containers"]
    assert box["image"] == IMAGE and not box["image"].endswith(":latest") and ":" in box["image"].rsplit("/", 1)[1]
    assert box["imagePullPolicy"] == "IfNotPresent"
    assert box["resources"] == {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    context = box["securityContext"]
    assert context["runAsNonRoot"] is True and context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
    ports = {p["name"]: p["containerPort"] for p in box["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert box[probe]["httpGet"]["path"] == "/api/health" and ports[box[probe]["httpGet"]["port"]] == 3000, probe
    mounts = {m["mountPath"]: m for m in box["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for path in ("/var/lib/grafana", "/tmp"):
        assert "emptyDir" in volumes[mounts[path]["name"]], path
    for path, config_map in (
        ("/etc/grafana/provisioning/datasources", "grafana-provisioning"),
        ("/etc/grafana/provisioning/dashboards", "grafana-provisioning"),
        ("/var/lib/grafana/dashboards", "grafana-dashboards"),
    ):
        assert mounts[path].get("readOnly") is True and volumes[mounts[path]["name"]]["configMap"]["name"] == config_map, path
    assert pod["metadata"]["labels"]["mlops-metal/exposed"] == "true"


def test_the_admin_password_comes_from_the_secret_and_nothing_calls_home():
    deploy = by_kind_name(objects(grafana_image=IMAGE))[("Deployment", "grafana")]
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GF_SECURITY_ADMIN_USER"]["value"] == "admin"
    assert env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "mlops-platform", "key": "grafana-admin-password"}}
    assert env["GF_ANALYTICS_REPORTING_ENABLED"]["value"] == "false"
    assert env["GF_ANALYTICS_CHECK_FOR_UPDATES"]["value"] == "false"
    assert env["GF_PATHS_DATA"]["value"] == "/var/lib/grafana"
    assert all("value" in e for name, e in env.items() if name != "GF_SECURITY_ADMIN_PASSWORD")


def test_the_queries_parse_and_read_only_metrics_the_api_defines(tmp_path):
    """promtool parses every query (as a recording rule); a renamed metric would leave a panel empty."""
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(_expressions())]}]}
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: `make pytest` installs it (Debian's prometheus package), or apt-get install prometheus")
    done = subprocess.run([binary, "check", "rules", str(tmp_path / "dashboard.yml")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    source = (ROOT / "services/src/mlops_services/serving/metrics.py").read_text()
    for name in set(re.findall(r"\bmlops_\w+", " ".join(_expressions()))):
        family = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert f'"{family}"' in source, f"{name}: not a metric of services/…/serving/metrics.py"


def test_a_changed_dashboard_or_datasource_rolls_the_pod():
    def config_hash(objs: list[dict]) -> str:
        return by_kind_name(objs)[("Deployment", "grafana")]["spec"]["template"]["metadata"]["annotations"]["mlops-metal/config"]

    first = config_hash(objects(grafana_image=IMAGE))
    assert first == config_hash(objects(grafana_image=IMAGE))
    changed = json.loads(DASHBOARD) | {"title": "changed"}
    platform = ps.Platform(ps.plain(SETTINGS | {"grafana_image": IMAGE}))
    assert config_hash(pg.grafana_objects(platform, json.dumps(changed))) != first
    assert config_hash(objects(grafana_image=IMAGE, prometheus_scrape_interval="30s")) != first


def test_a_parsed_dashboard_is_accepted_and_a_broken_one_refused():
    platform = ps.Platform(ps.plain(SETTINGS | {"grafana_image": IMAGE}))
    parsed = by_kind_name(pg.grafana_objects(platform, json.loads(DASHBOARD)))[("ConfigMap", "grafana-dashboards")]
    assert json.loads(parsed["data"]["mlops-api.json"]) == json.loads(DASHBOARD)
    with pytest.raises(ValueError, match="not a Grafana dashboard"):
        pg.grafana_objects(platform, "[]")


def test_the_flow_to_prometheus_is_declared():
    assert pg.FLOWS_GRAFANA == (("grafana", "prometheus", 9090),)
    assert pg.FilterModule().filters() == {}


def test_the_objects_validate_strictly_against_the_pinned_kubernetes():
    version = kubernetes_version()
    for obj in objects(grafana_image=IMAGE, exposed=SETTINGS["exposed"] | {"grafana": "10.43.100.205"}):
        kubernetes_validate.validate(obj, version, strict=True)
