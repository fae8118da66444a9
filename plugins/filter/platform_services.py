"""The ML services on the platform: the API (probes, PodDisruptionBudget, autoscaler, the reload
token from the Secret, the inference-log spool on a volume) and the UI, applied by services.yml
after the platform (``mlops_services_objects``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from k8s_objects import (
    Obj,
    autoscaler,
    deployment,
    empty_dir,
    env_list,
    http_probe,
    mount,
    plain,
    pod_disruption_budget,
    pod_spec,
    service,
    template,
)
from platform_monitoring import api_pods_service
from platform_stack import PORTS, UIDS, Platform


def api(p: Platform) -> list[Obj]:
    size = p.size("api")
    server = p.box(
        "api",
        "api",
        "api",
        env=p.ml_client_env() + env_list({"MLOPS_SPOOL_DIR": "/var/spool/mlops", "MLOPS_MODEL_NAME": p.s["model_name"]}),
        ports={"http": PORTS["api"]},
        readiness=http_probe("/ready", "http"),
        liveness=http_probe("/health", "http", period=20, failures=6),
        mounts=[mount("spool", "/var/spool/mlops"), mount("tmp", "/tmp")],
    )
    # The spool keeps inference rows while PostgreSQL is away; it outlives container restarts.
    volumes = [empty_dir("spool", p.s["api_spool_size"]), empty_dir("tmp", "1Gi")]
    pod = template("mlops-api", pod_spec([server], UIDS["api"], volumes=volumes), {"mlops-metal/exposed": "true"})
    return [
        deployment("mlops-api", p.ns, size["replicas"], pod),
        service("mlops-api", p.ns, {"http": PORTS["api"]}, load_balancer=p.exposed("api")),
        api_pods_service(p.ns),
        pod_disruption_budget("mlops-api", p.ns, size["replicas"]),
        autoscaler("mlops-api", p.ns, size["replicas"], size["max_replicas"], 75),
    ]


def ui(p: Platform) -> list[Obj]:
    urls = p.urls()
    server = p.box(
        "ui",
        "ui",
        "ui",
        # Read-only views: the registry and its artifacts through MLflow, predictions through the API.
        env=env_list({key: urls[key] for key in ("MLFLOW_TRACKING_URI", "MLOPS_API_URL")} | {"MLFLOW_TRACKING_USERNAME": "admin"})
        + p.secret_env(MLFLOW_TRACKING_PASSWORD="mlflow-admin-password"),
        ports={"http": PORTS["ui"]},
        readiness=http_probe("/_stcore/health", "http"),
        liveness=http_probe("/_stcore/health", "http", period=20, failures=6),
        mounts=[mount("tmp", "/tmp")],
    )
    pod = template("mlops-ui", pod_spec([server], UIDS["api"], volumes=[empty_dir("tmp")]), {"mlops-metal/exposed": "true"})
    return [
        deployment("mlops-ui", p.ns, p.size("ui")["replicas"], pod),
        service("mlops-ui", p.ns, {"http": PORTS["ui"]}, load_balancer=p.exposed("ui")),
    ]


def services_objects(settings: dict[str, Any]) -> dict[str, list[Obj]]:
    p = Platform(plain(settings))
    return {"70-api.yaml": api(p), "71-ui.yaml": ui(p)}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"mlops_services_objects": services_objects}
