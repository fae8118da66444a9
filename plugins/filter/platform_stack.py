"""The platform layer as data: PostgreSQL, SeaweedFS, MLflow, Airflow 3 and Prometheus
(``mlops_platform_objects``), then the API and the UI (``mlops_services_objects``).

Each returns ``{file name: [objects]}`` for one environment namespace, built from the settings
the platform role assembles from the inventory. Nothing secret is in these objects: every
password and token is a key of one Secret that the role creates on the cluster and never writes
to disk (see SECRET_KEYS). Plain Kubernetes (apps/v1, batch/v1, policy/v1, autoscaling/v2,
networking/v1, rbac/v1): the layer runs on any conformant cluster, K3s or not.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any

# Ansible loads each filter file on its own, by path: the builders are imported from beside this one.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from k8s_objects import (
    Obj,
    config_map,
    container,
    content_hash,
    deployment,
    empty_dir,
    env_list,
    exec_probe,
    http_probe,
    job,
    mount,
    plain,
    pod_spec,
    secret_volume,
    service,
    stateful_set,
    template,
)
from platform_certs import cert_exporter_objects
from platform_grafana import grafana_objects
from platform_monitoring import prometheus_objects
from platform_policies import network_policies

# Keys of the platform Secret; the role generates or takes each from the vault.
SECRET_KEYS = (
    "postgres-password",
    "mlflow-db-password",
    "airflow-db-password",
    "mlops-db-password",
    "mlflow-db-url",
    "mlflow-auth.ini",
    "mlflow-admin-password",
    "airflow-db-url",
    "airflow-jwt-secret",
    "airflow-fernet-key",
    "mlflow-flask-secret-key",
    "airflow-api-secret-key",
    "airflow-admin-password",
    "airflow-passwords.json",
    "airflow-conn-s3",
    "inference-db-url",
    "s3-access-key",
    "s3-secret-key",
    "s3.json",
    "reload-token",
    "grafana-admin-password",
)
# Databases and their owners, created by the postgres-init Job.
DATABASES = {"mlflow": "mlflow", "mlflow_auth": "mlflow", "airflow": "airflow", "mlops": "mlops"}
BUCKETS = ("mlflow-artifacts", "mlops-data", "airflow-logs", "mlops-backups")
PORTS = {
    "postgres": 5432,
    "postgres-metrics": 9187,
    "s3": 8333,
    "mlflow": 5000,
    "airflow": 8080,
    "prometheus": 9090,
    "api": 8000,
    "ui": 8501,
}
UIDS = {"postgres": 10001, "seaweedfs": 10002, "mlflow": 10004, "prometheus": 990, "api": 10010, "airflow": 50000}
AIRFLOW_COMPONENTS = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
SECRETS_DIR = "/run/secrets/mlops"
IMAGES = ("postgres", "seaweedfs", "mlflow", "airflow", "prometheus", "api", "ui", "backup")


class Platform:
    """Builders for one environment; ``s`` is the settings dict of the platform role."""

    def __init__(self, s: dict[str, Any]) -> None:
        self.s = s
        self.ns: str = s["namespace"]
        self.secret: str = s["secret"]

    # ---------------------------------------------------------------- shared pieces
    def image(self, name: str) -> str:
        return self.s["images"][name]

    def size(self, component: str) -> dict[str, Any]:
        return self.s["sizes"][component]

    def box(self, name: str, image: str, size: str, **kwargs: Any) -> Obj:
        return container(name, self.image(image), self.size(size), pull_policy=self.s["pull_policy"], **kwargs)

    def secret_env(self, **names: str) -> list[Obj]:
        return env_list(from_secret={env: (self.secret, key) for env, key in names.items()})

    def exposed(self, name: str) -> str | None:
        """The LoadBalancer address of an exposed component ('' lets MetalLB choose from the pool)."""
        return self.s["exposed"][name]

    def urls(self) -> dict[str, str]:
        return {
            "MLFLOW_TRACKING_URI": f"http://mlflow:{PORTS['mlflow']}",
            "MLFLOW_S3_ENDPOINT_URL": f"http://seaweedfs:{PORTS['s3']}",
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLOPS_API_URL": f"http://mlops-api:{PORTS['api']}",
        }

    def ml_client_env(self) -> list[Obj]:
        """What the pipeline, the API and the UI read: MLflow (as its admin), S3, the inference log."""
        return env_list(self.urls() | {"MLFLOW_TRACKING_USERNAME": "admin"}) + self.secret_env(
            MLFLOW_TRACKING_PASSWORD="mlflow-admin-password",
            AWS_ACCESS_KEY_ID="s3-access-key",
            AWS_SECRET_ACCESS_KEY="s3-secret-key",
            MLOPS_DB_URL="inference-db-url",
            MLOPS_RELOAD_TOKEN="reload-token",
        )

    # ---------------------------------------------------------------- PostgreSQL
    def postgres(self) -> list[Obj]:
        secrets = secret_volume("secrets", self.secret, {"postgres-password": "postgres-password"})
        server = self.box(
            "postgres",
            "postgres",
            "postgres",
            env=env_list({"POSTGRES_PASSWORD_FILE": f"{SECRETS_DIR}/postgres-password"}),
            ports={"postgres": PORTS["postgres"]},
            readiness=exec_probe(["pg_isready", "-h", "127.0.0.1", "-q"]),
            liveness=exec_probe(["pg_isready", "-h", "127.0.0.1", "-q"], period=20, failures=6),
            startup=exec_probe(["pg_isready", "-h", "127.0.0.1", "-q"], period=5, failures=60),
            mounts=[
                mount("data", "/var/lib/postgresql/data"),
                mount("run", "/var/run/postgresql"),
                mount("tmp", "/tmp"),
                mount("secrets", SECRETS_DIR, True),
            ],
        )
        exporter = self.box(
            "metrics",
            "postgres",
            "sidecar",
            command=["/usr/bin/prometheus-postgres-exporter", f"--web.listen-address=:{PORTS['postgres-metrics']}"],
            env=env_list(
                {
                    "DATA_SOURCE_URI": "127.0.0.1:5432/postgres?sslmode=disable",
                    "DATA_SOURCE_USER": "postgres",
                    "DATA_SOURCE_PASS_FILE": f"{SECRETS_DIR}/postgres-password",
                }
            ),
            ports={"metrics": PORTS["postgres-metrics"]},
            readiness=http_probe("/metrics", "metrics", period=30),
            liveness=http_probe("/metrics", "metrics", period=60, failures=5),
            mounts=[mount("secrets", SECRETS_DIR, True)],
        )
        pod = template(
            "postgres", pod_spec([server, exporter], UIDS["postgres"], volumes=[empty_dir("run", "16Mi"), empty_dir("tmp"), secrets])
        )
        return [
            service("postgres", self.ns, {"postgres": PORTS["postgres"], "metrics": PORTS["postgres-metrics"]}),
            stateful_set("postgres", self.ns, pod, {"data": (self.s["storage_class"], self.size("postgres")["storage"])}),
        ]

    def postgres_init(self) -> list[Obj]:
        """Roles and databases, idempotent: created when missing, passwords set on every run."""
        sql = ["\\set ON_ERROR_STOP on"]
        for owner in sorted(set(DATABASES.values())):
            sql.append(f"SELECT 'CREATE ROLE {owner} LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}') \\gexec")
            sql.append(f"ALTER ROLE {owner} PASSWORD :'{owner}_password';")
        for database, owner in DATABASES.items():
            missing = f"NOT EXISTS (SELECT FROM pg_database WHERE datname = '{database}')"
            sql.append(f"SELECT 'CREATE DATABASE {database} OWNER {owner}' WHERE {missing} \\gexec")
        script = "\n".join(sql) + "\n"
        owners = sorted(set(DATABASES.values()))
        variables = " ".join(f'-v {owner}_password="${owner.upper()}_PASSWORD"' for owner in owners)
        run = self.box(
            "init",
            "postgres",
            "job",
            command=["sh", "-c", f"exec psql -h postgres -U postgres -d postgres -X {variables} -f /etc/mlops/init.sql"],
            env=self.secret_env(
                PGPASSWORD="postgres-password", **{f"{owner.upper()}_PASSWORD": f"{owner}-db-password" for owner in owners}
            ),
            mounts=[mount("sql", "/etc/mlops", True)],
        )
        cm = config_map("postgres-init", self.ns, {"init.sql": script})
        pod = template(
            "postgres-init",
            pod_spec(
                [run], UIDS["postgres"], volumes=[{"name": "sql", "configMap": {"name": "postgres-init"}}], restart_policy="OnFailure"
            ),
            annotations={"mlops-metal/config": content_hash(script)},
        )
        return [cm, job("postgres-init", self.ns, pod)]

    # ---------------------------------------------------------------- SeaweedFS (S3)
    def seaweedfs(self) -> list[Obj]:
        args = [
            "server",
            "-dir=/data",
            # Master, volume and filer run in this one process and reach each other on loopback;
            # only the S3 port is served to the namespace.
            "-ip=127.0.0.1",
            "-ip.bind=0.0.0.0",
            "-s3",
            f"-s3.port={PORTS['s3']}",
            f"-s3.config={SECRETS_DIR}/s3.json",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-volume.max=0",
            f"-master.volumeSizeLimitMB={self.s['seaweedfs_volume_size_mb']}",
        ]
        weed = self.box(
            "seaweedfs",
            "seaweedfs",
            "seaweedfs",
            args=args,
            ports={"s3": PORTS["s3"]},
            readiness=http_probe("/healthz", "s3"),
            liveness=http_probe("/healthz", "s3", period=20, failures=6),
            startup=http_probe("/healthz", "s3", period=5, failures=60),
            mounts=[mount("data", "/data"), mount("tmp", "/tmp"), mount("secrets", SECRETS_DIR, True)],
        )
        pod = template(
            "seaweedfs",
            pod_spec([weed], UIDS["seaweedfs"], volumes=[empty_dir("tmp"), secret_volume("secrets", self.secret, {"s3.json": "s3.json"})]),
            annotations={"mlops-metal/credentials": "s3.json"},
        )
        return [
            service("seaweedfs", self.ns, {"s3": PORTS["s3"]}),
            stateful_set("seaweedfs", self.ns, pod, {"data": (self.s["storage_class"], self.size("seaweedfs")["storage"])}),
        ]

    def buckets(self) -> list[Obj]:
        code = (
            "import boto3, os\n"
            "s3 = boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'])\n"
            "have = {b['Name'] for b in s3.list_buckets().get('Buckets', [])}\n"
            f"for name in {list(BUCKETS)!r}:\n"
            "    if name not in have:\n"
            "        s3.create_bucket(Bucket=name)\n"
            "    print(name, 'ready')\n"
        )
        run = self.box(
            "buckets",
            "mlflow",
            "job",
            command=["python3", "-c", code],
            env=env_list(self.urls()) + self.secret_env(AWS_ACCESS_KEY_ID="s3-access-key", AWS_SECRET_ACCESS_KEY="s3-secret-key"),
            mounts=[mount("tmp", "/tmp")],
        )
        pod = template("s3-buckets", pod_spec([run], UIDS["mlflow"], volumes=[empty_dir("tmp")], restart_policy="OnFailure"))
        return [job("s3-buckets", self.ns, pod)]

    # ---------------------------------------------------------------- MLflow
    def mlflow_env(self) -> list[Obj]:
        return env_list(
            {
                "MLFLOW_S3_ENDPOINT_URL": self.urls()["MLFLOW_S3_ENDPOINT_URL"],
                "AWS_DEFAULT_REGION": "us-east-1",
                "MLFLOW_AUTH_CONFIG_PATH": f"{SECRETS_DIR}/mlflow-auth.ini",
                # The job runner (about seven huey processes of ~250 MB each) serves GenAI jobs the
                # platform does not use; without it the server fits its memory limit.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            }
        ) + self.secret_env(
            MLFLOW_BACKEND_URI="mlflow-db-url",
            # Signs the auth app's sessions and CSRF tokens; one value for every replica (required).
            MLFLOW_FLASK_SERVER_SECRET_KEY="mlflow-flask-secret-key",
            AWS_ACCESS_KEY_ID="s3-access-key",
            AWS_SECRET_ACCESS_KEY="s3-secret-key",
        )

    def mlflow_volumes(self) -> list[Obj]:
        return [empty_dir("tmp", "1Gi"), secret_volume("secrets", self.secret, {"mlflow-auth.ini": "mlflow-auth.ini"})]

    def mlflow_migrate(self) -> list[Obj]:
        run = self.box(
            "upgrade",
            "mlflow",
            "job",
            command=["sh", "-c", 'exec mlflow db upgrade "$MLFLOW_BACKEND_URI"'],
            env=self.mlflow_env(),
            mounts=[mount("tmp", "/tmp"), mount("secrets", SECRETS_DIR, True)],
        )
        pod = template("mlflow-db-upgrade", pod_spec([run], UIDS["mlflow"], volumes=self.mlflow_volumes(), restart_policy="OnFailure"))
        return [job("mlflow-db-upgrade", self.ns, pod)]

    def mlflow(self) -> list[Obj]:
        server = self.box(
            "mlflow",
            "mlflow",
            "mlflow",
            args=[
                "--host=0.0.0.0",
                f"--port={PORTS['mlflow']}",
                "--backend-store-uri=$(MLFLOW_BACKEND_URI)",
                "--artifacts-destination=s3://mlflow-artifacts",
                "--serve-artifacts",
                "--app-name=basic-auth",
                "--expose-prometheus=/tmp/metrics",
                f"--workers={self.s['mlflow_workers']}",
                # Clients reach it by its Service name and by its LoadBalancer address.
                "--allowed-hosts=*",
            ],
            env=self.mlflow_env(),
            ports={"http": PORTS["mlflow"]},
            readiness=http_probe("/health", "http"),
            liveness=http_probe("/health", "http", period=20, failures=6),
            startup=http_probe("/health", "http", period=5, failures=60),
            mounts=[mount("tmp", "/tmp"), mount("secrets", SECRETS_DIR, True)],
        )
        pod = template("mlflow", pod_spec([server], UIDS["mlflow"], volumes=self.mlflow_volumes()), {"mlops-metal/exposed": "true"})
        return [
            deployment("mlflow", self.ns, self.size("mlflow")["replicas"], pod),
            service("mlflow", self.ns, {"http": PORTS["mlflow"]}, load_balancer=self.exposed("mlflow")),
        ]

    # ---------------------------------------------------------------- Airflow 3
    def airflow_env(self) -> list[Obj]:
        plain = {
            # LocalExecutor: tasks run as processes of the scheduler pod, so no Celery broker and no
            # pod per task (the KubernetesExecutor's API access and start-up per task); one DAG of
            # seven short steps does not need a worker fleet.
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://airflow-api-server:{PORTS['airflow']}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            # The auth manager rewrites this file: a writable copy of the Secret's (see airflow_pod).
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": "/tmp/airflow-passwords.json",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
            "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": "s3://airflow-logs/logs",
            "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": "mlops_s3",
            "AIRFLOW_CONFIG": "/tmp/airflow.cfg",
        }
        return env_list(plain) + self.secret_env(
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="airflow-db-url",
            AIRFLOW__API_AUTH__JWT_SECRET="airflow-jwt-secret",
            AIRFLOW__API__SECRET_KEY="airflow-api-secret-key",
            AIRFLOW__CORE__FERNET_KEY="airflow-fernet-key",
            AIRFLOW_CONN_MLOPS_S3="airflow-conn-s3",
        )

    def airflow_pod(self, name: str, box: Obj, extra_labels: dict[str, str] | None = None, restart_policy: str | None = None) -> Obj:
        volumes = [
            empty_dir("tmp", "1Gi"),
            empty_dir("logs", "1Gi"),
            secret_volume("secrets", self.secret, {"airflow-passwords.json": "airflow-passwords.json"}),
        ]
        box["volumeMounts"] = [mount("tmp", "/tmp"), mount("logs", "/opt/airflow/logs"), mount("secrets", SECRETS_DIR, True)]
        box["command"] = ["sh", "-c", f'install -m 0600 {SECRETS_DIR}/airflow-passwords.json /tmp/ && exec airflow "$@"', "airflow"]
        return template(name, pod_spec([box], UIDS["airflow"], volumes=volumes, restart_policy=restart_policy, gid=0), extra_labels)

    def airflow_migrate(self) -> list[Obj]:
        run = self.box("migrate", "airflow", "job", args=["db", "migrate"], env=self.airflow_env())
        return [job("airflow-db-migrate", self.ns, self.airflow_pod("airflow-db-migrate", run, restart_policy="OnFailure"))]

    def airflow(self) -> list[Obj]:
        objects: list[Obj] = []
        check = {
            name: exec_probe(["airflow", "jobs", "check", "--job-type", job_type, "--local"], period=60, timeout=45, failures=3)
            for name, job_type in (("airflow-dag-processor", "DagProcessorJob"), ("airflow-triggerer", "TriggererJob"))
        }
        for name in AIRFLOW_COMPONENTS:
            command = name.removeprefix("airflow-")
            kwargs: dict[str, Any] = {"args": [command], "env": self.airflow_env()}
            pod_labels: dict[str, str] = {}
            if name == "airflow-api-server":
                kwargs |= {
                    "args": [command, "--port", str(PORTS["airflow"])],
                    "ports": {"http": PORTS["airflow"]},
                    "readiness": http_probe("/api/v2/monitor/health", "http"),
                    "liveness": http_probe("/api/v2/monitor/health", "http", period=20, failures=6),
                    "startup": http_probe("/api/v2/monitor/health", "http", period=5, failures=60),
                }
                pod_labels["mlops-metal/exposed"] = "true"
            elif name == "airflow-scheduler":
                # The tasks run here (LocalExecutor): they need MLflow, S3, the inference log and the API.
                kwargs["env"] = kwargs["env"] + self.ml_client_env()
                kwargs |= {
                    "ports": {"health": 8974},
                    "readiness": http_probe("/health", "health"),
                    "liveness": http_probe("/health", "health", period=20, failures=6),
                    "startup": http_probe("/health", "health", period=5, failures=60),
                }
            else:  # no port: the job's heartbeat in the database tells ready and alive
                kwargs["liveness"] = kwargs["readiness"] = check[name]
            box = self.box(name.removeprefix("airflow-"), "airflow", name, **kwargs)
            replicas = self.size(name).get("replicas", 1)
            objects.append(deployment(name, self.ns, replicas, self.airflow_pod(name, box, pod_labels)))
        objects.append(service("airflow-api-server", self.ns, {"http": PORTS["airflow"]}, load_balancer=self.exposed("airflow")))
        return objects


def platform_images(image_list: dict[str, Any], overrides: dict[str, str], images_dir: str) -> dict[str, str]:
    """Each image's reference: the site's own (platform_image_<name>) or the build's image list."""
    refs: dict[str, str] = {}
    missing = []
    for name in IMAGES:
        ref = overrides.get(name) or (image_list.get(name) or {}).get("ref", "")
        if not ref:
            missing.append(name)
        elif ref.endswith(":latest") or (":" not in ref.rsplit("/", 1)[-1] and "@" not in ref):
            raise ValueError(f"platform_image_{name}: {ref!r} is not pinned; give a version tag or a digest")
        refs[name] = ref
    if missing:
        raise ValueError(
            f"no image for {', '.join(missing)}: {images_dir}/images.json lacks them. Fix: run `make images` (or copy its "
            f"build/images into the air-gap bundle's images/), or set platform_image_<name> to your registry's reference."
        )
    return refs


def address_in_pools(address: str, pools: list[dict[str, Any]]) -> bool:
    """Whether an address lies in one of the plan's MetalLB pools (ranges a-b or CIDRs)."""
    ip = ipaddress.ip_address(address)
    for pool in pools:
        for entry in pool.get("addresses", []):
            if "-" in entry:
                first, last = (ipaddress.ip_address(part.strip()) for part in entry.split("-", 1))
                if first.version == ip.version and first <= ip <= last:
                    return True
            elif ip in ipaddress.ip_network(entry, strict=False):
                return True
    return False


def platform_objects(settings: dict[str, Any]) -> dict[str, list[Obj]]:
    """Files in apply order: each one's workloads are waited on before the next is applied."""
    from platform_backup import backup_objects  # it builds on Platform: imported here, not at the top

    settings = plain(settings)
    p = Platform(settings)
    policies = network_policies(p.ns, settings)
    # Policies of another namespace (the node certificates' exporter's) go with that namespace.
    elsewhere = [policy for policy in policies if policy["metadata"]["namespace"] != p.ns]
    files = {
        "10-policies.yaml": [policy for policy in policies if policy not in elsewhere],
        "20-postgres.yaml": p.postgres(),
        "21-postgres-init.yaml": p.postgres_init(),
        "30-seaweedfs.yaml": p.seaweedfs(),
        "31-s3-buckets.yaml": p.buckets(),
        "40-mlflow-db-upgrade.yaml": p.mlflow_migrate(),
        "41-mlflow.yaml": p.mlflow(),
        "50-airflow-db-migrate.yaml": p.airflow_migrate(),
        "51-airflow.yaml": p.airflow(),
        "60-prometheus.yaml": prometheus_objects(p),
        "61-grafana.yaml": grafana_objects(p, settings["grafana_dashboard"]),
        "62-node-certs.yaml": cert_exporter_objects(p, elsewhere),
        "65-backup.yaml": backup_objects(p),
    }
    return {name: objects for name, objects in files.items() if objects}  # Grafana, backups, node certs: only when wanted


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "mlops_platform_objects": platform_objects,
            "mlops_platform_images": platform_images,
            "mlops_address_in_pools": address_in_pools,
        }
