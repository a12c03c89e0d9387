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


def test_the_stop_deadline_exits_with_status_1_and_says_why(capsys: Any) -> None:
    """Armed at a stop signal, the deadline ends the process with status 1 once it
    passes, after a ``stop_timeout`` log line naming the signal."""
    import threading

    from streams.worker import exit_after

    codes: list[int] = []
    done = threading.Event()

    def fake_exit(code: int) -> None:
        codes.append(code)
        done.set()

    exit_after(0.05, exit=fake_exit, signal_name="SIGTERM")
    assert done.wait(10), "the deadline never fired"
    assert codes == [1]
    out = capsys.readouterr()
    assert "stop_timeout" in out.out + out.err and "SIGTERM" in out.out + out.err


def test_the_worker_arms_one_deadline_at_the_first_stop_signal() -> None:
    """The worker class arms one deadline at the first stop signal and no more: a second
    signal (a supervisor repeating itself) keeps the first deadline. The handlers it
    wraps are Faust's own (``mode.Worker``'s)."""
    import faust

    from streams.worker import _worker_class

    assert callable(faust.Worker._on_sigterm) and callable(faust.Worker._on_sigint)

    calls: list[str] = []

    class Base:
        def _on_sigterm(self) -> None:
            calls.append("term")

        def _on_sigint(self) -> None:
            calls.append("int")

    worker = _worker_class(Base)()
    worker.stop_timeout_s = 3600.0
    worker._on_sigterm()
    first = worker._deadline
    worker._on_sigint()
    assert calls == ["term", "int"] and worker._deadline is first and first.is_alive()
    first.cancel()
