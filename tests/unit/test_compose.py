"""docker-compose.yml (the production shape) agrees with Riskmon's settings."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from riskmon.settings import ENV_PREFIX, REPO_ROOT, Settings
from riskmon.testing import stack_required

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _riskmon_env(compose: dict[str, Any]) -> dict[str, str]:
    """Every RISKMON_* variable of every service; services that share one must agree."""
    out: dict[str, str] = {}
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            if key.startswith(ENV_PREFIX):
                assert out.get(key, value) == value, f"{name} sets {key} differently"
                out[key] = value
    return out


def _is_settings_field(var: str) -> bool:
    model: type[BaseModel] = Settings
    parts = var[len(ENV_PREFIX) :].lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if i < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def _listener_port(listeners: str, name: str) -> int:
    for listener in listeners.split(","):
        if listener.startswith(name + "://"):
            return int(listener.rsplit(":", 1)[1])
    raise AssertionError(f"no {name} listener in {listeners!r}")


def test_compose_has_kafka_redis_worker_and_a_topics_job(compose: dict[str, Any]) -> None:
    assert {"kafka", "redis", "worker", "topics"} <= set(compose["services"])


def test_kafka_runs_the_official_image_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    env = _env(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(env["KAFKA_NODE_ID"] + "@kafka:")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    data_dir = env["KAFKA_LOG_DIRS"]
    assert any(str(v).endswith(":" + data_dir) for v in kafka.get("volumes", []))


def test_kafka_redis_and_worker_have_healthchecks(compose: dict[str, Any]) -> None:
    for name in ("kafka", "redis", "worker"):
        check = compose["services"][name].get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name


def test_redis_persists_with_aof_on_a_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = _command(redis)
    assert command[command.index("--appendonly") + 1] == "yes"
    volumes = [str(v) for v in redis.get("volumes", [])]
    named = {v.split(":", 1)[0] for v in volumes if v.endswith(":/data")}
    assert named and named <= set(compose.get("volumes") or {})


def test_worker_scales_out_no_container_name_no_fixed_host_port(
    compose: dict[str, Any],
) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker.get("build")
    assert _command(worker) == ["riskmon", "worker"]


def test_worker_waits_for_healthy_kafka_and_redis_and_the_topics_job(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    depends = services["worker"]["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["topics"]["condition"] == "service_completed_successfully"
    assert _command(services["topics"])[:2] == ["riskmon", "topics"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_every_riskmon_variable_is_a_settings_field(compose: dict[str, Any]) -> None:
    env = _riskmon_env(compose)
    assert env, "the Riskmon services get their settings from RISKMON_* variables"
    unknown = sorted(var for var in env if not _is_settings_field(var))
    assert not unknown, f"not Settings fields: {unknown}"
    Settings.load(env=env, config_file=None)  # and they validate


def test_dockerfile_riskmon_variables_are_settings_fields() -> None:
    found = re.findall(r"\b(RISKMON_[A-Z0-9_]+)=", DOCKERFILE.read_text(encoding="utf-8"))
    assert found
    assert [var for var in found if not _is_settings_field(var)] == []


def test_settings_from_compose_point_at_the_kafka_and_redis_services(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    s = Settings.load(env=_riskmon_env(compose), config_file=None)
    assert s.env == "prod"
    kafka_env = _env(services["kafka"])
    assert s.kafka.host == "kafka"
    assert s.kafka.port == _listener_port(kafka_env["KAFKA_LISTENERS"], "PLAINTEXT")
    assert f"PLAINTEXT://{s.kafka.bootstrap}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    redis_cmd = _command(services["redis"])
    redis_port = int(redis_cmd[redis_cmd.index("--port") + 1]) if "--port" in redis_cmd else 6379
    assert s.redis.host == "redis"
    assert s.redis.port == redis_port
    assert str(s.worker.web_port) in " ".join(map(str, services["worker"]["healthcheck"]["test"]))


def _compose_command() -> list[str] | None:
    """A compose that reads files here: the docker CLI's plugin, or the standalone
    ``docker-compose`` (Debian's package, which ``.ci/run`` installs); neither needs a
    Docker engine to check a file."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_accepts_the_file() -> None:
    """``docker compose config`` takes the file as it is (under CI=true, where
    ``.ci/run`` installs a compose, a missing one fails the test)."""
    compose = _compose_command()
    if compose is None:
        message = (
            "no docker compose plugin nor docker-compose here (apt-get install docker-compose)"
        )
        if stack_required():
            pytest.fail(message + "; required under CI=true")
        pytest.skip(message)
    done = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(COMPOSE_FILE).parent,
    )
    assert done.returncode == 0, done.stderr


def test_a_stopping_worker_meets_its_own_deadline_before_compose_kills_it(
    compose: dict[str, Any],
) -> None:
    """Compose kills a container ``stop_grace_period`` after SIGTERM; the worker's own
    deadline (``worker.stop_timeout_s``) comes first, so it exits saying why."""
    grace = compose["services"]["worker"]["stop_grace_period"]
    assert grace.endswith("s")
    assert Settings.load(env={}, config_file=None).worker.stop_timeout_s < float(grace[:-1])
