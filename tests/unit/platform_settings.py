"""The platform role's settings as the tests build objects from them (prod-like, default sizes)."""

from __future__ import annotations

from pathlib import Path

import platform_stack as ps
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = yaml.safe_load((ROOT / "roles/platform/defaults/main.yml").read_text())
DEFAULT_SIZES = DEFAULTS["platform_sizes"]
SETTINGS = {
    "environment": "prod",
    "namespace": "mlops-prod",
    "storage_class": "nfs-mlops-prod",
    "secret": "mlops-platform",
    "images": {name: f"registry.local/mlops/{name}:1.0-abcdef123456" for name in ps.IMAGES},
    "pull_policy": "IfNotPresent",
    "sizes": DEFAULT_SIZES,
    "exposed": {"api": "10.43.100.201", "ui": "", "mlflow": "", "airflow": "", "prometheus": ""},
    "mlflow_workers": 2,
    "seaweedfs_volume_size_mb": 1024,
    "prometheus_retention": "15d",
    "prometheus_scrape_interval": "15s",
    "prometheus_rules": "groups: []\n",
    "api_spool_size": "1Gi",
    "model_name": "house-price",
    "nodes": ["prod-server1", "prod-agent1"],
    "grafana_image": "",
    "grafana_dashboard": "{}",
    "cert_exporter": {"root": "/var/lib/rancher/k3s", "globs": ["server/tls/**/*.crt", "agent/*.crt"], "selinux_type": "spc_t"},
    "backup": {
        "schedule": DEFAULTS["platform_backup_schedule"],
        "keep": DEFAULTS["platform_backup_keep"],
        "volume_size": DEFAULTS["platform_backup_volume_size"],
        "storage_class": DEFAULTS["platform_backup_storage_class"],
        "scratch_size": DEFAULTS["platform_backup_scratch_size"],
    },
}
