"""deploy/helm/values.yaml: valid YAML, shaped as the official Airflow chart expects, and consistent
with the image, the DAG's connections, its pool and its settings.

There is no cluster or ``helm`` here. The chart's own ``values.schema.json`` (apache/airflow,
``chart/values.schema.json``) is 650 kB; ``CHART_SCHEMA_EXCERPT`` below transcribes the parts of it
that cover every key this file sets (types, enums, patterns, ``additionalProperties: false`` where the
chart has it), and the file is validated against that with ``jsonschema``. Top-level keys outside the
excerpt are refused, so a new key has to be looked up in the chart's schema and added here first.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from include.offer_sync.schedule import parse_schedule
from include.offer_sync.settings import OFFERS_DB_CONN_ID, TRACKIER_CONN_ID
from tests.deployment.test_deployment import ENV_EXAMPLE, parse_env_example, requirement_pin, secret_problems

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "deploy" / "helm" / "values.yaml"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"

_NULLABLE_STRING = {"type": ["string", "null"]}
_PULL_POLICY = {"type": "string", "enum": ["Always", "Never", "IfNotPresent"]}
#: Transcribed from the chart's values.schema.json (the properties and constraints this file touches).
CHART_SCHEMA_EXCERPT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "airflowVersion": {"type": "string"},
        "executor": {
            "type": "string",
            "pattern": r"^(([a-zA-Z_][a-zA-Z0-9_]*.)*[A-Z][a-zA-Z0-9]+Executor)"
            r"(,(([a-zA-Z_][a-zA-Z0-9_]*.)*[A-Z][a-zA-Z0-9]+Executor))*$",
        },
        "images": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "airflow": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "repository": _NULLABLE_STRING,
                        "tag": _NULLABLE_STRING,
                        "digest": _NULLABLE_STRING,
                        "pullPolicy": _PULL_POLICY,
                    },
                },
            },
        },
        "env": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "value"],
                "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
            },
        },
        "secret": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["envName", "secretName"],
                "properties": {
                    "envName": {"type": "string"},
                    "secretName": {"type": "string"},
                    "secretKey": {"type": "string"},
                },
            },
        },
        "extraEnvFrom": {"type": ["null", "string"]},
        "data": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "metadataSecretName": _NULLABLE_STRING,
                "resultBackendSecretName": _NULLABLE_STRING,
                "brokerUrlSecretName": _NULLABLE_STRING,
                "metadataConnection": {"type": "object"},
                "resultBackendConnection": {"type": ["object", "null"]},
                "brokerUrl": _NULLABLE_STRING,
            },
        },
        "fernetKeySecretName": _NULLABLE_STRING,
        "apiSecretKeySecretName": _NULLABLE_STRING,
        "jwtSecretName": _NULLABLE_STRING,
        "workers": {
            "type": "object",
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "resources": {
                    "type": "object",
                    "properties": {"limits": {"type": "object"}, "requests": {"type": "object"}},
                },
            },
        },
        "migrateDatabaseJob": {
            "type": "object",
            "properties": {"args": {"type": ["array", "null"], "items": {"type": "string"}}},
        },
        "createUserJob": {
            "type": "object",
            "properties": {
                "defaultUser": {
                    "type": "object",
                    "properties": {
                        "enabled": {"type": "boolean"},
                        "username": {"type": "string"},
                        "role": {"type": "string"},
                        "password": {"type": "string"},
                    },
                },
            },
        },
        "postgresql": {"type": "object", "properties": {"enabled": {"type": "boolean"}}},
        "redis": {"type": "object", "properties": {"enabled": {"type": "boolean"}}},
        # [section] -> {key: value} of airflow.cfg; the chart renders it into a ConfigMap.
        "config": {"type": "object", "additionalProperties": {"type": "object"}},
    },
}


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


def env(values: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in values["env"]}


def test_values_are_valid_yaml_in_the_charts_shape(values: dict[str, Any]) -> None:
    jsonschema.validate(values, CHART_SCHEMA_EXCERPT)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda v: v["images"]["airflow"].update(pullPolicy="Sometimes"), "pull policy enum"),
        (lambda v: v["images"]["airflow"].update(name="x"), "unknown image key"),
        (lambda v: v["secret"].append({"envName": "X"}), "secret without secretName"),
        (lambda v: v["env"].append({"name": "X", "value": 5}), "env value must be a string"),
        (lambda v: v.update(webserver={"defaultUser": {}}), "unknown top-level key"),
        (lambda v: v.update(executor="Celery"), "executor pattern"),
    ],
)
def test_the_excerpt_catches_what_the_chart_would_refuse(values: dict[str, Any], change: Any, why: str) -> None:
    broken = yaml.safe_load(VALUES.read_text())
    change(broken)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, CHART_SCHEMA_EXCERPT)


def test_image_is_ours_at_the_pinned_airflow_version(values: dict[str, Any]) -> None:
    pin = requirement_pin("apache-airflow")
    assert values["airflowVersion"] == pin
    image = values["images"]["airflow"]
    assert image["tag"] == pin
    assert image["repository"].endswith("/trackier-offer-sync-airflow")
    # The compose file builds the same name (AIRFLOW_IMAGE_NAME=<name>:<pin>).
    compose_image = parse_env_example(ENV_EXAMPLE.read_text())["AIRFLOW_IMAGE_NAME"][1]
    assert compose_image == f"trackier-offer-sync-airflow:{pin}"


def test_connections_come_from_a_kubernetes_secret(values: dict[str, Any]) -> None:
    wanted = {f"AIRFLOW_CONN_{TRACKIER_CONN_ID.upper()}", f"AIRFLOW_CONN_{OFFERS_DB_CONN_ID.upper()}"}
    from_secrets = {item["envName"]: item for item in values["secret"]}
    assert set(from_secrets) >= wanted
    for name in wanted:
        assert from_secrets[name]["secretName"]
        assert from_secrets[name]["secretKey"] == name
        assert name not in env(values), f"{name} must not be a plain env value"
    # Nothing in the file looks like a credential.
    problems = [p for item in values["env"] for p in secret_problems(item["name"], item["value"])]
    assert not problems, problems
    assert "password" not in values["createUserJob"]["defaultUser"]


def test_the_pool_the_dag_uses_is_created_by_the_chart(values: dict[str, Any]) -> None:
    pool = env(values)["OFFER_SYNC_API_POOL"]
    script = " ".join(values["migrateDatabaseJob"]["args"])
    assert values["migrateDatabaseJob"]["args"][:2] == ["bash", "-c"]
    assert "airflow db migrate" in script, "the job still migrates the database"
    created = re.search(r"airflow pools set (\S+) (\d+)", script)
    assert created, script
    assert created.group(1) == pool
    assert int(created.group(2)) >= 1


def test_executor_schedule_and_base_url(values: dict[str, Any]) -> None:
    assert values["executor"] == "CeleryExecutor"
    assert values["workers"]["replicas"] >= 2
    assert parse_schedule(env(values)["OFFER_SYNC_SCHEDULE"]) == "30 2 * * *"
    assert values["config"]["api"]["base_url"].startswith("https://")
    assert values["postgresql"]["enabled"] is False
    assert values["data"]["metadataSecretName"]


def test_every_setting_is_one_the_package_documents(values: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(parse_env_example(ENV_EXAMPLE.read_text())) | set(re.findall(r"`(OFFER_SYNC_[A-Z_]+)`", readme))
    assert set(env(values)) <= documented


def test_the_deployment_guide_uses_this_file(values: dict[str, Any]) -> None:
    guide = DEPLOYMENT_DOC.read_text()
    assert "-f deploy/helm/values.yaml" in guide
    # The Secret the guide creates holds the keys the values read.
    for item in values["secret"]:
        assert item["secretName"] in guide
        assert f"--from-literal={item['secretKey']}=" in guide
    for secret_name in (values["data"]["metadataSecretName"], values["data"]["resultBackendSecretName"]):
        assert secret_name in guide
