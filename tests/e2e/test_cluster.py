"""Live tier: the single-node cluster of `make e2e-up` is real in every part the platform
relies on. Cluster DNS answers, the StorageClass provisions a volume that outlives its pod,
a LoadBalancer address answers from this machine (outside the node), and `down` leaves
nothing behind. Run by `make e2e-cluster` (root)."""

import json
import os
import re
import secrets
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from leftovers import leftovers, snapshot

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "tools" / "e2e" / "cluster.sh"
KUBECONFIG = Path(os.environ.get("E2E_KUBECONFIG", ROOT / "build" / "e2e" / "kubeconfig"))
STATE = Path(os.environ.get("E2E_STATE", "/var/tmp/mlops-e2e/node"))
PLATFORM_IMAGES = Path(os.environ.get("E2E_PLATFORM_IMAGES", ROOT / "build" / "images"))
NAMESPACE = "e2e-smoke"
TIMINGS = ROOT / "build" / "e2e-timings.txt"
LB_FIRST, LB_LAST = "10.234.0.200", "10.234.0.220"


def until(what: str, check: Callable[[], object], timeout: float = 120) -> object:
    """Polls check() until it returns something truthy; fails with its last error otherwise."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except (ApiException, OSError) as error:
            last = error
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout} s waiting for {what}: {last}")


def probe_image() -> str:
    images = Path((STATE / "etc" / "images-dir").read_text().strip())
    return next(line.split()[0] for line in (images / "images.txt").read_text().splitlines() if "/probe:" in line)


def container(name: str, script: str, **extra) -> dict:
    return {
        "name": name,
        "image": probe_image(),
        "imagePullPolicy": "Never",
        "command": ["/bin/sh", "-c", script],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
        "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}},
        **extra,
    }


def pod(name: str, *containers: dict, volumes: list | None = None, labels: dict | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534, "fsGroup": 65534},
            "containers": list(containers),
            "volumes": volumes or [],
        },
    }


@pytest.fixture(scope="module")
def before() -> dict[str, set[str]]:
    """What of this machine the node could add to, before it came up."""
    return snapshot()


@pytest.fixture(scope="module")
def cluster(before: dict[str, set[str]]) -> Iterator[client.CoreV1Api]:
    if os.geteuid() != 0:
        pytest.fail("the live tier needs root")
    start = time.monotonic()
    subprocess.run([str(CLUSTER), "up"], check=True, timeout=3600)
    print(f"cluster up in {time.monotonic() - start:.1f} s")
    try:
        config.load_kube_config(str(KUBECONFIG))
        core = client.CoreV1Api()
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        yield core
    finally:
        subprocess.run([str(CLUSTER), "down"], check=True, timeout=300)


def finished(core: client.CoreV1Api, name: str) -> str:
    """Waits for a run-once pod to end; returns its log, failing if it did not succeed."""
    phase = until(
        f"pod {name} to finish",
        lambda: (
            core.read_namespaced_pod(name, NAMESPACE).status.phase in ("Succeeded", "Failed")
            and core.read_namespaced_pod(name, NAMESPACE).status.phase
        ),
    )
    log = core.read_namespaced_pod_log(name, NAMESPACE)
    assert phase == "Succeeded", f"pod {name} {phase}: {log}"
    return log


def test_node_is_ready_with_the_version_we_built(cluster: client.CoreV1Api) -> None:
    (node,) = cluster.list_node().items
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True"
    assert node.status.node_info.kubelet_version == "v1.34.9"
    assert node.status.node_info.container_runtime_version.startswith("containerd://1.6")


def test_cluster_dns_resolves_services(cluster: client.CoreV1Api) -> None:
    cluster.create_namespaced_pod(NAMESPACE, pod("dns", container("lookup", "nslookup kubernetes.default.svc.cluster.local")))
    log = finished(cluster, "dns")
    assert "10.236.0.1" in log, log  # the first address of the service range: the API's ClusterIP


def test_storage_class_provisions_a_volume_that_outlives_its_pod(cluster: client.CoreV1Api) -> None:
    cluster.create_namespaced_persistent_volume_claim(
        NAMESPACE,
        {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}},
        },
    )
    volume = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    mount = {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    cluster.create_namespaced_pod(NAMESPACE, pod("writer", container("write", "echo kept >/data/file", **mount), volumes=volume))
    finished(cluster, "writer")
    cluster.delete_namespaced_pod("writer", NAMESPACE, grace_period_seconds=0)
    cluster.create_namespaced_pod(NAMESPACE, pod("reader", container("read", "cat /data/file", **mount), volumes=volume))
    assert finished(cluster, "reader").strip() == "kept"
    claim = cluster.read_namespaced_persistent_volume_claim("data", NAMESPACE)
    assert claim.status.phase == "Bound"
    assert claim.spec.storage_class_name == "local-path"


def test_load_balancer_address_answers_from_this_machine(cluster: client.CoreV1Api) -> None:
    labels = {"app": "web"}
    web = container(
        "httpd",
        'echo "hello from the cluster" >/www/index.html && exec httpd -f -p 8080 -h /www',
        ports=[{"containerPort": 8080}],
        readinessProbe={"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
        volumeMounts=[{"name": "www", "mountPath": "/www"}],
    )
    spec = pod("web", web, volumes=[{"name": "www", "emptyDir": {}}], labels=labels)
    spec["spec"]["restartPolicy"] = "Always"
    cluster.create_namespaced_pod(NAMESPACE, spec)
    cluster.create_namespaced_service(
        NAMESPACE,
        {
            "metadata": {"name": "web"},
            "spec": {"type": "LoadBalancer", "selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )

    def address() -> str | None:
        ingress = cluster.read_namespaced_service("web", NAMESPACE).status.load_balancer.ingress
        return ingress[0].ip if ingress else None

    ip = until("MetalLB to assign an address", address)
    last = int(ip.rsplit(".", 1)[1])
    assert ip.startswith("10.234.0.") and int(LB_FIRST.rsplit(".", 1)[1]) <= last <= int(LB_LAST.rsplit(".", 1)[1])

    def answer() -> str:
        # From this machine, through the bridge: ARP for the address is answered by the speaker.
        with urllib.request.urlopen(f"http://{ip}/", timeout=3) as response:
            return response.read().decode()

    assert until(f"http://{ip}/ to answer", answer).strip() == "hello from the cluster"


def test_platform_image_runs_under_the_kubelet(cluster: client.CoreV1Api) -> None:
    """Our PostgreSQL image, imported from its archive (no registry), as the platform will run it:
    non-root, read-only root, data on a provisioned volume, password from a Secret; a second pod
    logs in over the pod network."""
    listing = PLATFORM_IMAGES / "images.json"
    assert listing.exists(), f"no {listing}: make images first"
    image = json.loads(listing.read_text())["postgres"]["ref"]
    cluster.create_namespaced_secret(NAMESPACE, {"metadata": {"name": "pg"}, "stringData": {"password": secrets.token_urlsafe(24)}})
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "256Mi"}}}
    cluster.create_namespaced_persistent_volume_claim(NAMESPACE, {"metadata": {"name": "pgdata"}, "spec": claim})
    server = {
        "name": "postgres",
        "image": image,
        "imagePullPolicy": "Never",
        "env": [{"name": "POSTGRES_PASSWORD_FILE", "value": "/run/secrets/pg/password"}],
        "readinessProbe": {"exec": {"command": ["pg_isready", "-h", "127.0.0.1"]}, "periodSeconds": 1},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "socket", "mountPath": "/run/postgresql"},
            {"name": "password", "mountPath": "/run/secrets/pg", "readOnly": True},
        ],
    }
    spec = pod(
        "postgres",
        server,
        volumes=[
            {"name": "data", "persistentVolumeClaim": {"claimName": "pgdata"}},
            {"name": "socket", "emptyDir": {}},
            {"name": "password", "secret": {"secretName": "pg"}},
        ],
    )
    spec["spec"]["restartPolicy"] = "Always"
    spec["spec"]["securityContext"] = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001}
    cluster.create_namespaced_pod(NAMESPACE, spec)

    def ready() -> str | None:
        status = cluster.read_namespaced_pod("postgres", NAMESPACE).status
        conditions = {c.type: c.status for c in status.conditions or []}
        return status.pod_ip if conditions.get("Ready") == "True" else None

    ip = until("PostgreSQL to be ready", ready, timeout=180)
    password = {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "pg", "key": "password"}}}
    login = {**container("psql", f"psql -h {ip} -U postgres -tAc 'select 40 + 2'", env=[password]), "image": image}
    client_pod = pod("psql", login)
    client_pod["spec"]["securityContext"]["runAsUser"] = 10001
    cluster.create_namespaced_pod(NAMESPACE, client_pod)
    assert finished(cluster, "psql").strip() == "42"


def playbook(name: str, *extra: str) -> tuple[float, str]:
    """One layer playbook against inventories/e2e, as a user runs it; its output and its time."""
    started = time.monotonic()
    run = subprocess.run(
        ["ansible-playbook", f"playbooks/{name}", "-i", "inventories/e2e", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"},
    )
    seconds = time.monotonic() - started
    # make e2e prints these after the run (pytest keeps a passing test's output to itself).
    with TIMINGS.open("a") as timings:
        timings.write(f"{' '.join((name, *extra))}: {seconds:.0f} s (changed={changed_tasks(run.stdout)})\n")
    assert run.returncode == 0, f"{name} failed after {seconds:.0f} s:\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    return seconds, run.stdout


def changed_tasks(output: str) -> int:
    return sum(int(count) for count in re.findall(r"\bchanged=(\d+)", output.split("PLAY RECAP", 1)[-1]))


def test_platform_services_and_verify_playbooks_run_on_the_cluster(cluster: client.CoreV1Api) -> None:
    """platform.yml, services.yml (its first champion trained by the DAG in the cluster) and
    verify.yml (another DAG run, MLflow's champion, API answers, Prometheus) against inventories/e2e."""
    for name in ("platform.yml", "services.yml", "verify.yml"):
        _, output = playbook(name)
    assert "verified" in output


def test_prometheus_reads_the_node_certificates_expiry(cluster: client.CoreV1Api) -> None:
    """mlops-cert-exporter (DaemonSet, hostPath of tools/e2e/pki.sh's folder) scraped by the
    platform's Prometheus: every certificate of the node, each expiring when openssl says."""
    query = urllib.parse.urlencode({"query": 'mlops_k3s_certificate_expiry_timestamp_seconds{job="k3s-certificates"}'})
    with urllib.request.urlopen(f"http://10.234.0.205:9090/api/v1/query?{query}", timeout=30) as answer:
        series = json.load(answer)["data"]["result"]
    found = {Path(s["metric"]["file"]).name: float(s["value"][1]) for s in series}
    assert {p.name for p in (STATE / "pki").glob("*.crt")} == set(found), found
    assert {s["metric"]["node"] for s in series} == {node.metadata.name for node in cluster.list_node().items}
    end = subprocess.run(["openssl", "x509", "-enddate", "-noout", "-in", str(STATE / "pki" / "ca.crt")], capture_output=True, text=True)
    expected = datetime.strptime(end.stdout.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC).timestamp()
    assert found["ca.crt"] == expected


def test_a_second_run_changes_nothing(cluster: client.CoreV1Api) -> None:
    for name in ("platform.yml", "services.yml"):
        _, output = playbook(name)
        assert changed_tasks(output) == 0, f"{name} changed something on its second run:\n{output[-4000:]}"


PLATFORM_NAMESPACE = "mlops-e2e"
API = "http://10.234.0.201:8000"
HOUSES = [
    {"bed": 3, "bath": 2, "acre_lot": 0.25, "house_size": 1800, "state": "Texas"},
    {"bed": 6, "bath": 5, "acre_lot": 2.0, "house_size": 5200, "state": "California"},
    {"bed": 1, "bath": 1, "acre_lot": 0.05, "house_size": 600, "state": "New York"},
]
# Counted by a pod of its own with the backup image's code, independently of any restore's checks.
FINGERPRINT = """
import importlib.machinery, importlib.util, json, sys
loader = importlib.machinery.SourceFileLoader("mlops_backup", "/usr/local/bin/mlops-backup")
tool = importlib.util.module_from_spec(importlib.util.spec_from_loader("mlops_backup", loader))
sys.modules["mlops_backup"] = tool
loader.exec_module(tool)
out = {}
for db in ("mlflow", "mlflow_auth", "mlops", "airflow"):
    with tool.connect(db) as conn:
        out[db] = tool.table_fingerprints(conn)
s3 = tool.data_s3()
for bucket in ("mlflow-artifacts", "mlops-data", "airflow-logs"):
    out[bucket] = {o["Key"]: o["Size"] for o in tool.list_keys(s3, bucket)}
print(json.dumps(out))
"""


def api(path: str, body: object | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(API + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def platform_fingerprints(core: client.CoreV1Api, name: str) -> dict:
    """Every table's rows and checksum and every object's size, read inside the platform's namespace."""
    image = json.loads((PLATFORM_IMAGES / "images.json").read_text())["backup"]["ref"]
    env = [
        {"name": "PGHOST", "value": "postgres"},
        {"name": "PGUSER", "value": "postgres"},
        {"name": "MLOPS_BACKUP_S3_ENDPOINT", "value": "http://seaweedfs:8333"},
        *(
            {"name": env, "valueFrom": {"secretKeyRef": {"name": "mlops-platform", "key": key}}}
            for env, key in (
                ("PGPASSWORD", "postgres-password"),
                ("AWS_ACCESS_KEY_ID", "s3-access-key"),
                ("AWS_SECRET_ACCESS_KEY", "s3-secret-key"),
            )
        ),
    ]
    box = {
        "name": "count",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python3", "-c", FINGERPRINT],
        "env": env,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
    }
    # The backup's own labels: the NetworkPolicies let exactly these pods reach PostgreSQL and S3.
    spec = pod(name, box, labels={"app.kubernetes.io/name": "mlops-backup", "app.kubernetes.io/part-of": "mlops-metal"})
    spec["spec"]["securityContext"] = {"runAsNonRoot": True, "runAsUser": 10020, "runAsGroup": 10020}
    core.create_namespaced_pod(PLATFORM_NAMESPACE, spec)
    phase = until(
        f"pod {name}", lambda: core.read_namespaced_pod(name, PLATFORM_NAMESPACE).status.phase in ("Succeeded", "Failed"), timeout=300
    )
    log = core.read_namespaced_pod_log(name, PLATFORM_NAMESPACE)
    assert phase and core.read_namespaced_pod(name, PLATFORM_NAMESPACE).status.phase == "Succeeded", log
    core.delete_namespaced_pod(name, PLATFORM_NAMESPACE)
    return json.loads(log.strip().splitlines()[-1])


def wipe_data_volumes(core: client.CoreV1Api) -> None:
    """The loss docs/recovery.md's "lost data volumes" runbook starts from: the platform stopped, the
    volumes of PostgreSQL and SeaweedFS gone, the set-up Jobs' records with them."""
    apps, batch = client.AppsV1Api(), client.BatchV1Api()
    stopped = {"postgres", "seaweedfs"}
    for deployment in apps.list_namespaced_deployment(PLATFORM_NAMESPACE).items:
        stopped.add(deployment.metadata.name)
        apps.patch_namespaced_deployment_scale(deployment.metadata.name, PLATFORM_NAMESPACE, {"spec": {"replicas": 0}})
    for name in ("postgres", "seaweedfs"):
        apps.patch_namespaced_stateful_set_scale(name, PLATFORM_NAMESPACE, {"spec": {"replicas": 0}})

    def running() -> list[str]:
        pods = core.list_namespaced_pod(PLATFORM_NAMESPACE).items
        return [p.metadata.name for p in pods if (p.metadata.labels or {}).get("app.kubernetes.io/name") in stopped]

    until("the platform's pods to stop", lambda: not running() or None, timeout=300)
    batch.delete_collection_namespaced_job(PLATFORM_NAMESPACE, propagation_policy="Background")
    for claim in ("data-postgres-0", "data-seaweedfs-0"):
        core.delete_namespaced_persistent_volume_claim(claim, PLATFORM_NAMESPACE)
    until(
        "the data volumes to be gone",
        lambda: (
            not {c.metadata.name for c in core.list_namespaced_persistent_volume_claim(PLATFORM_NAMESPACE).items}
            & {"data-postgres-0", "data-seaweedfs-0"}
        ),
        timeout=300,
    )


def test_backup_wipe_restore_loses_nothing(cluster: client.CoreV1Api) -> None:
    """backup.yml; the data volumes wiped; platform.yml makes them anew, restore.yml brings the set
    back from the backup volume, services.yml starts the API: every row, object, the registry's
    @champion and the API's predictions are what they were."""
    serving = api("/ready")
    predictions = api("/predict", HOUSES)
    # The inference log of those predictions is written before anything is counted (either replica may answer).
    until("the inference log to drain", lambda: all(api("/ready")["inference_log_pending"] == 0 for _ in range(6)), timeout=60)
    before = platform_fingerprints(cluster, "count-before")
    _, output = playbook("backup.yml")
    assert "backup set" in output
    wipe_data_volumes(cluster)
    playbook("platform.yml")
    wiped = platform_fingerprints(cluster, "count-wiped")
    assert wiped["mlflow"]["public.model_versions"]["rows"] == 0 and wiped["mlflow-artifacts"] == wiped["mlops-data"] == {}
    playbook("restore.yml", "-e", "platform_restore_confirm=mlops-e2e")
    playbook("services.yml")
    after = platform_fingerprints(cluster, "count-after")
    # Airflow's own bookkeeping (heartbeats, jobs, the serialized DAGs) moves on by itself; its DAG runs do not.
    for table in [t for t in before["airflow"] if t != "public.dag_run"]:
        before["airflow"].pop(table)
        after["airflow"].pop(table, None)
    assert after["airflow"]["public.dag_run"]["rows"] >= 2  # services.yml's run and verify.yml's
    assert after == before
    assert api("/ready")["version"] == serving["version"]
    assert api("/predict", HOUSES) == predictions


def test_down_leaves_nothing_behind(cluster: client.CoreV1Api, before: dict[str, set[str]]) -> None:
    subprocess.run([str(CLUSTER), "down"], check=True, timeout=300)
    assert leftovers(before) == []
    assert not KUBECONFIG.exists()
