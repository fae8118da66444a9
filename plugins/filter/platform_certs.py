"""The node certificates' expiry for the environment's Prometheus (K3sCertificateExpiresSoon).

K3s issues its certificates for a year and renews them only at a start within 90 days of their
end. mlops-cert-exporter (in the backup image) runs on every node as a DaemonSet, reads the
certificates under a host folder mounted read-only and serves their notAfter; Prometheus finds
the pods through a headless Service (DNS) and the exporter labels each series with its node.

A hostPath volume is refused by the environment namespace's baseline Pod Security level, so the
exporter has a namespace of its own, ``<namespace>-node-certs``, privileged, with default-deny
policies; its one flow (Prometheus scraping it) is in platform_policies.FLOWS_NODE_CERTS.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from k8s_objects import MANAGED_BY, Obj, http_probe, labels, meta, mount, pod_spec, selector, service, template

NAME = "mlops-cert-exporter"
PORT = 9101
NAMESPACE_SUFFIX = "-node-certs"
JOB = "k3s-certificates"
SKIPS = {
    "CKV_K8S_23": "K3s keeps its certificates in root-only folders: the exporter reads them as root, with no capability",
    "CKV_K8S_40": "root (uid 0) to read the root-only certificate folders; no capability, read-only mount and root filesystem",
}


def certs_namespace(namespace: str) -> str:
    return f"{namespace}{NAMESPACE_SUFFIX}"


def enabled(settings: dict[str, Any]) -> bool:
    return bool((settings.get("cert_exporter") or {}).get("root"))


def scrape_job(namespace: str) -> dict[str, Any]:
    """One target per ready exporter pod; the node label comes from the exporter itself."""
    return {
        "job_name": JOB,
        "dns_sd_configs": [{"names": [f"{NAME}.{certs_namespace(namespace)}.svc"], "type": "A", "port": PORT, "refresh_interval": "30s"}],
    }


def cert_exporter_objects(p: Any, policies: list[Obj]) -> list[Obj]:
    """The namespace, its default deny and ``policies`` (the exporter's ingress, from
    platform_policies), the headless Service and the DaemonSet; nothing when off."""
    if not enabled(p.s):
        return []
    certs = p.s["cert_exporter"]
    ns = certs_namespace(p.ns)
    root = certs["root"].rstrip("/") or "/"
    if not root.startswith("/") or not certs["globs"]:
        raise ValueError(f"platform_cert_exporter_root {certs['root']!r} must be an absolute host path, with at least one glob")
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": ns,
            "labels": {
                **MANAGED_BY,
                # hostPath: only the privileged level allows it (the pod itself stays unprivileged).
                **{f"pod-security.kubernetes.io/{mode}": "privileged" for mode in ("enforce", "warn", "audit")},
            },
        },
    }
    deny = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta("default-deny", ns),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    box = p.box(
        "exporter",
        "backup",
        "sidecar",
        command=["/usr/local/bin/mlops-cert-exporter"],
        args=[f"--root={root}", *(f"--glob={pattern}" for pattern in certs["globs"]), f"--port={PORT}"],
        ports={"metrics": PORT},
        readiness=http_probe("/metrics", "metrics", period=30),
        liveness=http_probe("/healthz", "metrics", period=60, failures=5),
        # The same path inside as on the host: the file label names the host's file.
        mounts=[mount("certs", root, True)],
    )
    box["env"] = [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    # Root, as the folders need, but with every capability dropped (set by the builder).
    box["securityContext"] |= {"runAsNonRoot": False, "runAsUser": 0}
    spec = pod_spec([box], 0, volumes=[{"name": "certs", "hostPath": {"path": root, "type": "Directory"}}])
    spec["securityContext"]["runAsNonRoot"] = False
    if certs.get("selinux_type"):
        # SELinux-enforcing nodes keep containers (container_t) out of K3s's data folder.
        spec["securityContext"]["seLinuxOptions"] = {"type": certs["selinux_type"]}
    # Every node, servers with taints included.
    spec["tolerations"] = [{"operator": "Exists"}]
    pod = template(NAME, spec)
    skips = {f"checkov.io/skip{i}": f"{check}={why}" for i, (check, why) in enumerate(SKIPS.items(), 1)}
    daemon_set = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta(NAME, ns, annotations=skips),
        "spec": {"selector": {"matchLabels": selector(NAME)}, "template": pod},
    }
    headless = service(NAME, ns, {"metrics": PORT})
    headless["spec"]["clusterIP"] = "None"
    headless["metadata"]["labels"] = labels(NAME)
    return [namespace, deny, *policies, headless, daemon_set]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {}
