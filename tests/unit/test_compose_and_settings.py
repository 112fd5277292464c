"""compose.yaml describes the cluster with only the variables the settings read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.settings import ENVIRONMENT, SettingsError, StoreKind, load_settings

ROOT = Path(__file__).resolve().parents[2]
# Variables the third-party images read themselves, not modelyard.
IMAGE_PREFIXES = ("KAFKA_",)
IMAGE_VARIABLES = {"POSTGRES_DB"}


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _modelyard_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for name, spec in compose["services"].items()
        if str(spec.get("command", [""])[0]) == "modelyard"
    }


def test_compose_has_the_cluster_topology() -> None:
    services = _compose()["services"]
    assert {"postgres", "kafka", "api", "worker"} <= set(services)
    assert services["api"]["command"][:2] == ["modelyard", "api"]
    assert services["worker"]["command"][:2] == ["modelyard", "worker"]


def test_every_variable_compose_sets_for_modelyard_is_a_setting() -> None:
    compose = _compose()
    services = _modelyard_services(compose)
    assert services, "compose.yaml runs no modelyard process"
    for name, spec in services.items():
        variables = set(spec["environment"])
        unknown = variables - set(ENVIRONMENT)
        assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"
        settings = load_settings({k: str(v) for k, v in spec["environment"].items()})
        assert settings.store is StoreKind.POSTGRES
        assert settings.uses_kafka


def test_image_variables_are_only_the_images_own() -> None:
    for name, spec in _compose()["services"].items():
        if name in _modelyard_services(_compose()):
            continue
        for variable in spec.get("environment", {}):
            assert (
                variable.startswith(IMAGE_PREFIXES)
                or variable in IMAGE_VARIABLES
                or (variable in ENVIRONMENT)
            ), f"{name}: {variable}"


def test_defaults_are_the_embedded_mode() -> None:
    settings = load_settings({})
    assert settings.store is StoreKind.SQLITE
    assert not settings.uses_kafka
    assert settings.sqlite_path.name == "events.sqlite3"


@pytest.mark.parametrize(
    ("name", "value"), [("MODELYARD_STORE", "mysql"), ("MODELYARD_PORT", "eighty"), ("POSTGRES_PORT", "")]
)
def test_bad_settings_are_refused_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})
