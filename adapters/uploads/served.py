"""How this host serves an uploaded model (``byom:<name>``): llama.cpp on its stored GGUF."""

from __future__ import annotations

from pathlib import Path

from modelyard.adapters.engines.base import PlacementError, ReplicaSpec
from modelyard.adapters.uploads.receiver import upload_path
from modelyard.adapters.views.db import ViewDatabase
from modelyard.domain.uploads.aggregate import PREFIX
from modelyard.projections.uploads.queries import ready_upload


def is_uploaded(model: str) -> bool:
    """Whether ``model`` names an upload rather than a catalog entry."""
    return model.startswith(PREFIX)


def uploaded_spec(
    views: ViewDatabase, data_dir: Path, account_id: str, model: str, preset: str
) -> ReplicaSpec:
    """The replica spec of the account's ready upload ``model``; a missing file is a placement error."""
    with views.read() as tx:
        found = ready_upload(tx, account_id, model.removeprefix(PREFIX))
    if found is None:
        raise PlacementError(f"{model} is not a ready model upload of this account.")
    path = upload_path(data_dir, found.id.hex)
    if not path.exists():
        raise PlacementError(f"The GGUF file of {model} is missing on this host.")
    return ReplicaSpec(model=model, engine="llamacpp", path=str(path), preset=preset)
