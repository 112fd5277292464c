"""``GET /metrics``: the API process in Prometheus text, for a scraper.

Three families of series. HTTP requests and their latency, by method, route template and
status, are Litestar's own Prometheus middleware (``modelyard_http_*``, grouped by route so a
deployment id never becomes a label). Inference, by model: requests by status, their
latency through the gateway, and prompt and completion tokens (``modelyard_inference_*``,
``modelyard_tokens_total``), counted as the gateway records each call's usage. Replicas and
deployments per model and state (``modelyard_replicas``, ``modelyard_deployments``), read
from the views at each scrape, so every API process of a cluster reports the same fleet.
Labels name catalog models and states only: no account, key or deployment is exposed.
"""

from __future__ import annotations

from collections.abc import Iterator

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import SkipValidation
from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.usage.service import RecordUsage
from modelyard.projections.deployments.queries import replica_counts

#: What ``generate_latest`` writes: the Prometheus text format 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Inference latency buckets in seconds: a cached answer in milliseconds to a long CPU
# generation (or a cold start) in a minute.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def http_metrics() -> PrometheusConfig:
    """Litestar's request counter and latency histogram, labelled by route template."""
    return PrometheusConfig(
        app_name="modelyard", prefix="modelyard_http", group_path=True, exclude=["/metrics"]
    )


class _Fleet(Collector):
    """Deployments and replicas per model and state, read from the views at each scrape."""

    def __init__(self, views: ViewDatabase) -> None:
        self._views = views

    def collect(self) -> Iterator[Metric]:
        replicas = GaugeMetricFamily(
            "modelyard_replicas",
            "Replicas recorded for deployments, by model and state.",
            labels=["model", "state"],
        )
        deployments = GaugeMetricFamily(
            "modelyard_deployments",
            "Deployments not destroyed, by model and state.",
            labels=["model", "state"],
        )
        with self._views.read() as tx:
            for row in replica_counts(tx):
                replicas.add_metric([row.model, row.state], row.replicas)
                deployments.add_metric([row.model, row.state], row.deployments)
        yield replicas
        yield deployments


class ApiMetrics:
    """This process's inference series, in a registry of its own (beside Litestar's)."""

    def __init__(self, views: ViewDatabase) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "modelyard_inference_requests",
            "Inference calls through the gateway, by model and status.",
            ["model", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "modelyard_inference_latency_seconds",
            "Latency of inference calls through the gateway (to the last token), by model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._tokens = Counter(
            "modelyard_tokens",
            "Tokens of inference calls, by model and kind.",
            ["model", "kind"],
            registry=self.registry,
        )
        self.registry.register(_Fleet(views))

    def observe(self, record: RecordUsage) -> None:
        """Count one inference call the gateway recorded."""
        self._requests.labels(record.model, str(record.status)).inc()
        self._latency.labels(record.model).observe(record.latency_ms / 1000)
        self._tokens.labels(record.model, "prompt").inc(record.prompt_tokens)
        self._tokens.labels(record.model, "completion").inc(record.completion_tokens)

    def render(self) -> bytes:
        """Litestar's HTTP series (the default registry, with the process's) and these."""
        return generate_latest(REGISTRY) + generate_latest(self.registry)


class MetricsController(Controller):
    """The Prometheus scrape target of this API process."""

    path = "/metrics"
    tags = ["health"]

    # In a thread: a scrape reads the views.
    @get(
        operation_id="metrics",
        summary="Prometheus metrics of this API process",
        media_type=CONTENT_TYPE,
        sync_to_thread=True,
    )
    def metrics(self, api_metrics: NamedDependency[SkipValidation[ApiMetrics]]) -> bytes:
        """The exposition text: HTTP requests and latency, inference calls and tokens, replicas."""
        return api_metrics.render()
