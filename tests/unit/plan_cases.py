"""Shared by the network-plan and preflight unit tests: a sound plan and finding filters."""

from __future__ import annotations

BASE = {
    "k3s_cluster_cidr": "10.42.0.0/16",
    "k3s_service_cidr": "10.43.0.0/16",
    "k3s_cluster_dns": "10.43.0.10",
    "metallb_address_pools": [{"name": "default", "addresses": ["192.168.1.240-192.168.1.250"]}],
    "mlops_cluster_name": "lab",
    "mlops_environment": "dev",
}


def plan(**changes):
    return {**BASE, **changes}


def errors(problems):
    return [p["message"] for p in problems if p["severity"] == "error"]


def warnings(problems):
    return [p["message"] for p in problems if p["severity"] == "warning"]
