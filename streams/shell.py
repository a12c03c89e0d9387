"""The stream shell: validation, dead letters, calling the core, producing results.

It knows about bytes, topics and offsets; the core knows about events. Nothing here
decides anything about risk.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from riskmon import metrics
from riskmon.contract import Contract, InvalidMessage
from riskmon.core import Core, Outputs
from riskmon.deadletter import dead_letter
from riskmon.logs import get_logger
from riskmon.settings import Settings

log = get_logger("riskmon.shell")

#: (topic, partition, offset, key, value) of one consumed message
Message = tuple[str, int | None, int | None, bytes | None, bytes | None]
Sender = Callable[[str, bytes | None, bytes], Awaitable[None]]


async def _no_sender(topic: str, key: bytes | None, value: bytes) -> None:
    raise RuntimeError("shell has no sender: attach one before handling messages")


@dataclass
class Stats:
    started: float = field(default_factory=time.time)
    batches: int = 0
    events: int = 0
    deadletters: int = 0
    last_batch_at: float | None = None
    last_error: str | None = None


class Shell:
    def __init__(self, settings: Settings, contract: Contract, core: Core) -> None:
        self.settings = settings
        self.contract = contract
        self.core = core
        self.sender: Sender = _no_sender
        self.stats = Stats()
        self._expected = settings.topics.inputs

    @classmethod
    def create(cls, settings: Settings) -> Shell:
        return cls(settings, Contract.load(settings.contract_dir), Core(settings))

    async def start(self) -> None:
        log.info("shell_started", inputs=list(self._expected), app_id=self.settings.worker.app_id)

    async def stop(self) -> None:
        log.info("shell_stopped", events=self.stats.events, deadletters=self.stats.deadletters)

    def validate(self, messages: list[Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Split a batch into valid events and dead-letter records."""
        valid: list[dict[str, Any]] = []
        dead: list[dict[str, Any]] = []
        limit = self.settings.worker.max_message_bytes
        now = time.time()
        for topic, partition, offset, key, value in messages:
            try:
                valid.append(
                    self.contract.parse(value, self._expected.get(topic), max_bytes=limit)  # type: ignore[arg-type]
                )
            except InvalidMessage as exc:
                dead.append(
                    dead_letter(
                        value,
                        code=exc.code,
                        reason=exc.reason,
                        topic=topic,
                        partition=partition,
                        offset=offset,
                        key=key,
                        event_id=exc.event_id,
                        now=now,
                    )
                )
                metrics.DEAD_LETTERS.labels(topic=topic, code=exc.code).inc()
                log.warning(
                    "dead_letter",
                    code=exc.code,
                    reason=exc.reason,
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    event_id=exc.event_id,
                )
        return valid, dead

    async def handle(self, messages: list[Message]) -> Outputs:
        """Process one micro-batch end to end. Never raises on bad input."""
        started = time.perf_counter()
        valid, dead = self.validate(messages)
        out = self.core.process(valid)
        out.deadletters[:0] = dead
        await self.publish(out)
        elapsed = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.events += len(valid)
        self.stats.deadletters += len(out.deadletters)
        self.stats.last_batch_at = time.time()
        metrics.BATCH_SECONDS.observe(elapsed)
        metrics.BATCH_SIZE.observe(len(messages))
        metrics.LAST_BATCH.set(self.stats.last_batch_at)
        for event in valid:
            metrics.EVENTS.labels(event_type=event["event_type"]).inc()
        log.debug("batch", messages=len(messages), valid=len(valid), dead=len(dead), s=elapsed)
        return out

    async def publish(self, out: Outputs) -> None:
        topics = self.settings.topics
        send = self.sender
        for rec in out.deadletters:
            key = rec.get("key")
            await send(topics.deadletter, key.encode() if key else None, orjson.dumps(rec))
        for adj in out.adjustments:
            await send(topics.adjustments, adj["user_id"].encode(), orjson.dumps(adj))
            metrics.ADJUSTMENTS.labels(action=adj["action"]).inc()
        for alert in out.alerts:
            await send(topics.alerts, alert["user_id"].encode(), orjson.dumps(alert))
            metrics.ALERTS.labels(severity=alert["severity"]).inc()
        for op in out.ops:
            await send(topics.ops, None, orjson.dumps(op))
        for dec in out.decisions:
            await send(topics.decisions, dec["user_id"].encode(), orjson.dumps(dec))
            metrics.DECISIONS.labels(event_type=dec["event_type"], decision=dec["decision"]).inc()

    def health(self) -> dict[str, Any]:
        s = self.stats
        return {
            "ok": s.last_error is None,
            "uptime_s": round(time.time() - s.started, 1),
            "batches": s.batches,
            "events": s.events,
            "deadletters": s.deadletters,
            "last_batch_age_s": None
            if s.last_batch_at is None
            else round(time.time() - s.last_batch_at, 1),
            "last_error": s.last_error,
        }
