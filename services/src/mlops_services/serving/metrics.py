"""Prometheus metrics for the API, on a registry of their own (no process-global state between apps)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PRICE_BUCKETS = (50e3, 100e3, 150e3, 200e3, 300e3, 400e3, 500e3, 750e3, 1e6, 1.5e6, 2.5e6, 5e6)


@dataclass
class ApiMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("mlops_api_requests", "Requests by endpoint and status", ["endpoint", "status"], registry=r)
        self.latency = Histogram("mlops_api_request_seconds", "Request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.predictions = Histogram("mlops_predicted_price_dollars", "Predicted prices", buckets=PRICE_BUCKETS, registry=r)
        self.model_version = Gauge("mlops_model_version", "Registered version being served", ["model"], registry=r)
        self.reloads = Counter("mlops_model_reloads", "Model reloads by outcome", ["outcome"], registry=r)
        self.log_written = Counter("mlops_inference_log_rows_written", "Inference rows written to PostgreSQL", registry=r)
        self.log_spooled = Gauge("mlops_inference_log_spooled_rows", "Inference rows waiting in the on-disk spool", registry=r)
        self.log_dropped = Counter("mlops_inference_log_rows_dropped", "Rows dropped because the spool was full", registry=r)
