"""Riskmon's Kafka topics, created idempotently.

:func:`ensure_topics` creates the topics that are missing (``settings.topics.all`` unless
names are given) with ``settings.kafka.partitions`` partitions and leaves existing ones
alone. ``riskmon stack up`` calls it, so does the worker at start, and so does the
one-shot ``topics`` service of docker-compose.yml through ``riskmon topics``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from riskmon.logs import get_logger
from riskmon.settings import Settings

log = get_logger("riskmon.topics")

CREATED = "created"
EXISTS = "exists"
_TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno


class TopicsError(RuntimeError):
    """The broker could not be reached in time, or refused to create a topic."""


@contextlib.contextmanager
def quiet_kafka_client() -> Iterator[None]:
    """Silence aiokafka's own error lines (e.g. while a broker is still starting)."""
    logger = logging.getLogger("aiokafka")
    before = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(before)


async def connect_admin(
    settings: Settings, *, timeout_s: float = 30.0, request_timeout_ms: int = 10_000
) -> AIOKafkaAdminClient:
    """An admin client connected to ``settings.kafka``; retries until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka.bootstrap,
            client_id="riskmon-admin",
            request_timeout_ms=request_timeout_ms,
        )
        try:
            with quiet_kafka_client():
                await admin.start()
            return admin
        except (KafkaConnectionError, OSError) as exc:
            await admin.close()
            if time.monotonic() >= deadline:
                raise TopicsError(
                    f"Kafka at {settings.kafka.bootstrap} did not answer within {timeout_s:.0f} s"
                    f" ({exc}); is it running? (`riskmon stack up`)"
                ) from exc
            await asyncio.sleep(1.0)


async def topic_partitions(admin: AIOKafkaAdminClient, names: Iterable[str]) -> dict[str, int]:
    """Name -> partition count, for those of ``names`` that exist on the broker."""
    wanted = list(names)
    if not wanted:
        return {}
    out: dict[str, int] = {}
    for topic in await admin.describe_topics(wanted):
        if topic["error_code"] == 0:
            out[topic["topic"]] = len(topic["partitions"])
    return out


def copartition_problem(counts: dict[str, int]) -> str | None:
    """What is wrong with the partitions of the input topics (``counts``: name ->
    partitions), or ``None``. A user's events and verdicts, keyed by ``user_id``, meet in
    one worker only when every input topic has as many partitions: partition *k* of each
    goes to the same worker, and the key picks the same *k* in each.

    >>> copartition_problem({"loan.applications": 4, "risk.labels": 4})
    >>> copartition_problem({"loan.applications": 8, "risk.labels": 4})
    'input topics with different partition counts: loan.applications 8, risk.labels 4'
    """
    if len(set(counts.values())) <= 1:
        return None
    listed = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    return f"input topics with different partition counts: {listed}"


async def input_partitions(settings: Settings, *, timeout_s: float = 30.0) -> dict[str, int]:
    """Name -> partition count of the input topics that exist on the broker."""
    admin = await connect_admin(settings, timeout_s=timeout_s)
    try:
        return await topic_partitions(admin, settings.topics.inputs)
    finally:
        await admin.close()


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: list[str], partitions: int, deadline: float
) -> None:
    """Block until every partition of the new topics has a leader: producers may then go."""
    while True:
        ready = True
        for topic in await admin.describe_topics(names):
            parts = topic["partitions"]
            if (
                topic["error_code"] != 0
                or len(parts) < partitions
                or any(p["error_code"] != 0 or p["leader"] < 0 for p in parts)
            ):
                ready = False
                break
        if ready:
            return
        if time.monotonic() >= deadline:
            raise TopicsError(f"topics {names} have no leader yet")
        await asyncio.sleep(0.2)


async def ensure_topics(
    settings: Settings,
    names: Iterable[str] | None = None,
    *,
    partitions: int | None = None,
    timeout_s: float = 30.0,
) -> dict[str, str]:
    """Create the missing topics among ``names`` (default: all of Riskmon's).

    New topics get ``partitions`` partitions (default ``settings.kafka.partitions``) and
    ``settings.kafka.replication_factor`` replicas. Existing topics are left as they are
    (a different partition count is logged, not changed). Returns name -> ``"created"``
    or ``"exists"``. Waits for the broker up to ``timeout_s``.
    """
    wanted = list(dict.fromkeys(settings.topics.all if names is None else names))
    count = partitions or settings.kafka.partitions
    deadline = time.monotonic() + timeout_s
    admin = await connect_admin(settings, timeout_s=timeout_s)
    try:
        existing = await topic_partitions(admin, wanted)
        result = {name: EXISTS for name in wanted if name in existing}
        for name, have in existing.items():
            if have != count:
                log.warning("topic_partitions_differ", topic=name, partitions=have, wanted=count)
        missing = [name for name in wanted if name not in existing]
        if missing:
            rf = settings.kafka.replication_factor
            response: Any = await admin.create_topics(
                [NewTopic(name, count, rf) for name in missing],
                timeout_ms=int(max(1.0, deadline - time.monotonic()) * 1000),
            )
            errors = []
            for entry in response.topic_errors:
                name, code = entry[0], entry[1]
                message = entry[2] if len(entry) > 2 else None
                if code == 0:
                    result[name] = CREATED
                elif code == _TOPIC_ALREADY_EXISTS:
                    result[name] = EXISTS
                else:
                    errors.append(f"{name}: error {code} {message or ''}".strip())
            if errors:
                raise TopicsError("could not create topics: " + "; ".join(errors))
            await _wait_for_leaders(admin, missing, count, deadline)
        for name in wanted:
            if result.get(name) == CREATED:
                log.info("topic_created", topic=name, partitions=count)
        return {name: result[name] for name in wanted}
    except KafkaError as exc:
        raise TopicsError(f"Kafka at {settings.kafka.bootstrap}: {exc!r}") from exc
    finally:
        await admin.close()


async def delete_topics(
    settings: Settings, names: Iterable[str], *, timeout_s: float = 30.0
) -> None:
    """Delete topics (those that do not exist are ignored). Meant for tests and tools."""
    wanted = list(names)
    if not wanted:
        return
    admin = await connect_admin(settings, timeout_s=timeout_s)
    try:
        existing = await topic_partitions(admin, wanted)
        if existing:
            await admin.delete_topics(list(existing), timeout_ms=int(timeout_s * 1000))
    finally:
        await admin.close()


async def produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Send ``(key, value)`` records to ``topic`` and wait until the broker has them all
    (``acks=all``): what the command-line tools publish (rules, labels)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all")
    try:  # stopped also when it cannot start (a broker that does not answer)
        with quiet_kafka_client():  # no error line of its own per failed connection
            await producer.start()
        sent = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def read_all(settings: Settings, topic: str, timeout_s: float = 30.0) -> list[bytes]:
    """Every record value on ``topic``, from the start of each partition to its end as
    of now (no consumer group); raises :class:`TimeoutError` when the broker does not
    give them within ``timeout_s``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    admin = await connect_admin(settings, timeout_s=timeout_s)
    try:
        count = (await topic_partitions(admin, [topic])).get(topic, 0)
    finally:
        await admin.close()
    if not count:
        return []
    tps = [TopicPartition(topic, p) for p in range(count)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, group_id=None)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        values: list[bytes] = []
        # a partition retention emptied starts where it ends; a compacted one may lack
        # its last offsets: each is read until the position reaches the end
        left = {tp for tp in tps if ends[tp] > starts[tp]}

        async def drain() -> None:
            while left:
                batch = await consumer.getmany(*left, timeout_ms=500)
                for records in batch.values():
                    values.extend(r.value for r in records if r.value is not None)
                for tp in list(left):
                    if await consumer.position(tp) >= ends[tp]:
                        left.discard(tp)

        await asyncio.wait_for(drain(), timeout_s)
        return values
    finally:
        await consumer.stop()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names", nargs="*", help="topics to create (default: all of Riskmon's topics)"
    )
    parser.add_argument(
        "--partitions", type=int, default=None, help="partitions (default: kafka.partitions)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the broker (default 60)"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        result = asyncio.run(
            ensure_topics(
                settings, args.names or None, partitions=args.partitions, timeout_s=args.timeout
            )
        )
    except TopicsError as exc:
        log.error("topics_failed", error=str(exc))
        return 1
    for name, state in result.items():
        print(f"{name}\t{state}")
    log.info(
        "topics_ready",
        created=sum(s == CREATED for s in result.values()),
        existing=sum(s == EXISTS for s in result.values()),
        partitions=args.partitions or settings.kafka.partitions,
    )
    return 0
