"""``GET /metrics`` on the API process parses as Prometheus text and counts what happened:
HTTP requests by route template, inference calls, their latency and tokens, and replicas."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Yard
from .test_five_steps import poll_until

pytestmark = [pytest.mark.e2e]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_parse_and_count_requests_tokens_latency_and_replicas(simulated: Yard) -> None:
    url = simulated.urls[0]
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {simulated.key}"}, timeout=60
    ) as client:
        created = client.post("/v1/provision", json={"model": "smollm2-135m", "capacity": 2})
        assert created.status_code == 201, created.text
        instance = poll_until(client, created.json()["data"]["instance"]["id"], "running")
    completions = 0
    for words in ("one two three", "four five"):
        answer = httpx.post(
            f"{url}/v1/{instance['id']}/v1/chat/completions",
            headers={"Authorization": f"Bearer {instance['api_key']}"},
            json={"model": "m", "messages": [{"role": "user", "content": words}]},
        )
        assert answer.status_code == 200, answer.text
        completions += answer.json()["usage"]["completion_tokens"]

    scraped = httpx.get(f"{url}/metrics")  # a scraper sends no key
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = scraped.text
    samples = _samples(text)
    model = "smollm2-135m"
    assert samples[("modelyard_tokens_total", (("kind", "completion"), ("model", model)))] == completions
    assert samples[("modelyard_tokens_total", (("kind", "prompt"), ("model", model)))] > 0
    assert samples[("modelyard_inference_requests_total", (("model", model), ("status", "200")))] == 2
    assert samples[("modelyard_inference_latency_seconds_count", (("model", model),))] == 2
    assert samples[("modelyard_inference_latency_seconds_sum", (("model", model),))] > 0
    assert samples[("modelyard_replicas", (("model", model), ("state", "running")))] == 2
    assert samples[("modelyard_deployments", (("model", model), ("state", "running")))] == 1
    # HTTP series by route template: the chat route counted twice, under its template.
    chats = [
        value
        for (name, labels), value in samples.items()
        if name == "modelyard_http_requests_total"
        and dict(labels).get("path")
        in ("/v1/{instance_id}/v1/chat/completions", "/v1/{instance_id:str}/v1/chat/completions")
        and dict(labels).get("status_code") == "200"
    ]
    paths = sorted(
        {dict(labels).get("path", "") for name, labels in samples if name.startswith("modelyard_http")}
    )
    assert chats == [2.0], paths
    assert any(name == "modelyard_http_request_duration_seconds_bucket" for name, _ in samples)
    # No deployment, key or account is a label.
    assert instance["id"] not in text
    assert instance["id"].removeprefix("inst_") not in text
    assert simulated.account not in text
