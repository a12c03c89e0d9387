"""Test support: the settings of the local stack, and a gate for tests that need it.

Tests marked ``integration`` need the broker and Redis that ``riskmon stack up`` starts.
:func:`require_stack` skips such a test when the stack does not answer, except where the
stack is required (``RISKMON_REQUIRE_STACK=1`` or ``CI=true``): there it fails, so a CI
run without a broker cannot pass by skipping everything.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskmon.settings import Settings
from riskmon.stack import kafka_answers, port_free, redis_answers, run_coro
from riskmon.topics import ensure_topics

_answered: dict[tuple[str, str], tuple[bool, bool]] = {}


#: Variables that steer the tests, not Riskmon: never handed to :class:`Settings`.
TEST_ONLY_VARIABLES = frozenset({"RISKMON_REQUIRE_STACK"})


def stack_settings() -> Settings:
    """The settings the tests use: defaults < config file < ``RISKMON_*`` variables."""
    env = {k: v for k, v in os.environ.items() if k not in TEST_ONLY_VARIABLES}
    return Settings.load(env=env)


def stack_required() -> bool:
    """Whether a missing stack is a failure rather than a reason to skip."""
    return os.environ.get("RISKMON_REQUIRE_STACK") == "1" or os.environ.get("CI") == "true"


def stack_answers(settings: Settings) -> tuple[bool, bool]:
    """(Kafka answers, Redis answers); a positive answer is remembered for the session."""
    key = (settings.kafka.bootstrap, settings.redis.url)
    if _answered.get(key) == (True, True):
        return True, True
    result = (run_coro(kafka_answers(settings, timeout_s=5.0)), redis_answers(settings))
    _answered[key] = result
    return result


def require_stack(settings: Settings) -> None:
    """Skip (or, where the stack is required, fail) unless Kafka and Redis both answer."""
    kafka_ok, redis_ok = stack_answers(settings)
    if kafka_ok and redis_ok:
        return
    missing = []
    if not kafka_ok:
        missing.append(f"Kafka at {settings.kafka.bootstrap}")
    if not redis_ok:
        missing.append(f"Redis at {settings.redis.host}:{settings.redis.port}")
    message = " and ".join(missing) + " not answering; start them with `riskmon stack up`"
    if stack_required():
        pytest.fail(message + " (the stack is required: RISKMON_REQUIRE_STACK=1 or CI=true)")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port nobody listens on right now (for a worker's web server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster_ports(n: int) -> list[int]:
    """``n`` free ports for the nodes of a local Redis Cluster: each node also listens on
    its port + 10000 (the cluster bus), which must be free and valid too."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port < 55000 and port not in ports and port_free("127.0.0.1", port + 10000):
            ports.append(port)
    return ports


def isolated_settings(
    stack: Settings, where: Path, tag: str, worker: Mapping[str, Any] | None = None
) -> tuple[Settings, Path]:
    """Settings of the running stack with topics, consumer group, web port and Redis key
    prefix named after ``tag``, so runs never see each other's messages or state.

    They are written to ``where/riskmon.yaml`` (what a worker process is started with),
    loaded from there, and their topics are created. ``worker`` adds worker settings.
    """
    topics = {
        name: f"{tag}.{getattr(stack.topics, name)}" for name in type(stack.topics).model_fields
    }
    overrides: dict[str, Any] = {
        "env": "dev",
        "kafka": stack.kafka.model_dump(),
        "redis": {**stack.redis.model_dump(), "key_prefix": f"{tag}:"},
        "topics": topics,
        "worker": {
            **(worker or {}),
            "app_id": f"riskmon-{tag}",
            "web_port": free_port(),
            "data_dir": str(where / "worker-data"),
        },
    }
    where.mkdir(parents=True, exist_ok=True)
    cfg = where / "riskmon.yaml"
    cfg.write_text(yaml.safe_dump(overrides))
    settings = Settings.load(env={}, config_file=cfg)
    asyncio.run(ensure_topics(settings))
    return settings, cfg


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a process started for a test or a bench; kill it after 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
