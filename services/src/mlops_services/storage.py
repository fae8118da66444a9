"""Data snapshots in S3 (SeaweedFS here and on K3s) as Parquet, addressed by content hash."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import cached_property

import boto3
import pandas as pd
from botocore.config import Config
from botocore.exceptions import ClientError

from .settings import Settings


@dataclass
class DataStore:
    settings: Settings

    @cached_property
    def client(self):  # boto3 clients are untyped
        # Credentials come from boto3's own chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY): never from here.
        return boto3.client(
            "s3",
            endpoint_url=self.settings.s3_endpoint_url,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
        )

    @property
    def bucket(self) -> str:
        return self.settings.data_bucket

    def ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def key_of(self, uri: str) -> str:
        prefix = f"s3://{self.bucket}/"
        if not uri.startswith(prefix):
            raise ValueError(f"{uri} is not in bucket {self.bucket}")
        return uri[len(prefix) :]

    def put_frame(self, key: str, frame: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=buffer.getvalue())
        return self.uri(key)

    def put_bytes(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return self.uri(key)

    def get_bytes(self, uri: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.key_of(uri))["Body"].read()

    def get_frame(self, uri: str) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.get_bytes(uri)))

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys)


def content_id(frame: pd.DataFrame) -> str:
    """A short id that changes whenever the rows do: snapshots are immutable and named by it."""
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(row_hashes.tobytes()).hexdigest()[:16]
