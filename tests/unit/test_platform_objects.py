"""Unit tests for the platform layer's objects (plugins/filter/platform_*.py, k8s_objects.py)."""

from __future__ import annotations

import base64
import json

import platform_certs
import platform_credentials as pc
import platform_policies
import platform_services
import platform_stack as ps
import pytest
import yaml
from platform_settings import SETTINGS


def everything() -> list[dict]:
    files = ps.platform_objects(SETTINGS) | platform_services.services_objects(SETTINGS)
    return [obj for objects in files.values() for obj in objects]


def pod_templates() -> dict[str, dict]:
    """Pod template per workload name (Jobs by their component name)."""
    out = {}
    for obj in everything():
        if obj["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            out[obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]] = obj["spec"]["template"]
        elif obj["kind"] == "CronJob":
            pod = obj["spec"]["jobTemplate"]["spec"]["template"]
            out[pod["metadata"]["labels"]["app.kubernetes.io/name"]] = pod
    return out


def test_every_container_is_hardened_sized_and_pinned():
    for name, pod in pod_templates().items():
        spec = pod["spec"]
        if name != platform_certs.NAME:  # root for K3s's root-only folders (below)
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


def test_the_certificate_exporter_reads_the_host_folder_read_only_in_its_own_privileged_namespace():
    objects = ps.platform_objects(SETTINGS)["62-node-certs.yaml"]
    namespace, pod = objects[0], pod_templates()[platform_certs.NAME]
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == "mlops-prod-node-certs"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert {o["metadata"]["namespace"] for o in objects[1:]} == {"mlops-prod-node-certs"}
    # Its ingress policy comes with its namespace, not with the environment's (applied before it exists).
    assert "mlops-cert-exporter-ingress" in {o["metadata"]["name"] for o in objects}
    assert all(o["metadata"]["namespace"] == "mlops-prod" for o in ps.platform_objects(SETTINGS)["10-policies.yaml"])
    spec, (box,) = pod["spec"], pod["spec"]["containers"]
    assert spec["volumes"] == [{"name": "certs", "hostPath": {"path": "/var/lib/rancher/k3s", "type": "Directory"}}]
    assert box["volumeMounts"] == [{"name": "certs", "mountPath": "/var/lib/rancher/k3s", "readOnly": True}]
    assert box["securityContext"]["capabilities"] == {"drop": ["ALL"]} and box["securityContext"]["readOnlyRootFilesystem"]
    assert spec["automountServiceAccountToken"] is False and spec["tolerations"] == [{"operator": "Exists"}]
    assert box["args"] == ["--root=/var/lib/rancher/k3s", "--glob=server/tls/**/*.crt", "--glob=agent/*.crt", "--port=9101"]
    config = yaml.safe_load(ps.platform_objects(SETTINGS)["60-prometheus.yaml"][3]["data"]["prometheus.yml"])
    job = [j for j in config["scrape_configs"] if j["job_name"] == "k3s-certificates"]
    assert job[0]["dns_sd_configs"][0]["names"] == ["mlops-cert-exporter.mlops-prod-node-certs.svc"]


def test_no_certificate_exporter_when_its_root_is_empty():
    settings = {**SETTINGS, "cert_exporter": {**SETTINGS["cert_exporter"], "root": ""}}
    files = ps.platform_objects(settings)
    assert "62-node-certs.yaml" not in files
    assert "k3s-certificates" not in files["60-prometheus.yaml"][3]["data"]["prometheus.yml"]
    assert "mlops-cert-exporter" not in json.dumps(files["10-policies.yaml"])
    with pytest.raises(ValueError, match="absolute host path"):
        ps.platform_objects({**SETTINGS, "cert_exporter": {**SETTINGS["cert_exporter"], "root": "var/lib"}})


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
    flows = set(platform_policies.FLOWS + platform_policies.FLOWS_NODE_CERTS)
    ports = {port for _, _, port in flows}

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
    assert seen == flows
    assert {c for c, _, _ in flows} | {s for _, s, _ in flows} <= set(pods)


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
