"""Unit tests for the add-on objects (plugins/filter/cluster_addons.py)."""

from __future__ import annotations

import cluster_addons as ca
import network_plan
import pytest
import yaml

PLAN = network_plan.network_plan(
    {
        "k3s_cluster_cidr": "10.44.0.0/16",
        "k3s_service_cidr": "10.45.0.0/16",
        "k3s_cluster_dns": "10.45.0.10",
        "metallb_address_pools": [
            {"name": "default", "addresses": ["10.43.100.200-10.43.100.230"]},
            {"name": "peering", "protocol": "bgp", "auto_assign": False, "addresses": ["10.99.0.0/28"]},
        ],
        "mlops_cluster_name": "mlops",
        "mlops_environment": "prod",
    }
)
SETTINGS = {
    "cluster": "mlops",
    "default_environment": "prod",
    "environments": ["staging", "prod"],
    "airgap": False,
    "metallb": {"version": "0.15.2", "repo": "https://metallb.github.io/metallb"},
    "csi_nfs": {"version": "v4.11.0", "repo": "https://example.invalid/charts"},
    "nfs": {"server": "10.43.100.5", "share_root": "/srv/nfs/", "mount_options": ["nfsvers=4.2"], "reclaim_policy": "Retain"},
    "monitoring_namespace": "monitoring",
    "api_server_addresses": ["10.43.100.11", "10.43.100.12", "server3.example"],
    "api_port": "6443",
}


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def test_files_and_kinds():
    files = ca.cluster_addons(PLAN, SETTINGS)
    assert sorted(files) == sorted(
        ["mlops-metallb.yaml", "mlops-metallb-pools.yaml", "mlops-csi-driver-nfs.yaml", "mlops-storage.yaml", "mlops-namespaces.yaml"]
    )


def test_pools_follow_the_plan_and_only_layer2_pools_are_advertised():
    objects = ca.metallb_pools(PLAN)
    pools = by_kind(objects, "IPAddressPool")
    assert [(p["metadata"]["name"], p["spec"]["addresses"], p["spec"]["autoAssign"]) for p in pools] == [
        ("default", ["10.43.100.200-10.43.100.230"], True),
        ("peering", ["10.99.0.0/28"], False),
    ]
    (l2,) = by_kind(objects, "L2Advertisement")
    assert l2["spec"]["ipAddressPools"] == ["default"]


def test_no_pools_no_advertisement():
    assert ca.metallb_pools({**PLAN, "metallb_address_pools": []}) == []


def test_online_and_airgapped_chart_sources():
    online = ca.metallb(SETTINGS)[1]["spec"]
    assert (online["chart"], online["repo"], online["version"]) == ("metallb", "https://metallb.github.io/metallb", "0.15.2")
    offline = ca.metallb({**SETTINGS, "airgap": True})[1]["spec"]
    assert offline["chart"] == "https://%{KUBERNETES_API}%/static/charts/metallb-0.15.2.tgz"
    assert "repo" not in offline and "version" not in offline
    assert ca.chart_files(SETTINGS) == ["metallb-0.15.2.tgz", "csi-driver-nfs-v4.11.0.tgz"]


def test_metallb_namespace_is_privileged_for_the_speaker():
    ns = ca.metallb(SETTINGS)[0]
    assert ns["metadata"]["name"] == "metallb-system"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_one_storage_class_per_environment_one_default():
    classes = ca.storage_classes(SETTINGS)
    assert [c["metadata"]["name"] for c in classes] == ["nfs-mlops-staging", "nfs-mlops-prod"]
    defaults = [
        c["metadata"]["name"] for c in classes if c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    ]
    assert defaults == ["nfs-mlops-prod"]
    prod = classes[1]
    assert prod["parameters"] == {
        "server": "10.43.100.5",
        "share": "/srv/nfs/mlops/prod",
        "subDir": "${pvc.metadata.namespace}/${pvc.metadata.name}",
        "onDelete": "retain",
    }
    assert prod["reclaimPolicy"] == "Retain" and prod["mountOptions"] == ["nfsvers=4.2"]


def test_environment_namespaces_deny_by_default_and_allow_what_the_platform_needs():
    objects = ca.environment_namespaces(PLAN, SETTINGS)
    namespaces = [o["metadata"]["name"] for o in by_kind(objects, "Namespace")]
    assert namespaces == ["mlops-staging", "mlops-prod"]
    prod = {o["metadata"]["name"]: o["spec"] for o in by_kind(objects, "NetworkPolicy") if o["metadata"]["namespace"] == "mlops-prod"}
    assert prod["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert set(prod) == {"default-deny", "allow-dns", "allow-monitoring-scrape", "allow-exposed", "allow-kube-api"}
    api = prod["allow-kube-api"]["egress"][0]["to"]
    # Names are not IPs and are left out; the service IP is the first of the range.
    assert [b["ipBlock"]["cidr"] for b in api] == ["10.43.100.11/32", "10.43.100.12/32", "10.45.0.1/32"]


def test_manifest_is_multi_document_yaml_with_readable_values():
    text = ca.to_manifest(ca.metallb(SETTINGS))
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["Namespace", "HelmChart"]
    assert "valuesContent: |" in text
    assert yaml.safe_load(docs[1]["spec"]["valuesContent"]) == {
        "controller": {"logLevel": "info", "image": {"repository": "quay.io/metallb/controller", "tag": "v0.15.2"}},
        "speaker": {"frr": {"enabled": False}, "image": {"repository": "quay.io/metallb/speaker", "tag": "v0.15.2"}},
    }


def test_charts_pin_their_images_in_their_values():
    """The pinned chart versions' own image defaults, written out so images.txt can list them;
    a chart version without a list stops with the fix."""
    csi = yaml.safe_load(ca.csi_nfs(SETTINGS)[0]["spec"]["valuesContent"])["image"]
    assert csi["nfs"] == {"repository": "registry.k8s.io/sig-storage/nfsplugin", "tag": "v4.11.0"}
    assert set(csi) == {"nfs", "csiProvisioner", "csiResizer", "csiSnapshotter", "livenessProbe", "nodeDriverRegistrar"}
    assert ca.metallb_image("speaker", "v0.15.2") == {"repository": "quay.io/metallb/speaker", "tag": "v0.15.2"}
    with pytest.raises(ValueError, match=r"csi-driver-nfs chart v9\.9\.9 has no image list.*CSI_NFS_IMAGES"):
        ca.csi_nfs({**SETTINGS, "csi_nfs": {"version": "v9.9.9", "repo": "x"}})
