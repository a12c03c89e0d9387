"""A broker outage under a running worker, on a broker of the test's own: /health and
/metrics say so, and the worker decides again once the broker is back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from riskmon.settings import Settings
from riskmon.stack import StackPaths, stack_down, stack_up
from riskmon.testing import free_port, isolated_settings

from .test_worker_e2e import valid_events


@pytest.fixture
def private_stack(stack: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A Kafka broker and a Redis of this test's own (the stack's broker jars, ports and
    directories of its own), so the test can kill the broker."""
    settings = stack.model_copy(
        update={
            "stack_dir": str(tmp_path / "stack"),
            "kafka": stack.kafka.model_copy(
                update={"port": free_port(), "controller_port": free_port()}
            ),
            "redis": stack.redis.model_copy(update={"port": free_port()}),
        }
    )
    libs = StackPaths.of(settings).kafka_libs
    libs.parent.mkdir(parents=True)
    libs.symlink_to(StackPaths.of(stack).kafka_libs)
    stack_up(settings)
    try:
        yield settings
    finally:
        stack_down(settings, purge=True)


async def _send(settings: Settings, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=5)
    await producer.start()
    try:
        topic_of = {
            "application": settings.topics.applications,
            "device": settings.topics.devices,
            "transaction": settings.topics.transactions,
        }
        for e in events:
            await producer.send(topic_of[e["event_type"]], orjson.dumps(e), e["user_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()


def _until(what: Callable[[], Any], seconds: float, why: str, log: Path) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{why} within {seconds:.0f} s:\n{log.read_text()[-4000:]}")


def test_a_broker_outage_shows_in_health_and_metrics_and_the_worker_goes_on_after_it(
    private_stack: Settings, tmp_path: Path, start_worker
) -> None:
    """The worker decides 300 events and reports an input lag of 0. The broker is killed:
    within the grace (3 s here) plus a probe or two, /health says ok false, status
    broker_unreachable, with the error, and ``riskmon_broker_reachable`` is 0; the
    worker keeps running. The broker restarts: /health turns ok again, and 300 events
    sent after the outage are decided too."""
    tag = "t" + uuid.uuid4().hex[:10]
    worker = {"batch_within_s": 0.05, "broker_check_s": 1.0, "broker_grace_s": 3.0}
    where = tmp_path / "iso"
    settings, cfg = isolated_settings(private_stack, where, tag, worker)
    proc = start_worker(SimpleNamespace(settings=settings, config_file=cfg, tmp=where))
    events = valid_events(600, seed=11)

    def health() -> dict[str, Any]:
        return proc.health() or {}

    def lag_total() -> int | None:
        lag = health().get("input_lag")
        return None if lag is None else sum(lag.values())

    asyncio.run(_send(settings, events[:300]))
    _until(
        lambda: health().get("decisions", 0) >= 300 and lag_total() == 0,
        90,
        "300 decisions and no input lag",
        proc.log,
    )
    first = health()
    assert first["ok"] is True and first["broker_error"] is None
    assert "riskmon_broker_reachable 1.0" in proc.metrics()

    kafka_pid = int((StackPaths.of(private_stack).root / "kafka.pid").read_text())
    os.kill(kafka_pid, signal.SIGKILL)
    down = _until(
        lambda: (h := health()).get("status") == "broker_unreachable" and h,
        45,
        "/health saying broker_unreachable",
        proc.log,
    )
    assert down["ok"] is False and down["broker_error"], down
    assert "riskmon_broker_reachable 0.0" in proc.metrics()
    assert proc.alive()
    assert "broker_unanswered" in proc.log.read_text()

    stack_up(private_stack)  # the broker again, with its log dir as it was
    _until(lambda: health().get("ok") is True, 120, "/health ok after the outage", proc.log)
    asyncio.run(_send(settings, events[300:]))
    _until(
        lambda: health().get("decisions", 0) >= 600,
        120,
        "the events sent after the outage decided",
        proc.log,
    )
    assert proc.alive() and health()["decisions"] == 600, health()


def test_a_worker_told_to_stop_while_the_broker_is_away_exits_by_its_deadline(
    private_stack: Settings, tmp_path: Path, start_worker
) -> None:
    """Faust waits without end for a broker that is gone before it lets a worker stop; the
    worker exits with status 1 once ``worker.stop_timeout_s`` (5 s here) has passed since
    SIGTERM, and says so (``stop_timeout``)."""
    tag = "t" + uuid.uuid4().hex[:10]
    worker = {"batch_within_s": 0.05, "broker_check_s": 1.0, "stop_timeout_s": 5.0}
    where = tmp_path / "iso"
    settings, cfg = isolated_settings(private_stack, where, tag, worker)
    proc = start_worker(SimpleNamespace(settings=settings, config_file=cfg, tmp=where))
    asyncio.run(_send(settings, valid_events(30, seed=5)))
    _until(lambda: (proc.health() or {}).get("decisions", 0) >= 30, 90, "decisions", proc.log)
    kafka_pid = int((StackPaths.of(private_stack).root / "kafka.pid").read_text())
    os.kill(kafka_pid, signal.SIGKILL)
    _until(lambda: (proc.health() or {}).get("broker_error"), 30, "a probe missed", proc.log)
    proc.proc.send_signal(signal.SIGTERM)
    told = time.monotonic()
    try:
        code = proc.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        tail = proc.log.read_text()[-3000:]
        raise AssertionError(f"still running 60 s after SIGTERM:\n{tail}") from None
    assert code == 1 and "stop_timeout" in proc.log.read_text()
    assert time.monotonic() - told >= 5.0  # by its deadline, not before
