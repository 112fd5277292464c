"""Finance over HTTP, as an agent and its finance team use it, on a running server.

A quote before provisioning names the price the instance then shows and holds; a model this
host cannot place is quoted as such; bad bodies get the provision's own codes. The account's
ledger exports as a chain (CSV and JSON lines) that ``modelyard audit verify`` finds intact
against the store and that an edit breaks at the line edited; reconciliation lists the
instance, not flagged.
"""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from .conftest import MODELYARD, Yard

pytestmark = pytest.mark.e2e


def _client(yard: Yard) -> httpx.Client:
    yard.await_key()
    return httpx.Client(base_url=yard.urls[0], headers={"Authorization": f"Bearer {yard.key}"}, timeout=30)


def test_a_quote_names_the_price_the_provision_holds(simulated: Yard) -> None:
    with _client(simulated) as client:
        quoted = client.post("/v1/quote", json={"model": "smollm2-135m", "capacity": 2})
        assert quoted.status_code == 200, quoted.text
        quote = quoted.json()["data"]
        assert quote["admitted"] is True
        assert quote["hardware"]["placeable"] is True
        assert quote["hardware"]["engine"] == "simulated"
        # $0.15/h at 1.8x: $0.27/h, $0.0045 a minute; $5 lasts 1111 minutes.
        assert quote["price_per_hour_usd"] == "0.270000"
        assert quote["price_per_minute_micros"] == 4500
        assert quote["lasts_minutes"] == 5_000_000 // 4500
        made = client.post("/v1/provision", json={"model": "smollm2-135m", "capacity": 2})
        assert made.status_code == 201, made.text
        instance = made.json()["data"]["instance"]
        assert instance["price_per_hour_usd"] == quote["price_per_hour_usd"]
        balance = client.get("/v1/balance").json()["data"]
        assert balance["reserved_usd"] == quote["price_per_minute_usd"]
        # With the instance running, the next quote counts its minute too.
        again = client.post("/v1/quote", json={"model": "smollm2-135m"}).json()["data"]
        assert again["running_per_minute_usd"] == quote["price_per_minute_usd"]
        assert again["total_per_minute_usd"] == "0.007000"


def test_a_quote_says_what_this_host_cannot_place_and_refuses_bad_bodies(embedded: Yard) -> None:
    with _client(embedded) as client:
        big = client.post("/v1/quote", json={"model": "llama3.1-8b"}).json()["data"]
        assert big["hardware"]["placeable"] is False
        assert "GPU" in big["hardware"]["reason"]
        assert big["admitted"] is False
        # The quote names the refusal the provision itself then gives (the plan's, or the fit's).
        provision = client.post("/v1/provision", json={"model": "llama3.1-8b"})
        assert provision.status_code in (403, 502), provision.text
        refused = provision.json()["error"]
        assert big["refusal"] == f"{refused['code']}: {refused['message']}"
        for body, code in [
            ({"model": "smollm2-135m", "capacity": 3}, "INVALID_CAPACITY"),
            ({"model": "smollm2-135m", "billing": "monthly"}, "INVALID_BILLING_MODE"),
            ({"model": "no-such-model"}, "INVALID_MODEL"),
            ({"model": "smollm2-135m", "preset": "fastest"}, "INVALID_REQUEST"),
            ({"model": "smollm2-135m", "surprise": 1}, "INVALID_REQUEST"),
        ]:
            refused = client.post("/v1/quote", json=body)
            assert refused.status_code == 400, (body, refused.text)
            assert refused.json()["error"]["code"] == code, refused.text
            provision = client.post("/v1/provision", json=body)
            assert provision.json()["error"]["code"] == code, provision.text
        assert httpx.post(f"{embedded.urls[0]}/v1/quote", json={"model": "smollm2-135m"}).status_code == 401


def _verify(yard: Yard, text: str, suffix: str) -> subprocess.CompletedProcess[str]:
    path = yard.cwd / f"export.{suffix}"
    path.write_text(text)
    return subprocess.run(
        [MODELYARD, "audit", "verify", str(path)],
        env=yard.env, cwd=yard.cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_ledger_exports_as_a_chain_that_verifies_and_breaks_where_edited(simulated: Yard) -> None:
    simulated.cli("credits", "add", simulated.account, "1.25")
    simulated.cli("credits", "add", simulated.account, "0.75")
    with _client(simulated) as client:
        deadline = time.monotonic() + 30
        while client.get("/v1/balance").json()["data"]["credited_usd"] != "7.000000":
            assert time.monotonic() < deadline, "the top-ups never reached the views"
            time.sleep(0.2)
        for fmt, suffix in (("jsonl", "jsonl"), ("csv", "csv")):
            answer = client.get("/v1/ledger/export", params={"format": fmt})
            assert answer.status_code == 200, answer.text
            text = answer.text
            assert len(text.splitlines()) == (4 if fmt == "jsonl" else 5)  # 3 credits, the end (+ header)
            intact = _verify(simulated, text, suffix)
            assert intact.returncode == 0, intact.stdout + intact.stderr
            assert intact.stdout.startswith("intact: 3 lines"), intact.stdout
            edited = text.replace("1250000", "1350000", 1)
            assert edited != text
            broken = _verify(simulated, edited, suffix)
            assert broken.returncode == 1
            assert "line 2 is bad" in broken.stderr, broken.stderr
        assert client.get("/v1/ledger/export", params={"format": "xml"}).status_code == 400
        reconciled = client.get("/v1/reconciliation")
        assert reconciled.status_code == 200, reconciled.text
        assert reconciled.json()["data"]["flagged"] == 0
        bad = client.get(
            "/v1/reconciliation", params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "INVALID_REQUEST"
