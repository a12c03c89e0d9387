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


def ended_by(events: list[dict[str, Any]], now: float) -> tuple[list[dict[str, Any]], float]:
    """``events``, moved back in time as one so that none is later than ``now``, and the
    seconds they were moved by (``0.0``: ``events`` themselves, unmoved).

    >>> from riskmon.contract import parse_ts
    >>> ev = [{"ts": "2026-11-01T00:00:00.000Z"}, {"ts": "2026-11-03T00:00:00.000Z"}]
    >>> moved, shift = ended_by(ev, parse_ts("2026-11-02T00:00:00Z"))
    >>> [e["ts"] for e in moved], shift
    (['2026-10-31T00:00:00.000Z', '2026-11-02T00:00:00.000Z'], 86400.0)
    >>> ended_by(ev, parse_ts("2026-12-01T00:00:00Z")) == (ev, 0.0)
    True
    """
    from riskmon.contract import format_ts, parse_ts

    last = max((parse_ts(e["ts"]) for e in events), default=now)
    if last <= now:
        return events, 0.0
    shift = last - now
    return [{**e, "ts": format_ts(parse_ts(e["ts"]) - shift)} for e in events], shift


async def produce_to_kafka(
    events: list[dict[str, Any]], settings: Any, *, rate: float, limit: int | None
) -> int:
    """Produce to the input topics of ``settings`` with aiokafka, progress on stderr.

    Workers refuse event times ahead of their clock (``ts_in_future``): when the
    simulated stream (its label tail included) runs past now, every event is moved back
    by the same span, so that the stream ends now (logged as ``sim.kafka.shifted``).
    """
    from aiokafka import AIOKafkaProducer
    from tqdm import tqdm

    events, shift = ended_by(events, time.time())
    if shift:
        log.info("sim.kafka.shifted", seconds=round(shift, 3), reason="the stream ran past now")
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
