"""compose.yaml describes the cluster with only the variables the settings read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.settings import (
    AGENT_ENVIRONMENT,
    ENVIRONMENT,
    SettingsError,
    StoreKind,
    load_agent_settings,
    load_settings,
)

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


def test_every_variable_fills_its_field_and_defaults_come_from_the_fields() -> None:
    # One declaration per variable: the table is derived from the fields, so a value set in
    # the environment must land in the field that declares it.
    assert ENVIRONMENT["MODELYARD_PORT"][0] == "8080"
    assert ENVIRONMENT["MODELYARD_LOG_LEVEL"][0] == "INFO"
    settings = load_settings(
        {
            "MODELYARD_PORT": "9000",
            "MODELYARD_DATA_DIR": "/srv/yard",
            "MODELYARD_STORE": "postgres",
            "MODELYARD_SIMULATED_TTFT_MS": "12.5",
            "MODELYARD_ENGINE": "simulated",
            "POSTGRES_PORT": "6543",
            "MODELYARD_LOG_LEVEL": "DEBUG",
        }
    )
    assert settings.port == 9000
    assert settings.data_dir == Path("/srv/yard")
    assert settings.store is StoreKind.POSTGRES
    assert settings.simulated_ttft_ms == 12.5
    assert settings.engine == "simulated"
    assert settings.postgres.port == 6543
    assert settings.log.level == "DEBUG"
    assert settings.base_url == "http://127.0.0.1:9000"
    assert all(meaning for _, meaning in ENVIRONMENT.values())


def test_secrets_never_appear_in_a_repr_or_an_error() -> None:
    settings = load_settings({"POSTGRES_PASSWORD": "hunter2-secret"})
    assert "hunter2-secret" in settings.postgres.conninfo
    assert "hunter2-secret" not in repr(settings)
    assert "password=***" in repr(settings)
    agent = load_agent_settings({"MODELYARD_API_KEY": "auxen_live_abc", "MODELYARD_URL": "http://h:1"})
    assert (agent.url, agent.api_key) == ("http://h:1", "auxen_live_abc")
    assert "auxen_live_abc" not in repr(agent)
    assert set(AGENT_ENVIRONMENT) == {"MODELYARD_URL", "MODELYARD_API_KEY"}
    assert not set(AGENT_ENVIRONMENT) & set(ENVIRONMENT)


@pytest.mark.parametrize(("name", "value"), [("MODELYARD_ENGINE", "gpu"), ("MODELYARD_LOG_LEVEL", "LOUD")])
def test_a_value_outside_the_choices_is_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{name}='{value}' is not valid"):
        load_settings({name: value})


def test_compose_places_replicas_on_its_ray_nodes() -> None:
    compose = _compose()
    services = compose["services"]
    assert services["ray-head"]["command"][:3] == ["ray", "start", "--head"]
    worker = services["ray-worker"]["command"]
    assert "--address=ray-head:6379" in worker
    assert any(arg.startswith("--resources=") and "gpu_type:" in arg for arg in worker)
    for name in _modelyard_services(compose):
        settings = load_settings({k: str(v) for k, v in services[name]["environment"].items()})
        assert (settings.placement, settings.ray_address) == ("ray", "ray-head:6379")
