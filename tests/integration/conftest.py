"""Fixtures for tests against the real local stack (Kafka broker and Redis).

The stack is started by ``riskmon stack up`` (``scripts/test`` does it). Under CI a
missing broker or Redis fails the run; on a developer machine it skips.
Every test gets its own topics, consumer group and Redis key prefix, so tests never
see each other's messages.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from riskmon.settings import Settings
from riskmon.stack import LocalRedisCluster
from riskmon.testing import (
    cluster_ports,
    isolated_settings,
    require_stack,
    stack_settings,
    stop_process,
)

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Settings:
    """Settings of the running stack; fails (CI) or skips (dev) when it is not up."""
    settings = stack_settings()
    require_stack(settings)
    return settings


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """A three-node Redis Cluster of the tests' own (``redis-server`` from the stack)."""
    cluster = LocalRedisCluster.start(tmp_path_factory.mktemp("redis-cluster"), cluster_ports(3))
    yield cluster
    cluster.stop()


@dataclass
class Isolated:
    settings: Settings
    config_file: Path
    tmp: Path


@pytest.fixture
def isolated(stack: Settings, tmp_path: Path) -> Isolated:
    """Settings with topics, group, web port and Redis prefix of this test's own."""
    tag = "t" + uuid.uuid4().hex[:10]
    settings, cfg = isolated_settings(stack, tmp_path, tag, {"batch_within_s": 0.05})
    return Isolated(settings, cfg, tmp_path)


@pytest.fixture(params=["server", "cluster"])
def isolated_any_redis(request: pytest.FixtureRequest, stack: Settings, tmp_path: Path) -> Isolated:
    """:func:`isolated`, once on the stack's Redis server and once on the tests' Redis
    Cluster (``redis.cluster: true``, the address of one node)."""
    base = stack
    if request.param == "cluster":
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        redis = stack.redis.model_copy(
            update={"host": cluster.host, "port": cluster.ports[0], "cluster": True}
        )
        base = stack.model_copy(update={"redis": redis})
    tag = "t" + uuid.uuid4().hex[:10]
    settings, cfg = isolated_settings(base, tmp_path, tag, {"batch_within_s": 0.05})
    assert settings.redis.cluster == (request.param == "cluster")
    return Isolated(settings, cfg, tmp_path)


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log: Path
    settings: Settings

    def health(self) -> dict[str, Any] | None:
        """What /health says (``ok`` true or false), or ``None`` if it does not answer."""
        url = f"http://127.0.0.1:{self.settings.worker.web_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                data: dict[str, Any] = orjson.loads(resp.read())
                return data
        except urllib.error.HTTPError as exc:  # 503: not ok, and why
            with exc:
                answer: dict[str, Any] = orjson.loads(exc.read())
                return answer
        except OSError:
            return None

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.settings.worker.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def start_worker() -> Iterator[Callable[[Isolated], WorkerProcess]]:
    """Start ``riskmon worker`` as its own process; wait until /health says ok (or, with
    ``ok=False``, until it answers at all)."""
    started: list[WorkerProcess] = []

    def start(iso: Isolated, name: str = "worker", ok: bool = True) -> WorkerProcess:
        log = iso.tmp / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RISKMON_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "riskmon.cli", "--config", str(iso.config_file), "worker"],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        handle = WorkerProcess(proc, log, iso.settings)
        started.append(handle)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if not handle.alive():
                raise AssertionError(f"worker exited early:\n{log.read_text()[-4000:]}")
            health = handle.health()
            if health is not None and (health.get("ok") or not ok):
                return handle
            time.sleep(0.3)
        raise AssertionError(f"worker did not answer /health:\n{log.read_text()[-4000:]}")

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture
async def producer(stack: Settings) -> AsyncIterator[AIOKafkaProducer]:
    prod = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap, linger_ms=5)
    await prod.start()
    try:
        yield prod
    finally:
        await prod.stop()


async def collect(
    settings: Settings,
    topics: list[str],
    until: Callable[[dict[str, list[dict[str, Any]]]], bool],
    timeout: float = 120.0,
    settle: float = 3.0,
) -> dict[str, list[dict[str, Any]]]:
    """Read ``topics`` from the beginning until ``until(seen)`` holds, then ``settle``
    seconds more (to catch anything extra), or until ``timeout``."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    seen: dict[str, list[dict[str, Any]]] = {t: [] for t in topics}
    try:
        deadline = time.monotonic() + timeout
        done_at: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                seen[tp.topic].extend(orjson.loads(r.value) for r in records)
            if done_at is None and until(seen):
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at >= settle:
                break
    finally:
        await consumer.stop()
    return seen


@pytest.fixture
def read_topics() -> Callable[..., Any]:
    return collect
