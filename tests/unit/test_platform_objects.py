"""Unit tests for the platform layer's objects (plugins/filter/platform_*.py, k8s_objects.py)."""

from __future__ import annotations

import base64
import json

import platform_credentials as pc
import platform_policies
import platform_services
import platform_stack as ps
import pytest
from platform_settings import SETTINGS


def everything() -> list[dict]:
    files = ps.platform_objects(SETTINGS) | platform_services.services_objects(SETTINGS)
    return [obj for objects in files.values() for obj in objects]


def pod_templates() -> dict[str, dict]:
    """Pod template per workload name (Jobs by their component name)."""
    out = {}
    for obj in everything():
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            out[obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]] = obj["spec"]["template"]
        elif obj["kind"] == "CronJob":
            pod = obj["spec"]["jobTemplate"]["spec"]["template"]
            out[pod["metadata"]["labels"]["app.kubernetes.io/name"]] = pod
    return out


def test_every_container_is_hardened_sized_and_pinned():
    for name, pod in pod_templates().items():
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for box in spec["containers"]:
            where = f"{name}/{box['name']}"
            assert not box["image"].endswith(":latest") and ":" in box["image"].rsplit("/", 1)[1], where
            assert set(box["resources"]["requests"]) == {"cpu", "memory"} and "memory" in box["resources"]["limits"], where
            context = box["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["readOnlyRootFilesystem"] is True, where
            if spec.get("restartPolicy") not in ("OnFailure", "Never"):  # long-running: probed
                assert "readinessProbe" in box or "livenessProbe" in box, where


def test_only_pods_that_use_the_kubernetes_api_get_a_token():
    with_token = {name for name, pod in pod_templates().items() if pod["spec"]["automountServiceAccountToken"]}
    assert with_token == {"prometheus"}


def test_no_secret_value_is_in_any_object():
    secret = pc.platform_secret(None, None, "mlops-platform", "mlops-prod")
    dumped = json.dumps(everything())
    for key, value in secret["data"].items():
        plain = base64.b64decode(value).decode()
        assert plain not in dumped, key
    referenced = {ref["secretKeyRef"]["key"] for obj in everything() for ref in _walk(obj, "valueFrom") if "secretKeyRef" in ref} | {
        item["key"] for obj in everything() for vol in _walk(obj, "secret") if "items" in vol for item in vol["items"]
    }
    assert referenced <= set(secret["data"]), referenced - set(secret["data"])


def _walk(node, key):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, dict):
                yield v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_network_policies_allow_exactly_the_platform_flows():
    """A connection between two of the platform's pods needs the client's egress and the server's
    ingress: every pair and port the policies allow must be a flow of FLOWS, and every flow allowed."""
    pods = {name: pod["metadata"]["labels"] for name, pod in pod_templates().items()}
    policies = [o for o in everything() if o["kind"] == "NetworkPolicy"]
    ports = {port for _, _, port in platform_policies.FLOWS}

    def allowed(direction: str, subject: str, peer: str, port: int) -> bool:
        peer_key = "from" if direction == "ingress" else "to"
        for policy in policies:
            if direction not in policy["spec"] or not _selects(policy["spec"]["podSelector"], pods[subject]):
                continue
            for rule in policy["spec"][direction]:
                if any(_selects(p["podSelector"], pods[peer]) for p in rule[peer_key]) and any(p["port"] == port for p in rule["ports"]):
                    return True
        return False

    seen = {
        (client, server, port)
        for client in pods
        for server in pods
        for port in ports
        if allowed("egress", client, server, port) and allowed("ingress", server, client, port)
    }
    assert seen == set(platform_policies.FLOWS)
    assert {c for c, _, _ in platform_policies.FLOWS} | {s for _, s, _ in platform_policies.FLOWS} <= set(pods)


def test_jobs_are_named_by_content_and_stable():
    first = [o["metadata"]["name"] for o in everything() if o["kind"] == "Job"]
    assert first == [o["metadata"]["name"] for o in everything() if o["kind"] == "Job"]
    changed = ps.platform_objects(SETTINGS | {"images": SETTINGS["images"] | {"mlflow": "registry.local/mlops/mlflow:2.0-0123456789ab"}})
    renamed = {o["metadata"]["name"] for objects in changed.values() for o in objects if o["kind"] == "Job"}
    assert {name for name in first if name.startswith("mlflow-db-upgrade")}.isdisjoint(renamed)


def test_exposed_services_and_the_fixed_address():
    services = {o["metadata"]["name"]: o for o in everything() if o["kind"] == "Service"}
    exposed = {name for name, svc in services.items() if svc["spec"].get("type") == "LoadBalancer"}
    assert exposed == {"mlops-api", "mlops-ui", "mlflow", "airflow-api-server", "prometheus"}
    assert services["mlops-api"]["metadata"]["annotations"] == {"metallb.io/loadBalancerIPs": "10.43.100.201"}
    assert "annotations" not in services["mlflow"]["metadata"]


def test_credentials_are_kept_generated_or_taken_from_the_vault():
    first = pc.platform_secret(None, None, "s", "ns")
    assert pc.platform_secret(first["data"], None, "s", "ns") == first
    vault = pc.platform_secret(first["data"], {"reload-token": "fromTheVault123"}, "s", "ns")
    assert base64.b64decode(vault["data"]["reload-token"]).decode() == "fromTheVault123"
    other = pc.platform_secret(None, None, "s", "ns")
    assert other["data"]["postgres-password"] != first["data"]["postgres-password"]
    url = base64.b64decode(first["data"]["mlflow-db-url"]).decode()
    assert base64.b64decode(first["data"]["mlflow-db-password"]).decode() in url
    with pytest.raises(ValueError, match="platform_credentials: unknown key"):
        pc.platform_credentials(None, {"postgres_password": "x"})
    with pytest.raises(ValueError, match="reload-token must be letters and digits"):
        pc.platform_credentials(None, {"reload-token": "a@b"})


def test_images_come_from_the_list_or_the_site_and_are_pinned():
    listing = {name: {"ref": f"registry.local/mlops/{name}:1-abc"} for name in ps.IMAGES}
    refs = ps.platform_images(listing, {"api": "registry.example/ml/api:2.0"}, "build/images")
    assert refs["api"] == "registry.example/ml/api:2.0" and refs["ui"] == "registry.local/mlops/ui:1-abc"
    with pytest.raises(ValueError, match=r"no image for postgres.*make images"):
        ps.platform_images({k: v for k, v in listing.items() if k != "postgres"}, {}, "build/images")
    with pytest.raises(ValueError, match=r"platform_image_ui: .* is not pinned"):
        ps.platform_images(listing, {"ui": "registry.example/ml/ui:latest"}, "build/images")


@pytest.mark.parametrize(
    ("address", "inside"), [("10.43.100.201", True), ("10.43.100.231", False), ("10.43.100.241", True), ("192.168.1.1", False)]
)
def test_fixed_addresses_must_lie_in_a_pool(address, inside):
    pools = [{"addresses": ["10.43.100.200-10.43.100.230"]}, {"addresses": ["10.43.100.240/29"]}]
    assert ps.address_in_pools(address, pools) is inside


def test_a_failed_wait_names_the_pods_and_their_reasons():
    import k8s_objects

    pods = [
        {"metadata": {"name": "done"}, "status": {"phase": "Succeeded"}},
        {"metadata": {"name": "fine"}, "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": True}]}},
        {
            "metadata": {"name": "postgres-0"},
            "status": {
                "phase": "Pending",
                "containerStatuses": [
                    {"name": "postgres", "ready": False, "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no registry"}}},
                    {"name": "metrics", "ready": False, "restartCount": 3, "state": {"running": {}}},
                ],
            },
        },
        {"metadata": {"name": "unscheduled"}, "status": {"phase": "Pending", "conditions": [{"status": "False", "message": "0/1 nodes"}]}},
    ]
    assert k8s_objects.pods_not_ready(pods) == [
        "postgres-0: postgres ImagePullBackOff (no registry), metrics running, not ready, 3 restarts",
        "unscheduled: Pending 0/1 nodes",
    ]
