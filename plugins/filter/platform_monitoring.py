"""Prometheus for one environment: its configuration as data, its RBAC, its workload.

Scrapes the API, MLflow and PostgreSQL's exporter by pod discovery in the namespace, the nodes'
kubelets through the API server's node proxy, and itself; the alert rules come from the role's
files (tested with promtool in make test).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

import yaml
from k8s_objects import Obj, config_map, content_hash, http_probe, meta, mount, pod_spec, secret_volume, service, stateful_set, template
from platform_certs import enabled as node_certs_enabled
from platform_certs import scrape_job as node_certs_job

PORT = 9090
# Above 10000 like every platform pod (the image's own user, 990, is in Debian's system range).
UID = 10990
SECRETS = "/run/secrets/mlops"
API_PODS = "mlops-api-pods"


def prometheus_rbac(namespace: str) -> list[Obj]:
    """The kubelets' metrics through the API server's node proxy (cluster-wide, so the binding
    carries the namespace in its name)."""
    cluster_name = f"mlops-prometheus-{namespace}"
    subject = [{"kind": "ServiceAccount", "name": "prometheus", "namespace": namespace}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("prometheus", namespace), "automountServiceAccountToken": False},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta(cluster_name, None),
            "rules": [
                {"apiGroups": [""], "resources": ["nodes/proxy", "nodes/metrics"], "verbs": ["get"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta(cluster_name, None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
            "subjects": subject,
        },
    ]


def prometheus_config(p: Any) -> dict[str, Any]:
    """Debian's Prometheus is built without Kubernetes service discovery: the API's replicas are
    found through DNS (a headless Service lists the ready pods), single servers by their Service
    name, and the nodes are the inventory's."""

    def job(name: str, targets: list[str], **extra: Any) -> dict[str, Any]:
        return {"job_name": name, "static_configs": [{"targets": targets}], **extra}

    token = "/var/run/secrets/kubernetes.io/serviceaccount"
    return {
        "global": {
            "scrape_interval": p.s["prometheus_scrape_interval"],
            "evaluation_interval": p.s["prometheus_scrape_interval"],
            "external_labels": {"environment": p.s["environment"]},
        },
        "rule_files": ["/etc/prometheus/rules/*.yml"],
        "scrape_configs": [
            job("prometheus", [f"127.0.0.1:{PORT}"]),
            # One target per ready API replica.
            {
                "job_name": "mlops-api",
                "dns_sd_configs": [{"names": [f"{API_PODS}.{p.ns}.svc"], "type": "A", "port": 8000, "refresh_interval": "30s"}],
            },
            # MLflow's /metrics is behind its authentication, for the admin only.
            job("mlflow", ["mlflow:5000"], basic_auth={"username": "admin", "password_file": f"{SECRETS}/mlflow-admin-password"}),
            job("postgres", ["postgres:9187"]),
            # The nodes' kubelets, through the API server's node proxy: one egress (the API) and
            # the cluster CA, instead of reaching every node's port 10250 with its own certificate.
            {
                "job_name": "kubelet",
                "scheme": "https",
                "static_configs": [{"targets": ["kubernetes.default.svc:443"], "labels": {"node": node}} for node in p.s["nodes"]],
                "tls_config": {"ca_file": f"{token}/ca.crt"},
                "authorization": {"credentials_file": f"{token}/token"},
                "relabel_configs": [
                    {"source_labels": ["node"], "target_label": "__metrics_path__", "replacement": "/api/v1/nodes/${1}/proxy/metrics"},
                    {"source_labels": ["node"], "target_label": "instance"},
                ],
            },
            # The node certificates' expiry, one target per node (platform_certs.py).
            *([node_certs_job(p.ns)] if node_certs_enabled(p.s) else []),
        ],
    }


def api_pods_service(namespace: str) -> Obj:
    """Headless: its DNS name resolves to every ready API pod, which is how Prometheus finds them."""
    svc = service(API_PODS, namespace, {"http": 8000}, target="mlops-api")
    svc["spec"]["clusterIP"] = "None"
    return svc


def prometheus_objects(p: Any) -> list[Obj]:
    config = yaml.safe_dump(prometheus_config(p), sort_keys=False)
    rules = p.s["prometheus_rules"]
    server = p.box(
        "prometheus",
        "prometheus",
        "prometheus",
        args=[f"--storage.tsdb.retention.time={p.s['prometheus_retention']}", f"--web.listen-address=:{PORT}"],
        ports={"http": PORT},
        readiness=http_probe("/-/ready", "http"),
        liveness=http_probe("/-/healthy", "http", period=20, failures=6),
        startup=http_probe("/-/ready", "http", period=5, failures=60),
        mounts=[
            mount("data", "/prometheus"),
            mount("config", "/etc/prometheus/prometheus.yml", True, "prometheus.yml"),
            mount("rules", "/etc/prometheus/rules", True),
            mount("secrets", SECRETS, True),
        ],
    )
    volumes = [
        {"name": "config", "configMap": {"name": "prometheus"}},
        {"name": "rules", "configMap": {"name": "prometheus-rules"}},
        secret_volume("secrets", p.secret, {"mlflow-admin-password": "mlflow-admin-password"}),
    ]
    # A changed configuration or rule rolls the pod: Prometheus reads both at start.
    pod = template(
        "prometheus",
        pod_spec([server], UID, volumes=volumes, service_account="prometheus"),
        {"mlops-metal/exposed": "true", "mlops-metal/kube-api": "true"},
        {"mlops-metal/config": content_hash([config, rules])},
    )
    server_set = stateful_set("prometheus", p.ns, pod, {"data": (p.s["storage_class"], p.size("prometheus")["storage"])})
    reason = "the one pod that reads the Kubernetes API (the kubelets' metrics through its node proxy)"
    server_set["metadata"]["annotations"] = {"checkov.io/skip1": f"CKV_K8S_38={reason}"}
    return [
        *prometheus_rbac(p.ns),
        config_map("prometheus", p.ns, {"prometheus.yml": config}),
        config_map("prometheus-rules", p.ns, {"alerts.yml": rules}),
        server_set,
        service("prometheus", p.ns, {"http": PORT}, load_balancer=p.exposed("prometheus")),
    ]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {}
