"""Grafana for one environment, off by default: dashboards and a data source as data.

Debian does not package Grafana, so the platform builds no image for it: a site that wants it
sets ``grafana_image`` to a Grafana image it supplies (pinned), and gets a Deployment that
reads the platform's Prometheus and shows the role's dashboards (files/grafana/). Everything
Grafana knows is provisioned at start from two ConfigMaps; its database is an emptyDir, so
edits made in the UI last until the pod restarts and the provisioned state is the truth.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

import yaml
from k8s_objects import (
    Obj,
    config_map,
    container,
    content_hash,
    deployment,
    empty_dir,
    env_list,
    http_probe,
    mount,
    pod_spec,
    service,
    template,
)
from platform_monitoring import PORT as PROMETHEUS_PORT

PORT = 3000
# The uid the Grafana image is built for (its directories are also writable by others).
# Above 10000 like every platform pod; its data and temporary files are on emptyDirs.
UID = 10472
DATA = "/var/lib/grafana"
DASHBOARDS = f"{DATA}/dashboards"
PROVISIONING = "/etc/grafana/provisioning"
DATASOURCE_UID = "prometheus"
DASHBOARD_FILE = "mlops-api.json"
PASSWORD_KEY = "grafana-admin-password"

# (client, server, port) for platform_policies.FLOWS while Grafana is on.
FLOWS_GRAFANA: tuple[tuple[str, str, int], ...] = (("grafana", "prometheus", PROMETHEUS_PORT),)


def datasources(p: Any) -> dict[str, Any]:
    """The platform's Prometheus by its Service name, queried through Grafana's backend (proxy):
    browsers reach Grafana only, and the namespace's policies let only Grafana reach Prometheus."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "uid": DATASOURCE_UID,
                "access": "proxy",
                "url": f"http://prometheus:{PROMETHEUS_PORT}",
                "isDefault": True,
                "editable": False,
                # $__rate_interval needs the scrape interval to stay above two samples.
                "jsonData": {"timeInterval": p.s["prometheus_scrape_interval"], "httpMethod": "POST"},
            }
        ],
    }


def dashboard_providers() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "mlops-metal",
                "orgId": 1,
                "folder": "mlops-metal",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "options": {"path": DASHBOARDS},
            }
        ],
    }


def config_volume(name: str, config_map_name: str, items: dict[str, str] | None = None) -> Obj:
    """A ConfigMap as a directory: all its keys, or only ``items`` (key: file name)."""
    source: Obj = {"name": config_map_name}
    if items:
        source["items"] = [{"key": key, "path": path} for key, path in items.items()]
    return {"name": name, "configMap": source}


def dashboard_text(dashboard_json: str | dict[str, Any]) -> str:
    """The dashboard file's text. Ansible may hand over the parsed file (a JSON-looking string
    becomes a dict when templated): either way it must be a dashboard with a uid."""
    parsed = json.loads(dashboard_json) if isinstance(dashboard_json, str) else json.loads(json.dumps(dashboard_json))
    if not isinstance(parsed, dict) or not parsed.get("uid") or not isinstance(parsed.get("panels"), list):
        raise ValueError("grafana dashboard: not a Grafana dashboard (a JSON object with a uid and panels)")
    return dashboard_json if isinstance(dashboard_json, str) else json.dumps(parsed, indent=2) + "\n"


def grafana_objects(p: Any, dashboard_json: str | dict[str, Any]) -> list[Obj]:
    """Nothing unless the site supplies an image (``grafana_image``): the provisioning and the
    dashboards as ConfigMaps, one Grafana replica, and its LoadBalancer Service."""
    image = p.s.get("grafana_image") or ""
    if not image:
        return []
    provisioning = {
        "datasources.yaml": yaml.safe_dump(datasources(p), sort_keys=False),
        "dashboards.yaml": yaml.safe_dump(dashboard_providers(), sort_keys=False),
    }
    dashboards = {DASHBOARD_FILE: dashboard_text(dashboard_json)}
    env = env_list(
        {
            "GF_SECURITY_ADMIN_USER": "admin",
            "GF_PATHS_DATA": DATA,
            "GF_PATHS_PROVISIONING": PROVISIONING,
            # The root filesystem is read-only: log to the console only, never to /var/log/grafana.
            "GF_LOG_MODE": "console",
            # No calls home: the namespace's default-deny would refuse them anyway.
            "GF_ANALYTICS_REPORTING_ENABLED": "false",
            "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
            "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
            "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": f"{DASHBOARDS}/{DASHBOARD_FILE}",
        },
        {"GF_SECURITY_ADMIN_PASSWORD": (p.secret, PASSWORD_KEY)},
    )
    server = container(
        "grafana",
        image,
        p.size("grafana"),
        pull_policy=p.s["pull_policy"],
        env=env,
        ports={"http": PORT},
        readiness=http_probe("/api/health", "http"),
        liveness=http_probe("/api/health", "http", period=20, failures=6),
        startup=http_probe("/api/health", "http", period=5, failures=60),
        mounts=[
            mount("data", DATA),
            mount("tmp", "/tmp"),
            mount("datasources", f"{PROVISIONING}/datasources", True),
            mount("dashboard-providers", f"{PROVISIONING}/dashboards", True),
            mount("dashboards", DASHBOARDS, True),
        ],
    )
    volumes = [
        empty_dir("data", "1Gi"),
        empty_dir("tmp"),
        # One ConfigMap, one directory per provisioning kind: Grafana reads every file of each.
        config_volume("datasources", "grafana-provisioning", {"datasources.yaml": "prometheus.yaml"}),
        config_volume("dashboard-providers", "grafana-provisioning", {"dashboards.yaml": "mlops-metal.yaml"}),
        config_volume("dashboards", "grafana-dashboards"),
    ]
    # A changed data source or dashboard rolls the pod: provisioning is read at start.
    pod = template(
        "grafana",
        pod_spec([server], UID, volumes=volumes),
        {"mlops-metal/exposed": "true"},
        {"mlops-metal/config": content_hash([provisioning, dashboards])},
    )
    server_deployment = deployment("grafana", p.ns, 1, pod)
    return [
        config_map("grafana-provisioning", p.ns, provisioning),
        config_map("grafana-dashboards", p.ns, dashboards),
        server_deployment,
        service("grafana", p.ns, {"http": PORT}, load_balancer=p.s["exposed"].get("grafana", "")),
    ]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {}
