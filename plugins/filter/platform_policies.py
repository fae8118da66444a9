"""Who may talk to whom inside an environment namespace.

The cluster layer gives every environment namespace a default-deny (ingress and egress) plus
DNS, scrapes from the monitoring namespace, ingress to pods labelled as exposed, and Kubernetes
API egress for pods labelled for it. Here every real flow between the platform's pods gets one
rule on each side: an ingress rule on the server's policy and an egress rule on the client's.
FLOWS is the single list; a unit test checks that the policies allow exactly these flows.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from k8s_objects import Obj, meta, selector
from platform_grafana import FLOWS_GRAFANA

AIRFLOW = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")

# (client, server, port): the client's pods open connections to the server's pods on that port.
FLOWS: tuple[tuple[str, str, int], ...] = (
    # PostgreSQL: MLflow's store, Airflow's metadata, the inference log, and the set-up Jobs.
    *(
        (client, "postgres", 5432)
        for client in ("postgres-init", "mlflow-db-upgrade", "mlflow", "airflow-db-migrate", *AIRFLOW, "mlops-api")
    ),
    ("prometheus", "postgres", 9187),
    # S3: MLflow's artifacts, the pipeline's data and Airflow's task logs (written by the
    # scheduler's tasks, read back by the API server), and the bucket Job.
    *((client, "seaweedfs", 8333) for client in ("s3-buckets", "mlflow", "airflow-scheduler", "airflow-api-server")),
    # MLflow: the pipeline (in the scheduler), the API loading the champion, the UI, Prometheus.
    *((client, "mlflow", 5000) for client in ("airflow-scheduler", "mlops-api", "mlops-ui", "prometheus")),
    # The API: the pipeline's reload, the UI, Prometheus.
    *((client, "mlops-api", 8000) for client in ("airflow-scheduler", "mlops-ui", "prometheus")),
    # Backups and restores (the CronJob's and the playbooks' Jobs): every database and bucket.
    ("mlops-backup", "postgres", 5432),
    ("mlops-backup", "seaweedfs", 8333),
    # Airflow 3's task execution API, served by the API server to the tasks the scheduler runs
    # (the DAG processor and the triggerer use an in-process one).
    ("airflow-scheduler", "airflow-api-server", 8080),
)
# Prometheus scraping the node certificates' exporter (platform_certs.py), when it runs.
FLOWS_NODE_CERTS: tuple[tuple[str, str, int], ...] = (("prometheus", "mlops-cert-exporter", 9101),)
# Servers in a namespace of their own, named <namespace><suffix>: their ingress policy lives
# there, and both sides name the other's namespace (the exporter's hostPath needs a privileged one).
OWN_NAMESPACE = {"mlops-cert-exporter": "-node-certs"}


def _policy(namespace: str, name: str, spec: dict[str, Any]) -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(name, namespace), "spec": spec}


def network_policies(namespace: str, settings: dict[str, Any] | None = None) -> list[Obj]:
    ingress: dict[str, list[Obj]] = defaultdict(list)
    egress: dict[str, list[Obj]] = defaultdict(list)
    settings = settings or {}
    flows = FLOWS + (FLOWS_GRAFANA if settings.get("grafana_image") else ())
    flows += FLOWS_NODE_CERTS if (settings.get("cert_exporter") or {}).get("root") else ()
    for client, server, port in flows:
        ports = [{"protocol": "TCP", "port": port}]
        client_peer: Obj = {"podSelector": {"matchLabels": selector(client)}}
        server_peer: Obj = {"podSelector": {"matchLabels": selector(server)}}
        if server in OWN_NAMESPACE:
            client_peer["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            server_peer["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace + OWN_NAMESPACE[server]}}
        ingress[server].append({"from": [client_peer], "ports": ports})
        egress[client].append({"to": [server_peer], "ports": ports})
    objects = [
        _policy(
            namespace + OWN_NAMESPACE.get(server, ""),
            f"{server}-ingress",
            {"podSelector": {"matchLabels": selector(server)}, "policyTypes": ["Ingress"], "ingress": rules},
        )
        for server, rules in sorted(ingress.items())
    ]
    objects += [
        _policy(
            namespace, f"{client}-egress", {"podSelector": {"matchLabels": selector(client)}, "policyTypes": ["Egress"], "egress": rules}
        )
        for client, rules in sorted(egress.items())
    ]
    return objects


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {}
