"""``riskmon worker``: run one stream worker process.

Scale out by running more of them (same ``worker.app_id``: one consumer group) and by
adding partitions to the input topics.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from riskmon.logs import error_text, get_logger
from riskmon.settings import Settings

log = get_logger("riskmon.worker")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--web-port", type=int, help="port of /health and /metrics (default from settings)"
    )
    parser.add_argument(
        "--no-create-topics",
        action="store_true",
        help="do not create missing topics at start",
    )


def wait_for_redis(
    settings: Settings,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Whether Redis answers within ``worker.start_wait_s``, asking every 2 s.

    A worker needs Redis from its first step (the model checkpoint, then every batch):
    started without it, it waits; still without it, it exits with an error rather than
    start half-way, so that its supervisor restarts it and on-call sees why.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.cluster import RedisCluster
    from redis.retry import Retry

    r = settings.redis
    once: dict[str, Any] = {
        "socket_connect_timeout": 2,
        "socket_timeout": 2,
        "retry": Retry(NoBackoff(), 0),
    }
    deadline = clock() + settings.worker.start_wait_s
    while True:
        try:
            client: Any
            if r.cluster:  # reads the slot map from the node: fails if the cluster is down
                client = RedisCluster(host=r.host, port=r.port, **once)
            else:
                client = redis.Redis(host=r.host, port=r.port, db=r.db, **once)
            try:
                client.ping()
            finally:
                client.close()
            return True
        except Exception as exc:
            error = error_text(exc)
            if clock() >= deadline:
                log.error("redis_unreachable", redis=settings.redis.url, error=error)
                return False
            log.warning("waiting_for_redis", redis=settings.redis.url, error=error)
            sleep(2.0)


def exit_after(
    seconds: float, exit: Callable[[int], Any] = os._exit, signal_name: str = "SIGTERM"
) -> threading.Timer:
    """End the process with status 1 in ``seconds`` unless it has ended by then.

    A worker told to stop finishes its batch in hand and commits; while the broker is
    away, Faust waits for it without end. Past the deadline, the worker exits as if
    killed, which loses nothing: what it had not committed is decided again by the
    worker that takes its partitions.
    """

    def expire() -> None:
        log.error(
            "stop_timeout",
            signal=signal_name,
            seconds=seconds,
            note="the worker did not stop in time (broker or Redis away?); exiting; "
            "what it had not committed is decided again",
        )
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def _worker_class(base: type[Any]) -> type[Any]:
    """``faust.Worker`` with a deadline on stopping (:func:`exit_after`) from the first
    SIGTERM or SIGINT."""

    class Worker(base):  # type: ignore[misc, valid-type]
        stop_timeout_s: float = 25.0
        _deadline: threading.Timer | None = None

        def _arm(self, name: str) -> None:
            if self._deadline is None:
                self._deadline = exit_after(self.stop_timeout_s, signal_name=name)

        def _on_sigterm(self) -> None:
            self._arm("SIGTERM")
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            self._arm("SIGINT")
            super()._on_sigint()

    return Worker


def run(args: argparse.Namespace, settings: Settings) -> int:
    import faust

    from streams.app import create_app

    if args.web_port:
        settings = settings.model_copy(
            update={"worker": settings.worker.model_copy(update={"web_port": args.web_port})}
        )
    if not wait_for_redis(settings):
        return 1
    from riskmon.topics import TopicsError, copartition_problem, ensure_topics, input_partitions

    try:
        if not args.no_create_topics:
            asyncio.run(ensure_topics(settings))
        counts = asyncio.run(input_partitions(settings))
    except TopicsError as exc:  # the reason in one line, not a traceback
        log.error("kafka_unreachable", broker=settings.kafka.bootstrap, error=str(exc))
        return 1
    problem = copartition_problem(counts)
    if problem is not None:  # a user's events would be decided apart, on stale state
        log.error(
            "inputs_not_copartitioned",
            partitions=counts,
            error=problem,
            fix="give every input topic the same number of partitions "
            "(kafka-topics.sh --alter --partitions N on those with fewer)",
        )
        return 2
    app = create_app(settings)
    log.info(
        "worker_starting",
        broker=settings.kafka.bootstrap,
        redis=settings.redis.url,
        app_id=settings.worker.app_id,
        web_port=settings.worker.web_port,
    )
    worker = _worker_class(faust.Worker)(app, loglevel="WARN", quiet=True, override_logging=False)
    worker.stop_timeout_s = settings.worker.stop_timeout_s
    worker.execute_from_commandline()
    return 0  # pragma: no cover - execute_from_commandline exits the process
