"""Checks of the deployment files: docker-compose.yaml (+ docker-compose.celery.yaml), Dockerfile,
.env.example, .dockerignore.

There is no Docker engine in CI, so nothing here builds or starts a container. Two layers:

- YAML-level checks (always run): services, profiles, healthchecks, volumes, environment, every
  ``${VARIABLE}`` documented in .env.example, no secrets in it, the Dockerfile installing exactly
  requirements.txt on the Airflow version it pins, and the embedded shell scripts being valid bash
  (the demo trigger script is also run against a stub ``airflow``).
- ``docker compose config -q`` (or Debian's ``docker-compose``): only where such a client is
  installed; that one test says so when it skips.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
CELERY_FILE = ROOT / "docker-compose.celery.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
REQUIREMENTS = ROOT / "requirements.txt"

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-init",
    "airflow-cli",
    "demo-trigger",
}
#: Services docker-compose.celery.yaml adds (all but redis run the Airflow image).
CELERY_SERVICES = {"redis", "airflow-worker", "flower"}
CORE_SERVICES = {
    "postgres",
    "offers-db",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-init",
}
PROFILES = {
    "airflow-cli": ["debug"],
    "fake-trackier": ["demo"],
    "demo-trigger": ["demo"],
}
ONE_SHOT_SERVICES = {"airflow-init", "airflow-cli", "demo-trigger"}
TASK_ENV = {
    "AIRFLOW_CONN_TRACKIER_API",
    "AIRFLOW_CONN_OFFERS_DB",
    "AIRFLOW_CONN_OFFER_SYNC_WEBHOOK",
    "OFFER_SYNC_MAX_DURATION_S",
    "OFFER_SYNC_MAX_ERROR_RATE",
    "OFFER_SYNC_MAX_TASK_RSS_MB",
    "OFFER_SYNC_DEADLINE_MINUTES",
    "OFFER_SYNC_SCHEDULE",
    "AIRFLOW__API__BASE_URL",
}
#: Variables .env.example documents that no compose file names: they reach the Airflow containers
#: through env_file as they are (or, COMPOSE_FILE, configure compose itself).
PASS_THROUGH = {
    "COMPOSE_FILE",
    "OFFER_SYNC_WORK_MEM",
    "OFFER_SYNC_LOCK_TIMEOUT",
    "OFFER_SYNC_IDLE_IN_TRANSACTION_TIMEOUT",
    "OFFER_SYNC_CLIENT_CHECK_INTERVAL",
    "OFFER_SYNC_STATEMENT_TIMEOUT",
    "AIRFLOW_CONN_SLACK_ALERTS",
}
DAG_ID = "trackier_offer_sync"


# --------------------------------------------------------------------------------------------------
# Helpers: compose-style interpolation, .env.example parsing, Dockerfile parsing
# --------------------------------------------------------------------------------------------------

# `$$` is a literal dollar; `${NAME...}` and `$NAME` are interpolated by compose.
_DOLLAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>.*))?", re.DOTALL)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation for the forms this project uses: $$, ${X}, ${X:-d}, ${X-d}, ${X:?e}."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            raise AssertionError(f"unbraced ${match.group('named')} in {text!r}: write ${{X}} or $$X")
        braced = _BRACED.fullmatch(match.group("braced"))
        assert braced, f"cannot parse ${{{match.group('braced')}}}"
        name, op, arg = braced.group("name", "op", "arg")
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?") and not value:
            raise AssertionError(f"required variable {name} is unset: {arg}")
        return value or ""

    return _DOLLAR.sub(replace, text)


def walk_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(key)
            yield from walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_strings(item)


def compose_variables(compose: dict[str, Any]) -> dict[str, set[str]]:
    """Every variable the compose file interpolates, with the defaults it gives it."""
    found: dict[str, set[str]] = {}
    for text in walk_strings(compose):
        for match in _DOLLAR.finditer(text):
            assert not match.group("named"), f"unbraced ${match.group('named')} in {text!r}"
            if match.group("braced") is None:
                continue
            braced = _BRACED.fullmatch(match.group("braced"))
            assert braced, f"cannot parse ${{{match.group('braced')}}}"
            default = braced.group("arg") if braced.group("op") in (":-", "-") else ""
            found.setdefault(braced.group("name"), set()).add(default or "")
    return found


def compose_default(variables: dict[str, set[str]], name: str) -> str:
    """The one non-empty default a variable has (``""`` when it only has empty ones)."""
    non_empty = variables[name] - {""}
    assert len(non_empty) <= 1, f"{name} has different defaults in the compose file: {non_empty}"
    return next(iter(non_empty), "")


_ENV_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


def parse_env_example(text: str) -> dict[str, tuple[bool, str]]:
    """KEY -> (active, value) for `KEY=value` (active) and `# KEY=value` (documented default)."""
    entries: dict[str, tuple[bool, str]] = {}
    for line in text.splitlines():
        match = _ENV_LINE.match(line.strip())
        if not match:
            continue
        raw = match.group("value")
        # A commented line may end with an explanation after the placeholder.
        raw = re.split(r"\s{2,}default:", raw)[0].strip() if match.group("comment") else raw.strip()
        value = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" else raw
        key = match.group("key")
        active = not match.group("comment")
        if key in entries and entries[key][0] and not active:
            continue  # an active line wins over a commented example
        entries[key] = (active, value)
    return entries


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def requirement_pin(name: str) -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(rf"{re.escape(name)}==([\w.]+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"{name} is not pinned with == in requirements.txt")


# Things that look like a real credential: Fernet keys, long hex, long random-looking tokens.
_SECRET_SHAPES = [
    re.compile(r"[A-Za-z0-9_-]{43}="),  # Fernet key (urlsafe base64 of 32 bytes)
    re.compile(r"\b[0-9a-fA-F]{32,}\b"),  # hex API keys and digests
    re.compile(r"(?=[A-Za-z0-9+/_-]*[0-9])(?=[A-Za-z0-9+/_-]*[a-z])(?=[A-Za-z0-9+/_-]*[A-Z])[A-Za-z0-9+/_-]{20,}"),
]
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|API_KEY", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"<[^<>]+>")
_KNOWN_DEMO_VALUES = {"", "airflow", "offers", "demo-key"}


def secret_problems(key: str, value: str) -> list[str]:
    """Why `key=value` from .env.example could be a real secret (empty list: it is not)."""
    problems = []
    without_placeholders = _PLACEHOLDER.sub("", value)
    for shape in _SECRET_SHAPES:
        if shape.search(without_placeholders):
            problems.append(f"{key}: value looks like a real secret ({shape.pattern})")
    if _SECRET_NAME.search(key) and value not in _KNOWN_DEMO_VALUES and not _PLACEHOLDER.fullmatch(value):
        problems.append(f"{key}: a secret setting must be empty or a <placeholder>, got {value!r}")
    # Passwords inside connection JSON or URIs.
    stripped = value.strip()
    if stripped.startswith("{"):
        password = json.loads(stripped).get("password")
        if password and not _PLACEHOLDER.fullmatch(password):
            problems.append(f"{key}: connection JSON carries a password that is no <placeholder>")
    for match in re.finditer(r"://[^:/@\s]*:([^@\s]*)@", value):
        if match.group(1) not in _KNOWN_DEMO_VALUES and not _PLACEHOLDER.fullmatch(match.group(1)):
            problems.append(f"{key}: URI carries a password that is no <placeholder>")
    return problems


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        pattern = pattern.rstrip("/")
        candidates = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatch(path, p) or path.startswith(p + "/") for p in candidates):
            excluded = not negated
    return excluded


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def celery_compose() -> dict[str, Any]:
    return yaml.safe_load(CELERY_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def variables(compose: dict[str, Any], celery_compose: dict[str, Any]) -> dict[str, set[str]]:
    found = compose_variables(compose)
    for name, defaults in compose_variables(celery_compose).items():
        found.setdefault(name, set()).update(defaults)
    return found


@pytest.fixture(scope="module")
def env_example() -> dict[str, tuple[bool, str]]:
    return parse_env_example(ENV_EXAMPLE.read_text())


def resolved(value: Any, env: dict[str, str] | None = None) -> Any:
    if isinstance(value, str):
        return interpolate(value, env or {})
    if isinstance(value, list):
        return [resolved(v, env) for v in value]
    if isinstance(value, dict):
        return {k: resolved(v, env) for k, v in value.items()}
    return value


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: str(value) for key, value in env.items()}


# --------------------------------------------------------------------------------------------------
# docker-compose.yaml, YAML level
# --------------------------------------------------------------------------------------------------


def test_official_structure_is_kept(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    assert "x-airflow-common" in compose
    assert "&airflow-common-env" in text
    assert "&airflow-common-depends-on" in text
    common = compose["x-airflow-common"]
    assert common["build"] == ".", "the image is built from ./Dockerfile"
    assert "image" in common, "the built image needs a name that other machines can pull"
    for name in AIRFLOW_SERVICES:
        assert compose["services"][name]["build"] == ".", name


def test_services_and_profiles(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == CORE_SERVICES | set(PROFILES)
    for name, service in services.items():
        assert service.get("profiles") == PROFILES.get(name), f"{name}: profiles {service.get('profiles')}"
    # The default profile must not depend on a service that only a profile starts.
    for name in CORE_SERVICES:
        for dependency in services[name].get("depends_on", {}):
            assert dependency in CORE_SERVICES, f"{name} depends on profiled service {dependency}"


def test_commands(services: dict[str, dict[str, Any]]) -> None:
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    assert "8080:8080" in resolved(services["airflow-apiserver"]["ports"])


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check.get("test"), f"{name} has an empty healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    api_check = " ".join(services["airflow-apiserver"]["healthcheck"]["test"])
    assert "/api/v2/monitor/health" in api_check
    assert "/_fake/health" in " ".join(services["fake-trackier"]["healthcheck"]["test"])


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    ):
        depends = services[name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["offers-db"]["condition"] == "service_healthy", name
    demo = services["demo-trigger"]["depends_on"]
    for dependency in ("fake-trackier", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"):
        assert demo[dependency]["condition"] == "service_healthy", dependency


def test_airflow_environment(services: dict[str, dict[str, Any]]) -> None:
    jwt_values = set()
    for name in AIRFLOW_SERVICES:
        env = resolved(environment(services[name]))
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false", name
        # LocalExecutor is Airflow's default; only docker-compose.celery.yaml names an executor.
        assert "AIRFLOW__CORE__EXECUTOR" not in env, name
        assert not any(key.startswith("AIRFLOW__CELERY__") for key in env), name
        assert services[name]["env_file"] == [".env"], f"{name}: .env must reach the container"
        assert env["AIRFLOW__API__BASE_URL"] == "http://localhost:8080", name
        assert env["OFFER_SYNC_SCHEDULE"] == "@daily", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert "/opt/airflow" in env["PYTHONPATH"].split(":"), name
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"], f"{name}: empty JWT secret"
        assert "AIRFLOW__CORE__FERNET_KEY" in env, name
        assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert set(env) >= TASK_ENV, f"{name} lacks {TASK_ENV - set(env)}"
        jwt_values.add((env["AIRFLOW__API_AUTH__JWT_SECRET"], env["AIRFLOW__CORE__FERNET_KEY"]))
        volumes = resolved(services[name]["volumes"])
        for folder in ("dags", "plugins", "include", "logs", "config"):
            assert f"./{folder}:/opt/airflow/{folder}" in volumes, f"{name} does not mount ./{folder}"
    assert len(jwt_values) == 1, "every Airflow component must share the JWT secret and Fernet key"
    for name in ("postgres", "offers-db", "fake-trackier"):
        assert "env_file" not in services[name], f"{name} needs none of .env (and must not see the keys)"


def test_no_pip_additional_requirements(compose: dict[str, Any]) -> None:
    # Comments may mention it (to say it is not used); no key or value may.
    for text in walk_strings(compose):
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in text
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    assert not any("_PIP_ADDITIONAL_REQUIREMENTS" in args for _, args in instructions)


def test_offers_db_is_separate_from_metadata(compose: dict[str, Any]) -> None:
    services = compose["services"]
    meta, offers = services["postgres"], services["offers-db"]
    meta_volumes = {v.split(":")[0] for v in meta["volumes"]}
    offers_volumes = {v.split(":")[0] for v in offers["volumes"]}
    assert meta_volumes
    assert offers_volumes
    assert not meta_volumes & offers_volumes
    assert meta_volumes | offers_volumes <= set(compose["volumes"])
    env = resolved(environment(services["airflow-scheduler"]))
    assert env["AIRFLOW_CONN_OFFERS_DB"].startswith("postgresql://")
    assert "@offers-db:5432/" in env["AIRFLOW_CONN_OFFERS_DB"]
    offers_env = resolved(environment(offers))
    # The default connection matches the bundled server's credentials.
    user, password = offers_env["POSTGRES_USER"], offers_env["POSTGRES_PASSWORD"]
    expected = f"postgresql://{user}:{password}@offers-db:5432/{offers_env['POSTGRES_DB']}"
    assert env["AIRFLOW_CONN_OFFERS_DB"] == expected


def test_demo_profile_runs_the_fake_server(services: dict[str, dict[str, Any]]) -> None:
    fake = services["fake-trackier"]
    command = resolved(fake["command"])
    assert command[:3] == ["python", "-m", "devtools.fake_trackier"]
    args = dict(zip(command[3::2], command[4::2], strict=True))
    assert args == {
        "--host": "0.0.0.0",  # noqa: S104 - inside its container, so the other services can reach it
        "--port": "8099",
        "--advertisers": "50",
        "--campaigns": "2000",
        "--seed": "42",
        "--api-key": "demo-key",
    }
    assert "/opt/airflow" in resolved(environment(fake))["PYTHONPATH"]
    assert any(v.startswith("./devtools:/opt/airflow/devtools") for v in resolved(fake["volumes"]))


def test_trackier_connection_defaults_to_the_fake_server(services: dict[str, dict[str, Any]]) -> None:
    from airflow.models.connection import Connection

    uri = resolved(environment(services["airflow-scheduler"]))["AIRFLOW_CONN_TRACKIER_API"]
    conn = Connection(conn_id="trackier_api", uri=uri)
    fake_args = resolved(services["fake-trackier"]["command"])
    assert conn.conn_type == "http"
    assert conn.host == f"http://fake-trackier:{fake_args[fake_args.index('--port') + 1]}"
    assert conn.password == fake_args[fake_args.index("--api-key") + 1]
    assert conn.extra_dejson.get("page_size") == 1000


def test_trackier_connection_default_is_accepted_by_the_client_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    settings = pytest.importorskip("include.offer_sync.settings", reason="include.offer_sync.settings absent")
    from airflow.models.connection import Connection

    uri = resolved(environment(services["airflow-scheduler"]))["AIRFLOW_CONN_TRACKIER_API"]
    parsed = settings.TrackierSettings.from_connection(Connection(conn_id="trackier_api", uri=uri))
    assert parsed.base_url == "http://fake-trackier:8099"
    assert parsed.page_size == 1000


# --------------------------------------------------------------------------------------------------
# .env.example
# --------------------------------------------------------------------------------------------------


def test_every_compose_variable_is_documented(
    variables: dict[str, set[str]], env_example: dict[str, tuple[bool, str]]
) -> None:
    missing = set(variables) - set(env_example)
    assert not missing, f"variables used in docker-compose.yaml but not in .env.example: {sorted(missing)}"
    stale = set(env_example) - set(variables) - PASS_THROUGH
    assert not stale, f".env.example documents variables the compose files do not use: {sorted(stale)}"
    assert set(env_example) >= PASS_THROUGH
    assert "AIRFLOW_EXECUTOR" not in env_example, "the executor is switched by docker-compose.celery.yaml"


def test_env_example_active_values_are_the_compose_defaults(
    variables: dict[str, set[str]], env_example: dict[str, tuple[bool, str]]
) -> None:
    # So that `cp .env.example .env` changes nothing and the demo still runs.
    for key, (active, value) in env_example.items():
        if active and key not in PASS_THROUGH:
            assert value == compose_default(variables, key), f"{key}={value!r} differs from the compose default"


def test_env_example_documents_the_settings_the_issue_asks_for(env_example: dict[str, tuple[bool, str]]) -> None:
    assert set(env_example) >= TASK_ENV
    real = json.loads(env_example["AIRFLOW_CONN_TRACKIER_API"][1])
    assert real["conn_type"] == "http"
    assert real["host"] == "https://api.trackier.com"
    assert _PLACEHOLDER.fullmatch(real["password"])
    assert 1 <= real["extra"]["page_size"] <= 1000
    for key in ("AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY"):
        assert not env_example[key][0], f"{key} must stay commented out: each deployment generates its own"


def test_env_example_contains_no_secret(env_example: dict[str, tuple[bool, str]]) -> None:
    problems = [p for key, (_, value) in env_example.items() for p in secret_problems(key, value)]
    assert not problems, problems
    raw = ENV_EXAMPLE.read_text()
    assert not any(shape.search(_PLACEHOLDER.sub("", raw)) for shape in _SECRET_SHAPES)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("AIRFLOW_FERNET_KEY", "x0pEnRaNu8yN6Jq5ZPjPqhhVYLdlfL3KmfNCrEiH3Ew="),
        ("AIRFLOW_JWT_SECRET", "correct-horse"),
        ("SOME_SETTING", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
        ("AIRFLOW_CONN_TRACKIER_API", '{"conn_type": "http", "password": "live-key"}'),
        ("AIRFLOW_CONN_OFFERS_DB", "postgresql://offers:hunter22@db:5432/offers"),
    ],
)
def test_secret_detector_catches_real_looking_values(key: str, value: str) -> None:
    assert secret_problems(key, value), f"the .env.example check would miss {key}={value}"


# --------------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore
# --------------------------------------------------------------------------------------------------


def test_dockerfile_uses_the_pinned_airflow_version() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(froms) == 1, froms
    match = re.fullmatch(r"apache/airflow:(?P<version>[\w.]+)-python(?P<python>3\.\d+)", froms[0])
    assert match, froms[0]
    assert match.group("version") == requirement_pin("apache-airflow")
    assert match.group("python") == "3.11"


def test_dockerfile_installs_exactly_requirements_txt_constrained_by_the_lock() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    copies = [shlex.split(args) for keyword, args in instructions if keyword in ("COPY", "ADD")]
    requirement_copies = [c for c in copies if "requirements.txt" in c[:-1]]
    assert len(requirement_copies) == 1, requirement_copies
    copy = [token for token in requirement_copies[0] if not token.startswith("--")]
    assert copy[:-1] == ["requirements.txt", "requirements.lock"], "requirements.txt and its lock, nothing else"
    assert copy[-1].endswith("/"), "two files are copied into a folder"
    destination = copy[-1]

    runs = [args for keyword, args in instructions if keyword == "RUN"]
    installs = [r for r in runs if re.search(r"\b(pip|pip3|uv)\b.*\binstall\b", r)]
    assert len(installs) == 1, f"exactly one package install, found {installs}"
    tokens = shlex.split(installs[0])
    start = tokens.index("install") + 1
    requirement_files, constraint_files, packages, index = [], [], [], start
    while index < len(tokens):
        token = tokens[index]
        if token in ("-r", "--requirement"):
            requirement_files.append(tokens[index + 1])
            index += 2
            continue
        if token in ("-c", "--constraint"):
            constraint_files.append(tokens[index + 1])
            index += 2
            continue
        if token.startswith("-"):
            assert token in ("--no-cache-dir", "--upgrade-strategy=only-if-needed"), f"unexpected option {token}"
        else:
            packages.append(token)
        index += 1
    assert requirement_files == [destination + "requirements.txt"]
    assert constraint_files == [destination + "requirements.lock"], "every transitive dependency pinned"
    # The only extra argument allowed is the official recipe's pin of the image's own Airflow.
    assert packages == ["apache-airflow==${AIRFLOW_VERSION}"], packages


def test_every_file_the_dockerfile_copies_exists_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    sources = [
        src
        for keyword, args in instructions
        if keyword in ("COPY", "ADD")
        for src in [t for t in shlex.split(args) if not t.startswith("--")][:-1]
    ]
    assert "requirements.lock" in sources
    for source in sources:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
        assert not dockerignore_excludes(patterns, source.rstrip("/")), f".dockerignore drops {source}"


def test_dockerfile_makes_include_importable() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    envs = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert "PYTHONPATH=/opt/airflow" in envs
    copied = {shlex.split(args)[-2] for keyword, args in instructions if keyword == "COPY"}
    assert {"include/", "dags/", "plugins/"} <= copied


def test_dockerignore_keeps_what_the_build_needs_and_drops_secrets() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    for needed in (
        "requirements.txt",
        "requirements.lock",
        "include",
        "include/offer_sync/__init__.py",
        "dags",
        "plugins",
    ):
        assert not dockerignore_excludes(patterns, needed), f".dockerignore drops {needed}"
    for private in (".env", ".git", ".venv", "logs", "config"):
        assert dockerignore_excludes(patterns, private), f".dockerignore lets {private} into the context"
    # The development harness (fake Trackier, demo, test runners) never ships in the image.
    for harness in ("devtools", "devtools/fake_trackier/server.py", "tests", "bench"):
        assert dockerignore_excludes(patterns, harness), f".dockerignore lets {harness} into the image"


def test_compose_image_tag_follows_the_airflow_pin(variables: dict[str, set[str]]) -> None:
    image = compose_default(variables, "AIRFLOW_IMAGE_NAME")
    assert image.endswith(":" + requirement_pin("apache-airflow")), image


# --------------------------------------------------------------------------------------------------
# The shell scripts inside the compose file
# --------------------------------------------------------------------------------------------------


def _script(service: dict[str, Any]) -> str:
    command = service["command"]
    return resolved(command[command.index("-c") + 1])


@pytest.mark.parametrize("name", ["airflow-init", "demo-trigger"])
def test_embedded_scripts_are_valid_bash(services: dict[str, dict[str, Any]], name: str, tmp_path: Path) -> None:
    script = tmp_path / f"{name}.sh"
    script.write_text(_script(services[name]))
    result = subprocess.run(["bash", "-n", str(script)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_init_script_creates_the_pool(services: dict[str, dict[str, Any]]) -> None:
    script = _script(services["airflow-init"])
    assert re.search(r"airflow pools set\s*\\?\s*trackier_api \"4\"", script), script


def _stub_airflow(tmp_path: Path, final_state: str) -> tuple[dict[str, str], Path]:
    """An `airflow` on PATH that answers the demo script's commands and records them."""
    calls = tmp_path / "calls.log"
    stub = tmp_path / "bin" / "airflow"
    stub.parent.mkdir()
    stub.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {shlex.quote(str(calls))}\n'
        'case "$1 $2" in\n'
        '  "dags details"|"dags unpause") exit 0 ;;\n'
        f'  "dags trigger") echo "$5" > {shlex.quote(str(tmp_path / "run_id"))}; exit 0 ;;\n'
        '  "dags list-runs")\n'
        f'    if [[ "$5" == {final_state} ]]; then cat {shlex.quote(str(tmp_path / "run_id"))}; fi; exit 0 ;;\n'
        "esac\n"
        "exit 2\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}"}
    return env, calls


@pytest.mark.parametrize(("final_state", "exit_code"), [("success", 0), ("failed", 1)])
def test_demo_trigger_script_reports_the_run_outcome(
    services: dict[str, dict[str, Any]], tmp_path: Path, final_state: str, exit_code: int
) -> None:
    env, calls = _stub_airflow(tmp_path, final_state)
    result = subprocess.run(
        ["bash", "-c", _script(services["demo-trigger"])],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert f"finished: {final_state}" in result.stdout
    log = calls.read_text().splitlines()
    assert log[0] == f"dags details {DAG_ID}"
    assert f"dags unpause {DAG_ID}" in log
    trigger = next(line for line in log if line.startswith("dags trigger"))
    assert trigger.startswith(f"dags trigger {DAG_ID} --run-id demo__")


# --------------------------------------------------------------------------------------------------
# `docker compose config -q`, where a client exists
# --------------------------------------------------------------------------------------------------


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], check=False, capture_output=True, text=True)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def _clean_env(variables: dict[str, set[str]]) -> dict[str, str]:
    """The test process's environment without anything the compose file would pick up."""
    return {key: value for key, value in os.environ.items() if key not in variables}


def _project(tmp_path: Path, env_text: str | None) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(COMPOSE_FILE, project / "docker-compose.yaml")
    shutil.copy(CELERY_FILE, project / "docker-compose.celery.yaml")
    shutil.copy(DOCKERFILE, project / "Dockerfile")
    if env_text is not None:
        (project / ".env").write_text(env_text)
    return project


#: Lines only in .env: no compose file names them, yet the Airflow containers must see them.
ENV_ONLY = {
    "OFFER_SYNC_WORK_MEM": "64MB",
    "AIRFLOW_CONN_SLACK_ALERTS": '{"conn_type": "slackwebhook", "password": "not-a-real-$path"}',
    "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
}


def _real_account_env(celery: bool = False) -> str:
    """.env.example with the real-account lines switched on, as a user would edit it."""
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        for key in ("AIRFLOW_CONN_TRACKIER_API", "AIRFLOW_CONN_OFFER_SYNC_WEBHOOK"):
            if line.startswith(f"# {key}="):
                line = line[2:]
        if celery and line.startswith("# COMPOSE_FILE="):
            line = line[2:].split()[0]
        lines.append(line)
    lines.append("AIRFLOW_JWT_SECRET='not-a-real-secret-$with-dollar'")
    lines.append("AIRFLOW__API__BASE_URL=https://airflow.example.com")
    lines.append("OFFER_SYNC_SCHEDULE='30 2 * * *'")
    lines += [f"{key}={value}" for key, value in ENV_ONLY.items()]
    return "\n".join(lines) + "\n"


def _compose(client: list[str], project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*client, *args], check=False, cwd=project, env=env, capture_output=True, text=True, timeout=120
    )


def _client_or_skip() -> list[str]:
    client = _compose_client()
    if client is None:
        pytest.skip(
            "no `docker compose` plugin or `docker-compose` client installed: `config` not run "
            "(the YAML-level checks in this module ran regardless)"
        )
    return client


@pytest.mark.parametrize("env_file", ["env-example", "real-account", "real-account-celery"])
def test_compose_config_with_docker_client(tmp_path: Path, variables: dict[str, set[str]], env_file: str) -> None:
    client = _client_or_skip()
    env_text = {
        "env-example": ENV_EXAMPLE.read_text(),
        "real-account": _real_account_env(),
        "real-account-celery": _real_account_env(celery=True),
    }[env_file]
    project = _project(tmp_path, env_text)
    env = _clean_env(variables)
    all_profiles = ["--profile", "demo", "--profile", "flower", "--profile", "debug"]
    for profiles in ([], all_profiles):
        result = _compose(client, project, env, *profiles, "config", "-q")
        assert result.returncode == 0, f"{' '.join(client)} config -q failed:\n{result.stderr}"
        assert "is not set" not in result.stderr, result.stderr

    # No -f: compose reads docker-compose.yaml, or COMPOSE_FILE from .env (the Celery switch).
    result = _compose(client, project, env, *all_profiles, "config")
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)["services"]
    scheduler_env = environment(rendered["airflow-scheduler"])
    assert scheduler_env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"
    assert scheduler_env["PYTHONPATH"] == "/opt/airflow"
    assert any("/opt/airflow/include" in str(v) for v in rendered["airflow-scheduler"]["volumes"])
    if env_file.startswith("real-account"):
        expected = parse_env_example(env_text)["AIRFLOW_CONN_TRACKIER_API"][1]
        assert json.loads(scheduler_env["AIRFLOW_CONN_TRACKIER_API"]) == json.loads(expected)
        assert json.loads(scheduler_env["AIRFLOW_CONN_OFFER_SYNC_WEBHOOK"])["conn_type"] == "http"
        # compose renders a literal $ as $$; either way the value reached the container unexpanded.
        assert scheduler_env["AIRFLOW__API_AUTH__JWT_SECRET"].replace("$$", "$") == "not-a-real-secret-$with-dollar"
        assert scheduler_env["AIRFLOW__API__BASE_URL"] == "https://airflow.example.com"
        assert scheduler_env["OFFER_SYNC_SCHEDULE"] == "30 2 * * *"
    else:
        assert "fake-trackier" in scheduler_env["AIRFLOW_CONN_TRACKIER_API"]
    if env_file == "real-account-celery":
        assert {"redis", "airflow-worker"} <= set(rendered)
        for name, service in rendered.items():
            if service.get("image", "").startswith("trackier-offer-sync-airflow") and name != "fake-trackier":
                service_env = environment(service)
                assert service_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
                assert service_env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0", name
    else:
        assert not {"redis", "airflow-worker", "flower"} & set(rendered)
        assert "AIRFLOW__CORE__EXECUTOR" not in scheduler_env  # Airflow's default: LocalExecutor


@pytest.mark.parametrize("celery", [False, True])
def test_env_only_variables_reach_every_airflow_service(
    tmp_path: Path, variables: dict[str, set[str]], celery: bool
) -> None:
    client = _client_or_skip()
    project = _project(tmp_path, _real_account_env(celery=celery))
    result = _compose(
        client,
        project,
        _clean_env(variables),
        "--profile",
        "demo",
        "--profile",
        "debug",
        "--profile",
        "flower",
        "config",
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)["services"]
    airflow_services = AIRFLOW_SERVICES | ({"airflow-worker", "flower"} if celery else set())
    assert airflow_services <= set(rendered)
    for name in airflow_services:
        service_env = environment(rendered[name])
        assert service_env["OFFER_SYNC_WORK_MEM"] == "64MB", name
        assert service_env["AIRFLOW__SCHEDULER__PARSING_PROCESSES"] == "1", name
        slack = json.loads(service_env["AIRFLOW_CONN_SLACK_ALERTS"].replace("$$", "$"))
        assert slack == {"conn_type": "slackwebhook", "password": "not-a-real-$path"}, name
    # The databases and the fake API get none of it (nor the keys in .env).
    for name in ("postgres", "offers-db", "fake-trackier", *(["redis"] if celery else [])):
        assert "OFFER_SYNC_WORK_MEM" not in environment(rendered[name]), name
        assert "AIRFLOW_CONN_TRACKIER_API" not in environment(rendered[name]), name


def test_compose_refuses_to_start_without_an_env_file(tmp_path: Path, variables: dict[str, set[str]]) -> None:
    # .env is every Airflow service's env_file: without it compose stops at once and names the file.
    client = _client_or_skip()
    project = _project(tmp_path, None)
    result = _compose(client, project, _clean_env(variables), "config", "-q")
    assert result.returncode != 0
    assert ".env" in result.stderr, result.stderr


# --------------------------------------------------------------------------------------------------
# docker-compose.celery.yaml: one switch for CeleryExecutor
# --------------------------------------------------------------------------------------------------


def test_celery_file_copies_the_common_block_exactly(compose: dict[str, Any], celery_compose: dict[str, Any]) -> None:
    # Compose cannot share anchors between files; the copy must not drift from the original.
    assert celery_compose["x-airflow-common"] == compose["x-airflow-common"]


def test_celery_file_switches_every_airflow_service_and_adds_broker_and_workers(
    compose: dict[str, Any], celery_compose: dict[str, Any]
) -> None:
    base, extra = compose["services"], celery_compose["services"]
    airflow_in_base = {
        n for n, s in base.items() if s.get("image") == compose["x-airflow-common"]["image"] and n != "fake-trackier"
    }
    assert airflow_in_base == AIRFLOW_SERVICES
    assert set(extra) == AIRFLOW_SERVICES | CELERY_SERVICES
    celery_env = celery_compose["x-celery-env"]
    assert celery_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert celery_env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert "@postgres/" in celery_env["AIRFLOW__CELERY__RESULT_BACKEND"]
    for name in AIRFLOW_SERVICES | {"airflow-worker", "flower"}:
        env = environment(extra[name])
        assert {k: env[k] for k in celery_env} == {k: str(v) for k, v in celery_env.items()}, name
    worker = extra["airflow-worker"]
    assert worker["command"] == "celery worker"
    assert "profiles" not in worker, "the workers start with the file, not with a second switch"
    assert "profiles" not in extra["redis"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert extra["airflow-init"]["depends_on"]["redis"]["condition"] == "service_healthy"
    # The worker carries the whole common environment (connections, secrets, settings).
    assert set(environment(worker)) >= set(environment(base["airflow-scheduler"])) | TASK_ENV
    assert extra["flower"]["profiles"] == ["flower"]


def _executor_check(services: dict[str, dict[str, Any]]) -> str:
    script = _script(services["airflow-init"])
    begin = script.index("# --- executor check")
    end = script.index("# --- end of executor check ---")
    return script[begin:end]


@pytest.mark.parametrize(
    ("env", "ok", "says"),
    [
        ({}, True, "Executor: LocalExecutor"),
        (
            {"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", "AIRFLOW__CELERY__BROKER_URL": "redis://:@redis:6379/0"},
            True,
            "Executor: CeleryExecutor (broker configured)",
        ),
        (
            {
                "AIRFLOW__CORE__EXECUTOR": "airflow.providers.celery.executors.celery_executor.CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": "redis://:@redis:6379/0",
            },
            True,
            "broker configured",
        ),
        # The mismatches that used to leave tasks queued forever or workers idle:
        ({"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"}, False, "no broker is configured"),
        ({"AIRFLOW__CELERY__BROKER_URL": "redis://:@redis:6379/0"}, False, "executor is LocalExecutor"),
        ({"AIRFLOW_EXECUTOR": "CeleryExecutor"}, False, "AIRFLOW_EXECUTOR=CeleryExecutor"),
        ({"AIRFLOW__CORE__EXECUTOR": "KubernetesExecutor"}, False, "not supported by this compose file"),
        # A leftover of the old .env.example that agrees with the executor is harmless.
        ({"AIRFLOW_EXECUTOR": "LocalExecutor"}, True, "Executor: LocalExecutor"),
    ],
)
def test_init_stops_when_executor_and_broker_disagree(
    services: dict[str, dict[str, Any]], env: dict[str, str], ok: bool, says: str
) -> None:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__CORE__", "AIRFLOW__CELERY__", "AIRFLOW_EXECUTOR"))
    }
    result = subprocess.run(
        ["bash", "-c", _executor_check(services)],
        check=False,
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=30,
    )
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    assert says in result.stdout
    if not ok:
        assert "docker-compose.celery.yaml" in result.stdout
