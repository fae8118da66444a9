"""Cluster add-on objects (MetalLB, NFS CSI, namespaces and policies) built as data.

``cluster_addons(plan, settings)`` returns ``{file name: [objects]}``: the files K3s
auto-deploys from its manifests directory, and that render mode writes to build/<env>/.
Pure Python, unit-tested; the role only decides where the objects go.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import yaml

MANAGED_BY = {"app.kubernetes.io/managed-by": "mlops-metal"}
METALLB_NAMESPACE = "metallb-system"
POOLS_FILE = "mlops-metallb-pools.yaml"
# K3s serves /var/lib/rancher/k3s/server/static on the API port; HelmCharts use this
# placeholder for the API address when their chart archive comes from the air-gap bundle.
STATIC_CHARTS = "https://%{KUBERNETES_API}%/static/charts"


# Each chart's images, written into its values so that the rendered HelmChart names every image
# it runs (build/<env>/images.txt reads them from there). The tags are the pinned charts' own
# defaults: the deployment does not change, and a new chart version must say its images here.
CSI_NFS_IMAGES = {
    "v4.11.0": {
        "nfs": "registry.k8s.io/sig-storage/nfsplugin:v4.11.0",
        "csiProvisioner": "registry.k8s.io/sig-storage/csi-provisioner:v5.2.0",
        "csiResizer": "registry.k8s.io/sig-storage/csi-resizer:v1.13.1",
        # The controller's snapshot sidecar (controller.enableSnapshotter, on by default).
        "csiSnapshotter": "registry.k8s.io/sig-storage/csi-snapshotter:v8.2.0",
        "livenessProbe": "registry.k8s.io/sig-storage/livenessprobe:v2.15.0",
        "nodeDriverRegistrar": "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.13.0",
    },
}


def _image_values(ref: str) -> dict[str, str]:
    repository, tag = ref.rsplit(":", 1)
    return {"repository": repository, "tag": tag}


def metallb_image(component: str, version: str) -> dict[str, str]:
    """MetalLB's chart tags its images with its own version (appVersion v<version>)."""
    return _image_values(f"quay.io/metallb/{component}:v{version.lstrip('v')}")


def csi_nfs_images(version: str) -> dict[str, dict[str, str]]:
    if version not in CSI_NFS_IMAGES:
        raise ValueError(
            f"csi-driver-nfs chart {version} has no image list in plugins/filter/cluster_addons.py (CSI_NFS_IMAGES): "
            f"add the images of its values.yaml (image.*.repository and tag), or set cluster_addons_csi_nfs_version to "
            f"{', '.join(sorted(CSI_NFS_IMAGES))}"
        )
    return {name: _image_values(ref) for name, ref in CSI_NFS_IMAGES[version].items()}


def addon_images(settings: dict[str, Any]) -> list[str]:
    """Every image the add-ons run, as references: what an air-gap bundle must carry."""
    version = str(settings["metallb"]["version"])
    metallb = [metallb_image(component, version) for component in ("controller", "speaker")]
    csi = csi_nfs_images(str(settings["csi_nfs"]["version"])).values()
    return sorted(f"{image['repository']}:{image['tag']}" for image in [*metallb, *csi])


def chart_file(name: str, version: str) -> str:
    return f"{name}-{version}.tgz"


def plain(value: Any) -> Any:
    """Ansible hands filters tagged str/dict subclasses that PyYAML's safe dumper refuses."""
    return json.loads(json.dumps(value))


def _yaml(value: Any) -> str:
    return yaml.safe_dump(plain(value), default_flow_style=False, sort_keys=True)


def helm_chart(name: str, repo: str, version: str, namespace: str, values: dict[str, Any], airgap: bool) -> dict[str, Any]:
    source: dict[str, Any]
    source = {"chart": f"{STATIC_CHARTS}/{chart_file(name, version)}"} if airgap else {"chart": name, "repo": repo, "version": version}
    return {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChart",
        "metadata": {"name": name, "namespace": "kube-system", "labels": dict(MANAGED_BY)},
        "spec": {**source, "targetNamespace": namespace, "createNamespace": False, "valuesContent": _yaml(values)},
    }


def namespace(name: str, enforce: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                **MANAGED_BY,
                "pod-security.kubernetes.io/enforce": enforce,
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
                **(labels or {}),
            },
        },
    }


def metallb(settings: dict[str, Any]) -> list[dict[str, Any]]:
    # The speaker needs host networking and NET_RAW: its namespace must be privileged.
    ns = namespace(METALLB_NAMESPACE, "privileged")
    ns["metadata"]["labels"]["pod-security.kubernetes.io/warn"] = "privileged"
    ns["metadata"]["labels"]["pod-security.kubernetes.io/audit"] = "privileged"
    values = {
        # Layer 2 only: no FRR container to pull or run.
        "speaker": {"frr": {"enabled": False}, "image": metallb_image("speaker", settings["metallb"]["version"])},
        "controller": {"logLevel": "info", "image": metallb_image("controller", settings["metallb"]["version"])},
    }
    chart = helm_chart(
        "metallb", settings["metallb"]["repo"], settings["metallb"]["version"], METALLB_NAMESPACE, values, settings["airgap"]
    )
    return [ns, chart]


def metallb_pools(plan: dict[str, Any]) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    layer2: list[str] = []
    for pool in plan["metallb_address_pools"]:
        spec: dict[str, Any] = {"addresses": list(pool["addresses"]), "autoAssign": bool(pool["auto_assign"])}
        objects.append(
            {
                "apiVersion": "metallb.io/v1beta1",
                "kind": "IPAddressPool",
                "metadata": {"name": pool["name"], "namespace": METALLB_NAMESPACE, "labels": dict(MANAGED_BY)},
                "spec": spec,
            }
        )
        if pool["protocol"] == "layer2":
            layer2.append(pool["name"])
    if layer2:
        objects.append(
            {
                "apiVersion": "metallb.io/v1beta1",
                "kind": "L2Advertisement",
                "metadata": {"name": "mlops-layer2", "namespace": METALLB_NAMESPACE, "labels": dict(MANAGED_BY)},
                "spec": {"ipAddressPools": layer2},
            }
        )
    return objects


def csi_nfs(settings: dict[str, Any]) -> list[dict[str, Any]]:
    values = {
        "driver": {"name": "nfs.csi.k8s.io"},
        "controller": {"replicas": 1, "runOnControlPlane": True},
        "externalSnapshotter": {"enabled": False},
        "kubeletDir": "/var/lib/kubelet",
        "image": csi_nfs_images(settings["csi_nfs"]["version"]),
    }
    return [
        helm_chart("csi-driver-nfs", settings["csi_nfs"]["repo"], settings["csi_nfs"]["version"], "kube-system", values, settings["airgap"])
    ]


def storage_class_name(cluster: str, environment: str) -> str:
    return f"nfs-{cluster}-{environment}"


def storage_classes(settings: dict[str, Any]) -> list[dict[str, Any]]:
    nfs = settings["nfs"]
    objects = []
    for env in settings["environments"]:
        default = "true" if env == settings["default_environment"] else "false"
        objects.append(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": storage_class_name(settings["cluster"], env),
                    "labels": {**MANAGED_BY, "mlops-metal/environment": env},
                    "annotations": {"storageclass.kubernetes.io/is-default-class": default},
                },
                "provisioner": "nfs.csi.k8s.io",
                "parameters": {
                    "server": nfs["server"],
                    # One folder per cluster and environment; one sub-folder per namespace and claim.
                    "share": f"{nfs['share_root'].rstrip('/')}/{settings['cluster']}/{env}",
                    "subDir": "${pvc.metadata.namespace}/${pvc.metadata.name}",
                    "onDelete": "retain",
                },
                "reclaimPolicy": nfs["reclaim_policy"],
                "volumeBindingMode": "Immediate",
                "allowVolumeExpansion": True,
                "mountOptions": list(nfs["mount_options"]),
            }
        )
    return objects


def _policy(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns, "labels": dict(MANAGED_BY)},
        "spec": spec,
    }


def _host_block(address: str) -> dict[str, Any]:
    ip = ipaddress.ip_address(address)
    return {"ipBlock": {"cidr": f"{ip}/{ip.max_prefixlen}"}}


def environment_namespaces(plan: dict[str, Any], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """A namespace per environment, denying all traffic but DNS, scrapes from the monitoring
    namespace, ingress to exposed pods and API egress for pods that opt in. Flows between the
    platform's own pods are allowed one by one by the platform layer (platform_policies.py)."""
    api_ips = sorted({a for a in settings["api_server_addresses"] if _is_ip(a)})
    first_service_ips = [str(ipaddress.ip_network(c).network_address + 1) for c in plan["k3s_service_cidr"].split(",")]
    api_port = int(settings["api_port"])
    objects: list[dict[str, Any]] = []
    for env in settings["environments"]:
        ns = f"mlops-{env}"
        objects.append(namespace(ns, "baseline", {"mlops-metal/environment": env}))
        objects += [
            _policy(ns, "default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            _policy(
                ns,
                "allow-dns",
                {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [
                                {
                                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                                }
                            ],
                            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                        }
                    ],
                },
            ),
            _policy(
                ns,
                "allow-monitoring-scrape",
                {
                    "podSelector": {},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [
                                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": settings["monitoring_namespace"]}}}
                            ]
                        }
                    ],
                },
            ),
            # Pods behind a LoadBalancer Service opt in with this label.
            _policy(
                ns,
                "allow-exposed",
                {
                    "podSelector": {"matchLabels": {"mlops-metal/exposed": "true"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{}],
                },
            ),
            # Pods that drive the Kubernetes API (e.g. Airflow's KubernetesExecutor) opt in.
            _policy(
                ns,
                "allow-kube-api",
                {
                    "podSelector": {"matchLabels": {"mlops-metal/kube-api": "true"}},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [_host_block(a) for a in api_ips + first_service_ips],
                            "ports": [{"protocol": "TCP", "port": api_port}, {"protocol": "TCP", "port": 443}],
                        }
                    ],
                },
            ),
        ]
    return objects


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def cluster_addons(plan: dict[str, Any], settings: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {
        "mlops-metallb.yaml": metallb(settings),
        POOLS_FILE: metallb_pools(plan),
        "mlops-csi-driver-nfs.yaml": csi_nfs(settings),
        "mlops-storage.yaml": storage_classes(settings),
        "mlops-namespaces.yaml": environment_namespaces(plan, settings),
    }


class _ManifestDumper(yaml.SafeDumper):
    """Multi-line strings (HelmChart valuesContent) as readable literal blocks."""


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _str_presenter)


def to_manifest(objects: list[dict[str, Any]]) -> str:
    """Objects as one multi-document YAML file."""
    return "".join("---\n" + yaml.dump(plain(obj), Dumper=_ManifestDumper, default_flow_style=False, sort_keys=False) for obj in objects)


def chart_files(settings: dict[str, Any]) -> list[str]:
    return [
        chart_file("metallb", settings["metallb"]["version"]),
        chart_file("csi-driver-nfs", settings["csi_nfs"]["version"]),
    ]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "mlops_cluster_addons": cluster_addons,
            "mlops_environment_namespaces": environment_namespaces,
            "mlops_to_manifest": to_manifest,
            "mlops_chart_files": chart_files,
            "mlops_addon_images": addon_images,
        }
