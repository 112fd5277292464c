"""Bring your own model: the bundled SmolLM2 GGUF uploaded under a new name, provisioned as
``byom:<name>`` and chatted with through the official openai SDK; and every bad upload (not
GGUF, empty, truncated, cut off mid-transfer, a name taken) refused with nothing left behind.

The server runs the simulated engine for catalog models (the deployment the upload names
is cheap); an uploaded model is always served for real, by llama.cpp.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from modelyard.adapters.engines.models import gguf_paths
from modelyard.adapters.views.db import SqliteViews
from modelyard.domain.shared.store import Store
from modelyard.settings import load_settings

from .conftest import Yard, free_port
from .test_five_steps import poll_until, store_env

pytestmark = pytest.mark.e2e

GGUF = Path(gguf_paths("")["smollm2-135m"])


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Yard]:
    tmp = tmp_path_factory.mktemp("byom")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "POSTGRES_"))}
    running = Yard(
        env=env | {"MODELYARD_DATA_DIR": str(tmp / "data"), "MODELYARD_ENGINE": "simulated"}, cwd=tmp, urls=[]
    )
    running.fund("5.00")
    running.start("serve", port=free_port())
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(yard: Yard) -> httpx.Client:
    return httpx.Client(base_url=yard.urls[0], headers={"Authorization": f"Bearer {yard.key}"}, timeout=300)


@pytest.fixture(scope="module")
def deployment(http: httpx.Client) -> str:
    created = http.post("/v1/provision", json={"model": "smollm2-135m"}).json()["data"]["instance"]
    return str(poll_until(http, str(created["id"]), "running")["id"])


def _models_dir(yard: Yard) -> Path:
    return Path(yard.env["MODELYARD_DATA_DIR"]) / "models"


def _leftovers(yard: Yard) -> list[str]:
    folder = _models_dir(yard)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _uploads(yard: Yard) -> list[tuple[Any, ...]]:
    views = SqliteViews(Path(yard.env["MODELYARD_DATA_DIR"]) / "views.sqlite3")
    try:
        with views.transaction() as tx:
            return tx.execute("SELECT id, status, name, reason FROM model_uploads ORDER BY updated_at")
    finally:
        views.close()


def _upload(http: httpx.Client, content: bytes, name: str, deployment: str, filename: str = "m.gguf") -> Any:
    return http.post(
        "/api/v1/public/models/upload",
        files={"file": (filename, content, "application/octet-stream")},
        data={"name": name, "deployment_id": deployment},
    )


def test_upload_provision_and_chat(yard: Yard, http: httpx.Client, deployment: str) -> None:
    with GGUF.open("rb") as model:
        answer = http.post(
            "/api/v1/public/models/upload",
            files={"file": ("my-finetune.gguf", model, "application/octet-stream")},
            data={"name": "my-model-v1", "deployment_id": deployment},
        )
    assert answer.status_code == 201, answer.text
    upload = answer.json()["data"]["upload"]
    assert upload["status"] == "ready"
    assert upload["model"] == "byom:my-model-v1"
    assert upload["sha256"] == hashlib.sha256(GGUF.read_bytes()).hexdigest()
    assert upload["size_bytes"] == GGUF.stat().st_size
    assert _leftovers(yard) == [f"{upload['id']}.gguf"]

    store = Store(env=store_env(load_settings(yard.env)))
    try:
        import uuid

        steps = [type(e).__name__ for e in store.events.get(uuid.UUID(hex=upload["id"]))]
    finally:
        store.close()
    assert steps == ["UploadOpened", "UploadStarted", "UploadCompleted"]  # pending_upload, uploading, ready

    created = http.post("/v1/provision", json={"model": "byom:my-model-v1"})
    assert created.status_code == 201, created.text
    instance = poll_until(http, str(created.json()["data"]["instance"]["id"]), "running", timeout=180)
    assert instance["model"] == "byom:my-model-v1"
    sdk = openai.OpenAI(
        base_url=str(instance["openai_base_url"]), api_key=str(instance["api_key"]), max_retries=0
    )
    reply = sdk.chat.completions.create(
        model="byom:my-model-v1",
        messages=[{"role": "user", "content": "What is the capital of France? One word."}],
        max_tokens=8,
        temperature=0,
    )
    assert "Paris" in (reply.choices[0].message.content or "")  # real llama.cpp on the uploaded file

    taken = _upload(http, GGUF.read_bytes()[:4096], "my-model-v1", deployment)
    assert taken.status_code == 400
    shown = http.get(f"/api/v1/public/models/uploads/{upload['id']}").json()["data"]["upload"]
    assert shown == upload | {"reason": None}
    assert http.get(f"/api/v1/public/models/uploads/{'0' * 32}").status_code == 404


def test_bad_uploads_leave_nothing_behind(yard: Yard, http: httpx.Client, deployment: str) -> None:
    before, rows_before = _leftovers(yard), len(_uploads(yard))
    not_gguf = _upload(http, b"this is a text file, not a model" * 10, "text", deployment)
    assert not_gguf.status_code == 400
    assert "not a GGUF model" in not_gguf.json()["error"]["message"]
    empty = _upload(http, b"", "empty", deployment)
    assert empty.status_code == 400
    assert "empty" in empty.json()["error"]["message"]
    # Neither reached an upload: nothing recorded, nothing written.
    assert len(_uploads(yard)) == rows_before
    assert _leftovers(yard) == before

    data = GGUF.read_bytes()
    truncated = _upload(http, data[: len(data) // 2], "half", deployment)
    assert truncated.status_code == 400
    assert "truncated" in truncated.json()["error"]["message"]
    bad_name = _upload(http, data[:4096], "no spaces allowed", deployment)
    assert bad_name.status_code == 400
    not_ours = _upload(http, data[:4096], "stranger", "inst_" + "0" * 32)
    assert not_ours.status_code in (400, 404)
    assert _leftovers(yard) == before
    failed = _uploads(yard)[rows_before:]
    assert [row[1] for row in failed] == ["failed", "failed", "failed"]
    shown = http.get(f"/api/v1/public/models/uploads/{failed[0][0]}").json()["data"]["upload"]
    assert (shown["status"], shown["model"]) == ("failed", None)
    assert "truncated" in shown["reason"]

    missing = http.post("/v1/provision", json={"model": "byom:half"})
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "INVALID_MODEL"


def test_an_upload_cut_off_mid_transfer_leaves_nothing(yard: Yard, deployment: str) -> None:
    before, rows_before = _leftovers(yard), len(_uploads(yard))
    boundary = "cutoffboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\ncut\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.gguf"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    chunk = GGUF.read_bytes()[: 2 << 20]
    port = int(yard.urls[0].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        request = (
            "POST /api/v1/public/models/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {yard.key}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(head) + GGUF.stat().st_size + 100}\r\n\r\n"
        ).encode()
        sock.sendall(request + head + chunk)
        time.sleep(1.0)  # the server has opened the upload and written some of it
    deadline = time.monotonic() + 30
    while True:
        rows = _uploads(yard)[rows_before:]
        if rows and rows[-1][1] == "failed":
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)
    assert "interrupted" in rows[-1][3]
    assert _leftovers(yard) == before
