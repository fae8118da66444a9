#!/usr/bin/env python3
"""Backups of the platform's data, restores that prove themselves, one backup set per run.

    mlops-backup create  --database mlflow ... --bucket mlflow-artifacts ... --store s3://mlops-backups --store /backups --keep 7
    mlops-backup restore --id latest --store /backups --database mlflow ... --bucket ... [--replace]
    mlops-backup list    --store s3://mlops-backups
    mlops-backup verify  --id latest --store /backups

A backup set is a folder ``<id>/`` in every store (an S3 bucket/prefix or a directory):
``postgres/<db>.dump`` (pg_dump custom format), ``s3/<bucket>/<key>`` (each object as is) and
``manifest.json``, written last, so a set without one is incomplete and never restored. The
manifest holds the sha256 of every file, each object's size and ETag, and, for every table,
its row count and a checksum of its rows taken in the same snapshot pg_dump dumps.

A restore checks every file against the manifest before it changes anything; restores each
database into a fresh one, compares row counts and checksums, and only then swaps it in (the
database it replaces is kept as ``<db>__pre_restore``); puts the objects back and checks that
each is present with the ETag its content gives (count and ETags). Any difference fails.

Connections: PostgreSQL from libpq's variables (PGHOST, PGPORT, PGUSER, PGPASSWORD), the data's
S3 from MLOPS_BACKUP_S3_ENDPOINT and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; an S3 store elsewhere
(the site's own) from MLOPS_BACKUP_STORE_S3_ENDPOINT and MLOPS_BACKUP_STORE_ACCESS_KEY_ID/
MLOPS_BACKUP_STORE_SECRET_ACCESS_KEY. The last line printed is ``MLOPS-BACKUP-RESULT <json>``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg
from botocore.config import Config
from psycopg import sql

FORMAT = 1
MANIFEST = "manifest.json"
RESULT_PREFIX = "MLOPS-BACKUP-RESULT "
ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z(-[a-z0-9-]+)?$")
CHUNK = 1 << 20
# Files up to this size are copied in memory, WORKERS at a time (an object store answers each
# request in its own time: one at a time, a bucket of small artifacts is slow); larger ones one
# at a time through the scratch folder and boto3's multipart transfer.
SMALL_FILE = int(os.environ.get("MLOPS_BACKUP_SMALL_FILE", 16 * 1024**2))
WORKERS = 8
# Single-part uploads up to this size, so that a restored object's ETag is its content's MD5.
SINGLE_PART_LIMIT = 5 * 1024**3


_STARTED = time.monotonic()


def elapsed() -> str:
    """Seconds since the start, for the log's progress lines."""
    return f"[{time.monotonic() - _STARTED:7.1f} s]"


class BackupError(RuntimeError):
    """A failure the operator must act on; the message says what and where."""


def sha256_md5(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def digests(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), hashlib.md5(data, usedforsecurity=False).hexdigest()


def s3_client(endpoint: str | None, key: str | None = None, secret: str | None = None):
    # Path-style addressing: SeaweedFS and most on-prem S3 have no per-bucket DNS names.
    return boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=WORKERS * 2),
    )


def data_s3():
    return s3_client(os.environ.get("MLOPS_BACKUP_S3_ENDPOINT") or os.environ.get("MLFLOW_S3_ENDPOINT_URL"))


# ------------------------------------------------------------------------------------ stores
class Store:
    """Where backup sets live: ``put``/``get`` files, list and delete sets."""

    url: str

    def put(self, key: str, source: Path) -> None:
        raise NotImplementedError

    def get(self, key: str, target: Path) -> None:
        raise NotImplementedError

    def read(self, key: str) -> bytes | None:
        raise NotImplementedError

    def write(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def sets(self) -> list[str]:
        """Ids of the sets in the store, complete or not, oldest first."""
        raise NotImplementedError

    def delete_set(self, set_id: str) -> None:
        raise NotImplementedError

    def complete(self, set_id: str) -> bool:
        return self.read(f"{set_id}/{MANIFEST}") is not None


class DirStore(Store):
    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def path(self, key: str) -> Path:
        # Object keys become paths: one that would leave the store ("../", a leading "/") is refused.
        target = (self.root / key.lstrip("/")).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise BackupError(f"{key!r}: not a path inside {self.root}")
        return target

    def put(self, key: str, source: Path) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(source, partial)
        with partial.open("rb") as handle:  # on disk before the manifest can name it
            os.fsync(handle.fileno())
        partial.replace(target)

    def write(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with partial.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(target)

    def get(self, key: str, target: Path) -> None:
        shutil.copyfile(self.path(key), target)

    def read(self, key: str) -> bytes | None:
        path = self.path(key)
        return path.read_bytes() if path.is_file() else None

    def sets(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and ID_PATTERN.match(p.name))

    def delete_set(self, set_id: str) -> None:
        shutil.rmtree(self.root / set_id)


class S3Store(Store):
    def __init__(self, url: str) -> None:
        self.url = url
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        endpoint = os.environ.get("MLOPS_BACKUP_STORE_S3_ENDPOINT")
        if endpoint:
            self.client = s3_client(
                endpoint, os.environ.get("MLOPS_BACKUP_STORE_ACCESS_KEY_ID"), os.environ.get("MLOPS_BACKUP_STORE_SECRET_ACCESS_KEY")
            )
        else:
            self.client = data_s3()

    def put(self, key: str, source: Path) -> None:
        if source.stat().st_size > SMALL_FILE:
            self.client.upload_file(str(source), self.bucket, self.prefix + key)
        else:  # one request, no transfer threads: most objects are small
            with source.open("rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=body)

    def get(self, key: str, target: Path) -> None:
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
        with target.open("wb") as out:
            shutil.copyfileobj(body, out, CHUNK)

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def read(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def sets(self) -> list[str]:
        found: set[str] = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"):
            for entry in page.get("CommonPrefixes", []):
                name = entry["Prefix"][len(self.prefix) :].rstrip("/")
                if ID_PATTERN.match(name):
                    found.add(name)
        return sorted(found)

    def delete_set(self, set_id: str) -> None:
        for key in list_keys(self.client, self.bucket, f"{self.prefix}{set_id}/"):
            self.client.delete_object(Bucket=self.bucket, Key=key["Key"])


def open_store(url: str) -> Store:
    return S3Store(url) if url.startswith("s3://") else DirStore(url)


def download(client, bucket: str, key: str, size: int, target: Path) -> None:
    if size > SMALL_FILE:
        client.download_file(bucket, key, str(target))
        return
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    with target.open("wb") as out:
        shutil.copyfileobj(body, out, CHUNK)


def list_keys(client, bucket: str, prefix: str = "") -> Iterator[dict[str, Any]]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def read_manifest(store: Store, set_id: str) -> dict[str, Any]:
    raw = store.read(f"{set_id}/{MANIFEST}")
    if raw is None:
        raise BackupError(f"{store.url}: backup set {set_id} has no {MANIFEST} (incomplete or absent); `list` shows the complete ones")
    manifest = json.loads(raw)
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{store.url}/{set_id}: manifest format {manifest.get('format')!r}, this tool reads {FORMAT}")
    return manifest


def resolve_id(store: Store, wanted: str) -> str:
    complete = [s for s in store.sets() if store.complete(s)]
    if wanted != "latest":
        if wanted not in complete:
            raise BackupError(f"{store.url}: no complete backup set {wanted!r}; complete sets: {', '.join(complete) or 'none'}")
        return wanted
    if not complete:
        raise BackupError(f"{store.url}: no complete backup set to restore")
    return complete[-1]


# ------------------------------------------------------------------------------------ PostgreSQL
def pg_bin(name: str) -> str:
    folder = os.environ.get("MLOPS_BACKUP_PG_BIN")
    return str(Path(folder) / name) if folder else name


def connect(dbname: str, autocommit: bool = False) -> psycopg.Connection:
    return psycopg.connect(dbname=dbname, autocommit=autocommit, connect_timeout=10)


TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
ORDER BY 1, 2
"""


def table_fingerprints(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """Row count and an order-independent checksum of the rows' text, for every user table."""
    out: dict[str, dict[str, Any]] = {}
    for schema, table in conn.execute(TABLES).fetchall():
        name = sql.Identifier(schema, table)
        query = sql.SQL(
            "SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') FROM (SELECT md5(t::text) AS h FROM {} t) rows"
        ).format(name)
        rows, checksum = conn.execute(query).fetchone()
        out[f"{schema}.{table}"] = {"rows": rows, "checksum": checksum}
    return out


def dump_database(database: str, target: Path) -> dict[str, Any]:
    """pg_dump and the tables' fingerprints from one snapshot, so they describe the same data."""
    with connect(database) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").fetchone()[0]
        subprocess.run(
            [pg_bin("pg_dump"), "--format=custom", f"--snapshot={snapshot}", "--no-owner", "--no-privileges", f"--file={target}", database],
            check=True,
            capture_output=True,
            text=True,
        )
        tables = table_fingerprints(conn)
        conn.rollback()
    return {"owner": owner, "tables": tables}


TERMINATE = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"


def database_exists(name: str) -> bool:
    with connect("postgres", autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def drop_database(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def restore_database(database: str, entry: dict[str, Any], dump: Path, replace: bool) -> dict[str, Any]:
    staging, previous = f"{database}__restore", f"{database}__pre_restore"
    owner = entry["owner"]
    existed = database_exists(database)
    with connect("postgres", autocommit=True) as admin:
        if existed and not replace:
            raise BackupError(f"database {database} exists: restoring over it needs --replace (it is kept as {previous})")
        drop_database(admin, staging)  # a staging copy left by an interrupted restore is ours to remove
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(staging), sql.Identifier(owner)))
    try:
        done = subprocess.run(
            [pg_bin("pg_restore"), "--exit-on-error", "--no-owner", "--no-privileges", f"--role={owner}", f"--dbname={staging}", str(dump)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise BackupError(f"pg_restore into {staging} failed: {done.stderr.strip()[-2000:]}")
        with connect(staging) as conn:
            found = table_fingerprints(conn)
        differences = compare_tables(entry["tables"], found)
        if differences:
            raise BackupError(f"database {database}: the restored copy differs from the backup: {'; '.join(differences[:10])}")
    except BaseException:
        with connect("postgres", autocommit=True) as admin:
            drop_database(admin, staging)
        raise
    with connect("postgres", autocommit=True) as admin:
        if existed:
            drop_database(admin, previous)
            admin.execute(TERMINATE, (database,))
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(database), sql.Identifier(previous)))
        admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(staging), sql.Identifier(database)))
    return {"tables": len(found), "rows": sum(t["rows"] for t in found.values()), "previous": previous if existed else None}


def compare_tables(expected: dict[str, dict[str, Any]], found: dict[str, dict[str, Any]]) -> list[str]:
    problems = [f"{t}: missing" for t in sorted(set(expected) - set(found))]
    problems += [f"{t}: not in the backup" for t in sorted(set(found) - set(expected))]
    for table in sorted(set(expected) & set(found)):
        want, got = expected[table], found[table]
        if want["rows"] != got["rows"]:
            problems.append(f"{table}: {got['rows']} rows, backup has {want['rows']}")
        elif want["checksum"] != got["checksum"]:
            problems.append(f"{table}: same {got['rows']} rows but different content")
    return problems


# ------------------------------------------------------------------------------------ commands
@dataclass
class Options:
    databases: list[str]
    buckets: list[str]
    stores: list[Store]
    scratch: Path


def new_id(label: str | None) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{label}" if label else stamp


def create(opts: Options, set_id: str, keep: int) -> dict[str, Any]:
    if not ID_PATTERN.match(set_id):
        raise BackupError(f"--id {set_id!r}: ids are <UTC time as YYYYmmddTHHMMSSZ>[-label], so that sets sort by age")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "id": set_id,
        "started": datetime.now(UTC).isoformat(),
        "databases": {},
        "buckets": {},
    }
    files: dict[str, dict[str, Any]] = {}

    def store_file(key: str, path: Path) -> dict[str, Any]:
        sha, md5 = sha256_md5(path)
        files[key] = {"sha256": sha, "size": path.stat().st_size}
        for store in opts.stores:
            store.put(f"{set_id}/{key}", path)
        return {"sha256": sha, "md5": md5, "size": files[key]["size"]}

    for database in opts.databases:
        dump = opts.scratch / f"{database}.dump"
        entry = dump_database(database, dump)
        entry["file"] = f"postgres/{database}.dump"
        store_file(entry["file"], dump)
        dump.unlink()
        manifest["databases"][database] = entry
        rows = sum(t["rows"] for t in entry["tables"].values())
        print(f"{elapsed()} database {database}: {len(entry['tables'])} tables, {rows} rows", flush=True)
    source = data_s3() if opts.buckets else None

    def copy_small(bucket: str, item: dict[str, Any]) -> dict[str, Any]:
        data = source.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        sha, md5 = digests(data)
        for store in opts.stores:
            store.write(f"{set_id}/s3/{bucket}/{item['Key']}", data)
        return {"sha256": sha, "md5": md5, "size": len(data)}

    for bucket in opts.buckets:
        items = list(list_keys(source, bucket))
        small = [i for i in items if i["Size"] <= SMALL_FILE]
        with ThreadPoolExecutor(WORKERS) as pool:
            copied = dict(zip((i["Key"] for i in small), pool.map(lambda i, b=bucket: copy_small(b, i), small), strict=True))
        for item in items:
            if item["Key"] not in copied:  # large: one at a time through the scratch folder
                local = opts.scratch / "object"
                download(source, bucket, item["Key"], item["Size"], local)
                copied[item["Key"]] = store_file(f"s3/{bucket}/{item['Key']}", local)
                local.unlink()
        objects = {}
        for item in items:
            stored = copied[item["Key"]]
            files[f"s3/{bucket}/{item['Key']}"] = {"sha256": stored["sha256"], "size": stored["size"]}
            objects[item["Key"]] = {
                "size": stored["size"],
                "etag": item["ETag"].strip('"'),
                "md5": stored["md5"],
                "sha256": stored["sha256"],
            }
        manifest["buckets"][bucket] = {"objects": objects}
        print(f"{elapsed()} bucket {bucket}: {len(objects)} objects, {sum(o['size'] for o in objects.values())} bytes", flush=True)
    manifest["files"] = files
    manifest["finished"] = datetime.now(UTC).isoformat()
    path = opts.scratch / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    for store in opts.stores:  # last: a set is complete once its manifest is there
        store.put(f"{set_id}/{MANIFEST}", path)
    removed = {store.url: prune(store, keep) for store in opts.stores}
    return {
        "id": set_id,
        "databases": {db: sum(t["rows"] for t in e["tables"].values()) for db, e in manifest["databases"].items()},
        "tables": sum(len(e["tables"]) for e in manifest["databases"].values()),
        "objects": {b: len(e["objects"]) for b, e in manifest["buckets"].items()},
        "files": len(files),
        "bytes": sum(f["size"] for f in files.values()),
        "stores": [s.url for s in opts.stores],
        "pruned": removed,
    }


def prune(store: Store, keep: int) -> list[str]:
    """Keep the newest ``keep`` complete sets; drop older ones and any incomplete set older than the newest complete one."""
    sets = store.sets()
    complete = [s for s in sets if store.complete(s)]
    doomed = complete[:-keep] if keep > 0 else []
    if complete:
        doomed += [s for s in sets if s not in complete and s < complete[-1]]
    for set_id in sorted(doomed):
        store.delete_set(set_id)
    return sorted(doomed)


@contextlib.contextmanager
def fetched(store: Store, set_id: str, key: str, expected: dict[str, Any], scratch: Path) -> Iterator[Path]:
    local = scratch / Path(key).name
    store.get(f"{set_id}/{key}", local)
    try:
        sha, _ = sha256_md5(local)
        if sha != expected["sha256"]:
            raise BackupError(f"{store.url}/{set_id}/{key}: sha256 {sha} but the manifest says {expected['sha256']}: the copy is damaged")
        yield local
    finally:
        local.unlink(missing_ok=True)


def read_checked(store: Store, set_id: str, key: str, expected: dict[str, Any]) -> bytes:
    """A small file of a set, in memory, checked against its manifest entry."""
    data = store.read(f"{set_id}/{key}")
    if data is None:
        raise BackupError(f"{store.url}/{set_id}/{key}: missing, though the manifest lists it")
    sha, _ = digests(data)
    if sha != expected["sha256"]:
        raise BackupError(f"{store.url}/{set_id}/{key}: sha256 {sha} but the manifest says {expected['sha256']}: the copy is damaged")
    return data


def verify(store: Store, set_id: str, scratch: Path) -> dict[str, Any]:
    """Every file of a set read back and checked against its manifest."""
    manifest = read_manifest(store, set_id)
    small = {k: e for k, e in manifest["files"].items() if e["size"] <= SMALL_FILE}
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda k: read_checked(store, set_id, k, small[k]), small))
    for key, expected in manifest["files"].items():
        if key not in small:
            with fetched(store, set_id, key, expected, scratch):
                pass
    return {"id": set_id, "store": store.url, "files": len(manifest["files"]), "verified": True}


def restore(opts: Options, store: Store, set_id: str, replace: bool) -> dict[str, Any]:
    manifest = read_manifest(store, set_id)
    wanted_dbs = opts.databases or list(manifest["databases"])
    wanted_buckets = opts.buckets or list(manifest["buckets"])
    missing = [d for d in wanted_dbs if d not in manifest["databases"]] + [b for b in wanted_buckets if b not in manifest["buckets"]]
    if missing:
        raise BackupError(f"backup set {set_id} holds no {', '.join(missing)}")
    # Every file is read back and checked before anything is changed.
    verify(store, set_id, opts.scratch)
    result: dict[str, Any] = {"id": set_id, "store": store.url, "databases": {}, "buckets": {}}
    for database in wanted_dbs:
        entry = manifest["databases"][database]
        with fetched(store, set_id, entry["file"], manifest["files"][entry["file"]], opts.scratch) as dump:
            result["databases"][database] = restore_database(database, entry, dump, replace)
        print(f"{elapsed()} database {database}: restored and checked, {result['databases'][database]}", flush=True)
    target = data_s3() if wanted_buckets else None
    for bucket in wanted_buckets:
        result["buckets"][bucket] = restore_bucket(target, store, set_id, bucket, manifest, opts.scratch)
        print(f"{elapsed()} bucket {bucket}: {result['buckets'][bucket]}", flush=True)
    return result


def restore_bucket(client, store: Store, set_id: str, bucket: str, manifest: dict[str, Any], scratch: Path) -> dict[str, Any]:
    objects = manifest["buckets"][bucket]["objects"]
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
        if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=bucket)
    present = {item["Key"]: item["ETag"].strip('"') for item in list_keys(client, bucket)}
    # Objects already there with this content are left alone.
    wanted = [k for k, e in objects.items() if not (k in present and present[k] in (e["md5"], e["etag"]))]

    def put_small(key: str) -> None:
        stored_key = f"s3/{bucket}/{key}"
        client.put_object(Bucket=bucket, Key=key, Body=read_checked(store, set_id, stored_key, manifest["files"][stored_key]))

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(put_small, [k for k in wanted if objects[k]["size"] <= SMALL_FILE]))
    for key in (k for k in wanted if objects[k]["size"] > SMALL_FILE):
        stored_key = f"s3/{bucket}/{key}"
        with fetched(store, set_id, stored_key, manifest["files"][stored_key], scratch) as local:
            if objects[key]["size"] > SINGLE_PART_LIMIT:
                client.upload_file(str(local), bucket, key)
            else:
                with local.open("rb") as body:
                    client.put_object(Bucket=bucket, Key=key, Body=body)
    written = len(wanted)
    after = {item["Key"]: item["ETag"].strip('"') for item in list_keys(client, bucket)}
    wrong = [k for k, e in objects.items() if k not in after or after[k] not in (e["md5"], e["etag"])]
    if wrong:
        raise BackupError(f"bucket {bucket}: {len(wrong)} object(s) missing or with another ETag after the restore, e.g. {wrong[:3]}")
    return {"objects": len(objects), "written": written, "etags_match": len(objects), "extra": len(set(after) - set(objects))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlops-backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["create", "restore", "verify", "list"])
    parser.add_argument("--store", action="append", default=[], help="s3://bucket[/prefix] or a directory; create writes to each")
    parser.add_argument("--database", action="append", default=[], help="a PostgreSQL database (restore: default every one in the set)")
    parser.add_argument("--bucket", action="append", default=[], help="an S3 bucket of the data (restore: default every one in the set)")
    parser.add_argument("--id", default="", help="create: the new set's id (default: now); restore/verify: an id or 'latest'")
    parser.add_argument("--label", default=None, help="create: appended to the generated id")
    parser.add_argument("--keep", type=int, default=7, help="create: complete sets kept in each store (0 keeps all)")
    parser.add_argument("--replace", action="store_true", help="restore: swap in over existing databases (kept as <db>__pre_restore)")
    parser.add_argument("--scratch", default=None, help="a folder for one file at a time (default: a temporary one)")
    args = parser.parse_args(argv)
    if not args.store:
        parser.error("--store is required (s3://bucket[/prefix] or a directory)")
    if args.command in ("restore", "verify") and len(args.store) != 1:
        parser.error(f"{args.command} reads one --store")
    scratch = Path(tempfile.mkdtemp(prefix="mlops-backup-", dir=args.scratch))
    opts = Options(args.database, args.bucket, [open_store(url) for url in args.store], scratch)
    try:
        if args.command == "create":
            result = create(opts, args.id or new_id(args.label), args.keep)
        elif args.command == "list":
            result = {store.url: [s for s in store.sets() if store.complete(s)] for store in opts.stores}
        else:
            set_id = resolve_id(opts.stores[0], args.id or "latest")
            if args.command == "verify":
                result = verify(opts.stores[0], set_id, scratch)
            else:
                result = restore(opts, opts.stores[0], set_id, args.replace)
    except (BackupError, subprocess.CalledProcessError, psycopg.Error) as error:
        detail = getattr(error, "stderr", None) or ""
        print(f"mlops-backup {args.command}: {error} {detail}".strip(), file=sys.stderr)
        print(RESULT_PREFIX + json.dumps({"ok": False, "error": str(error)}), flush=True)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(RESULT_PREFIX + json.dumps({"ok": True, **result}, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
