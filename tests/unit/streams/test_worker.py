"""Starting a worker: it waits for Redis, and exits with an error if Redis never comes."""

from __future__ import annotations

from typing import Any

import pytest

from riskmon.settings import Settings
from streams.worker import wait_for_redis


class Clock:
    """A fake clock that sleeping moves on."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def settings_at(port: int, wait_s: float) -> Settings:
    s = Settings.load(config_file=None)
    return s.model_copy(
        update={
            "redis": s.redis.model_copy(update={"host": "127.0.0.1", "port": port}),
            "worker": s.worker.model_copy(update={"start_wait_s": wait_s}),
        }
    )


def test_a_worker_gives_up_on_redis_after_its_start_wait(monkeypatch: Any) -> None:
    """Nothing answers on the port: the worker asks every 2 s until ``start_wait_s`` has
    passed, then reports that it cannot start (its command exits 1)."""
    clock = Clock()
    asked: list[float] = []

    def refuse(self: Any) -> None:
        asked.append(clock.now)
        raise ConnectionRefusedError("refused (test)")

    monkeypatch.setattr("redis.Redis.ping", refuse)
    assert wait_for_redis(settings_at(1, 10.0), clock=clock, sleep=clock.sleep) is False
    assert asked == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


@pytest.mark.parametrize("answers_after", [0, 3])
def test_a_worker_starts_once_redis_answers(monkeypatch: Any, answers_after: int) -> None:
    """Redis answering at once, or after a few tries within the wait: the worker starts."""
    clock = Clock()
    tries: list[int] = []

    def ping(self: Any) -> bool:
        tries.append(1)
        if len(tries) <= answers_after:
            raise ConnectionRefusedError("refused (test)")
        return True

    monkeypatch.setattr("redis.Redis.ping", ping)
    assert wait_for_redis(settings_at(1, 60.0), clock=clock, sleep=clock.sleep) is True
    assert len(tries) == answers_after + 1


async def test_a_failing_batch_shows_in_the_metrics_until_it_succeeds(monkeypatch: Any) -> None:
    """Each failed attempt counts in ``riskmon_batch_failures_total`` and sets
    ``riskmon_failing`` (what the shipped alert watches); the retry that succeeds clears
    it."""
    from riskmon import metrics
    from streams import app as app_module

    class FlakyShell:
        def __init__(self) -> None:
            self.calls = 0
            self.stats = type("Stats", (), {"last_error": None})()

        async def handle(self, messages: list[Any]) -> None:
            self.calls += 1
            assert metrics.FAILING._value.get() == (1.0 if self.calls > 1 else 0.0)
            if self.calls <= 2:
                raise ConnectionError("redis down (test)")

    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr(app_module.asyncio, "sleep", no_wait)
    metrics.FAILING.set(0)
    before = metrics.BATCH_FAILURES._value.get()
    shell = FlakyShell()
    await app_module._handle_until_done(shell, [])  # type: ignore[arg-type]
    assert shell.calls == 3
    assert metrics.BATCH_FAILURES._value.get() - before == 2
    assert metrics.FAILING._value.get() == 0.0
    assert shell.stats.last_error is None
