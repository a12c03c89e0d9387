"""Where simulated traffic goes: JSON Lines files, or the input topics on Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import orjson

from riskmon.logs import get_logger

log = get_logger("riskmon.sim")


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write one JSON object per line; returns the number of lines."""
    count = 0
    with open(path, "wb") as fh:
        chunk: list[bytes] = []
        for row in rows:
            chunk.append(orjson.dumps(row))
            count += 1
            if len(chunk) >= 4096:
                fh.write(b"\n".join(chunk) + b"\n")
                chunk.clear()
        if chunk:
            fh.write(b"\n".join(chunk) + b"\n")
    return count


def topic_for(event_type: str, topics: Any) -> str:
    """The input topic of an event type, from ``settings.topics``.

    >>> from riskmon.settings import TopicSettings
    >>> topic_for("device", TopicSettings())
    'device.events'
    """
    return {
        "application": topics.applications,
        "device": topics.devices,
        "transaction": topics.transactions,
        "label": topics.labels,
    }[event_type]


class Producer(Protocol):
    async def send(self, topic: str, value: bytes, key: bytes) -> Awaitable[Any]: ...


async def produce(
    events: Iterable[Mapping[str, Any]],
    producer: Producer,
    topics: Any,
    *,
    rate: float,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Send events in order at about ``rate`` events/s (``rate <= 0``: as fast as possible).

    Key: the ``user_id`` in UTF-8; value: the event as JSON. Returns how many were sent
    once every send is acknowledged.
    """
    sent = 0
    pending: list[Awaitable[Any]] = []
    started = clock()
    for event in events:
        if limit is not None and sent >= limit:
            break
        if rate > 0:
            ahead = started + sent / rate - clock()
            if ahead > 0.002:
                await sleep(ahead)
        topic = topic_for(event["event_type"], topics)
        pending.append(
            await producer.send(
                topic, value=orjson.dumps(event), key=str(event["user_id"]).encode("utf-8")
            )
        )
        sent += 1
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending.clear()
        if progress is not None:
            progress(1)
    if pending:
        await asyncio.gather(*pending)
    return sent


async def produce_to_kafka(
    events: list[dict[str, Any]], settings: Any, *, rate: float, limit: int | None
) -> int:
    """Produce to the input topics of ``settings`` with aiokafka, progress on stderr.

    Events dated later than now have not happened yet: they are left out (counted in
    the log), as workers refuse event times ahead of their clock (``ts_in_future``).
    """
    from aiokafka import AIOKafkaProducer
    from tqdm import tqdm

    from riskmon.contract import parse_ts

    now = time.time()
    due = [e for e in events if parse_ts(e["ts"]) <= now]
    if len(due) < len(events):
        log.info("sim.kafka.future_left_out", events=len(events) - len(due))
    events = due
    total = len(events) if limit is None else min(limit, len(events))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=5)
    await producer.start()
    log.info("sim.kafka.start", bootstrap=settings.kafka.bootstrap, events=total, rate=rate)
    try:
        with tqdm(total=total, unit="ev", desc="simulate", mininterval=0.5) as bar:
            sent = await produce(
                events, producer, settings.topics, rate=rate, limit=limit, progress=bar.update
            )
        await producer.flush()
    finally:
        await producer.stop()
    log.info("sim.kafka.done", sent=sent)
    return sent
