"""Kubernetes objects as data: the few shapes the platform layer builds again and again.

Every workload built here is hardened the same way (non-root numeric user, no privilege
escalation, all capabilities dropped, RuntimeDefault seccomp, read-only root filesystem unless
a caller says why not, requests plus a memory limit), so a component cannot forget one. Pure
Python; platform_stack.py composes these into the platform.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

Obj = dict[str, Any]

PART_OF = "mlops-metal"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mlops-metal"}


def plain(value: Any) -> Any:
    """Ansible hands filters tagged str/dict subclasses that PyYAML's safe dumper refuses."""
    return json.loads(json.dumps(value))


def labels(name: str, component: str | None = None) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": PART_OF,
        **({"app.kubernetes.io/component": component} if component else {}),
        **MANAGED_BY,
    }


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}


def meta(name: str, namespace: str | None, extra_labels: dict[str, str] | None = None, **fields: Any) -> Obj:
    out: Obj = {"name": name, "labels": {**labels(name), **(extra_labels or {})}}
    if namespace:
        out["namespace"] = namespace
    out.update(fields)
    return out


def content_hash(value: Any, length: int = 8) -> str:
    """A short digest of data: Job names carry it (a Job's pod template is immutable, so a changed
    Job is a new Job) and pod templates carry it for the config they mount (a change rolls them)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]


def resources(size: dict[str, Any]) -> Obj:
    """Requests for scheduling, a memory limit against runaway processes; no CPU limit (throttling
    only slows a pod that a neighbour's idle CPU could serve)."""
    return {"requests": {"cpu": size["cpu"], "memory": size["memory"]}, "limits": {"memory": size["memory_limit"]}}


def secret_env(name: str, secret: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def env_list(plain: dict[str, str] | None = None, from_secret: dict[str, tuple[str, str]] | None = None) -> list[Obj]:
    out = [{"name": k, "value": str(v)} for k, v in (plain or {}).items()]
    out += [secret_env(k, secret, key) for k, (secret, key) in (from_secret or {}).items()]
    return out


def http_probe(path: str, port: int | str, period: int = 10, failures: int = 3, timeout: int = 5) -> Obj:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": timeout}


def exec_probe(command: list[str], period: int = 10, failures: int = 3, timeout: int = 5) -> Obj:
    return {"exec": {"command": command}, "periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": timeout}


def container(
    name: str,
    image: str,
    size: dict[str, Any],
    *,
    pull_policy: str,
    command: list[str] | None = None,
    args: list[str] | None = None,
    env: list[Obj] | None = None,
    ports: dict[str, int] | None = None,
    readiness: Obj | None = None,
    liveness: Obj | None = None,
    startup: Obj | None = None,
    mounts: list[Obj] | None = None,
    read_only_root: bool = True,
) -> Obj:
    out: Obj = {
        "name": name,
        "image": image,
        "imagePullPolicy": pull_policy,
        "resources": resources(size),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": read_only_root,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if command:
        out["command"] = command
    if args:
        out["args"] = args
    if env:
        out["env"] = env
    if ports:
        out["ports"] = [{"name": port_name, "containerPort": number, "protocol": "TCP"} for port_name, number in ports.items()]
    for key, probe in (("readinessProbe", readiness), ("livenessProbe", liveness), ("startupProbe", startup)):
        if probe:
            out[key] = probe
    if mounts:
        out["volumeMounts"] = mounts
    return out


def pod_spec(
    containers: list[Obj],
    uid: int,
    *,
    volumes: list[Obj] | None = None,
    service_account: str | None = None,
    restart_policy: str | None = None,
    gid: int | None = None,
) -> Obj:
    spec: Obj = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid if gid is None else gid,
            "fsGroup": uid if gid is None else gid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Only pods that talk to the Kubernetes API get a token.
        "automountServiceAccountToken": service_account is not None,
        "enableServiceLinks": False,
        "containers": containers,
    }
    if service_account:
        spec["serviceAccountName"] = service_account
    if volumes:
        spec["volumes"] = volumes
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    return spec


def template(name: str, spec: Obj, pod_labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> Obj:
    metadata: Obj = {"labels": {**labels(name), **(pod_labels or {})}}
    if annotations:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": spec}


def deployment(name: str, namespace: str, replicas: int, pod: Obj) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, namespace),
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector(name)}, "template": pod},
    }


def stateful_set(name: str, namespace: str, pod: Obj, claims: dict[str, tuple[str, str]]) -> Obj:
    """One replica with a claim per named volume: (StorageClass, size)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(name, namespace),
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": selector(name)},
            "template": pod,
            # Deleting the StatefulSet (reset, reinstall) never deletes its data.
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": claim, "labels": labels(name)},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": storage_class,
                        "resources": {"requests": {"storage": size}},
                    },
                }
                for claim, (storage_class, size) in claims.items()
            ],
        },
    }


def job(name: str, namespace: str, pod: Obj, backoff: int = 6) -> Obj:
    """A Job named by its content: an unchanged Job is left alone, a changed one runs anew."""
    full = f"{name}-{content_hash(pod)}"
    pod["metadata"]["labels"]["job-name"] = full
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(full, namespace, {"app.kubernetes.io/component": name}),
        "spec": {"backoffLimit": backoff, "template": pod},
    }


def service(name: str, namespace: str, ports: dict[str, int], *, target: str | None = None, load_balancer: str | None = None) -> Obj:
    """ClusterIP, or LoadBalancer with an optional address from the plan's pool (empty: MetalLB picks one)."""
    spec: Obj = {
        "selector": selector(target or name),
        "ports": [{"name": port_name, "port": number, "targetPort": port_name, "protocol": "TCP"} for port_name, number in ports.items()],
    }
    annotations = {}
    if load_balancer is not None:
        spec["type"] = "LoadBalancer"
        spec["externalTrafficPolicy"] = "Cluster"
        if load_balancer:
            annotations["metallb.io/loadBalancerIPs"] = load_balancer
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, namespace, annotations=annotations) if annotations else meta(name, namespace),
        "spec": spec,
    }


def config_map(name: str, namespace: str, data: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, namespace), "data": data}


def empty_dir(name: str, limit: str = "256Mi") -> Obj:
    return {"name": name, "emptyDir": {"sizeLimit": limit}}


def secret_volume(name: str, secret: str, items: dict[str, str], mode: int = 0o440) -> Obj:
    return {"name": name, "secret": {"secretName": secret, "defaultMode": mode, "items": [{"key": k, "path": p} for k, p in items.items()]}}


def mount(name: str, path: str, read_only: bool = False, sub_path: str | None = None) -> Obj:
    out: Obj = {"name": name, "mountPath": path}
    if read_only:
        out["readOnly"] = True
    if sub_path:
        out["subPath"] = sub_path
    return out


def pod_disruption_budget(name: str, namespace: str, replicas: int) -> Obj:
    """Voluntary evictions (drains) keep all replicas but one serving; a single replica may go,
    or it would block every drain of its node."""
    budget = {"minAvailable": replicas - 1} if replicas > 1 else {"maxUnavailable": 1}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(name, namespace),
        "spec": {**budget, "selector": {"matchLabels": selector(name)}},
    }


def autoscaler(name: str, namespace: str, minimum: int, maximum: int, cpu_percent: int) -> Obj:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(name, namespace),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}
            ],
        },
    }


def pods_not_ready(pods: list[Obj]) -> list[str]:
    """'<pod>: <container> <reason> (<message>)' for each pod that is neither done nor ready: what
    a failed wait shows, so ImagePullBackOff or CrashLoopBackOff is read without kubectl."""
    out = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") == "Succeeded":
            continue
        problems = []
        for box in status.get("containerStatuses") or []:
            if box.get("ready"):
                continue
            state = box.get("state") or {}
            detail = state.get("waiting") or state.get("terminated") or {}
            reason = detail.get("reason") or ("running, not ready" if "running" in state else "not started")
            message = f" ({detail['message'][:200]})" if detail.get("message") else ""
            restarts = f", {box['restartCount']} restarts" if box.get("restartCount") else ""
            problems.append(f"{box['name']} {reason}{restarts}{message}")
        if not status.get("containerStatuses"):
            conditions = [c.get("message") or c.get("reason", "") for c in status.get("conditions") or [] if c.get("status") != "True"]
            problems.append(f"{status.get('phase', 'Pending')} {' '.join(filter(None, conditions))}".strip())
        if problems:
            out.append(f"{pod['metadata']['name']}: {', '.join(problems)}")
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"mlops_content_hash": content_hash, "mlops_pods_not_ready": pods_not_ready}
