"""The Faust app: topics, the agent that runs the core, and the worker's web views.

The agent is a thin shell: it consumes micro-batches from the input topics, checks each
message against the contract (bad ones go to the dead-letter topic with their reason),
hands the valid events to :class:`streams.shell.Shell`, which calls the pure core and
produces the results.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Mapping
from typing import Any, cast

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from riskmon import metrics
from riskmon.contract import parse_ts
from riskmon.logs import error_text, get_logger
from riskmon.metrics import REGISTRY
from riskmon.settings import Settings
from streams.consumer import AUTO_OFFSET_RESET, Consumer, Transport
from streams.order import EventTimeGate, IdleClock, backlogged
from streams.probe import BrokerProbe, group_has_read, input_lag
from streams.shell import Shell

log = get_logger("riskmon.streams")


async def _handle_until_done(shell: Shell, messages: list[Any]) -> None:
    """Process a batch; when Redis or the broker fails, retry with backoff rather than
    drop valid events (offsets are committed only after the batch is done)."""
    delay = 0.5
    while True:
        try:
            await shell.handle(messages)
            shell.stats.last_error = None
            metrics.FAILING.set(0)
            return
        except Exception as exc:
            shell.stats.last_error = error_text(exc)
            metrics.BATCH_FAILURES.inc()
            metrics.FAILING.set(1)
            log.error(
                "batch_failed",
                error=shell.stats.last_error,
                retry_in_s=delay,
                messages=len(messages),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def _event_time(value: bytes | None) -> float | None:
    """The event time of a raw input, or ``None`` when it cannot be read (the shell then
    dead-letters it with the reason)."""
    try:
        return parse_ts(orjson.loads(value)["ts"])  # type: ignore[arg-type]
    except Exception:
        return None


def create_app(settings: Settings, shell: Shell | None = None) -> faust.App:
    """Build the Faust app for ``settings`` (one per process)."""
    app = faust.App(
        settings.worker.app_id,
        broker=settings.kafka.url,
        store="memory://",
        autodiscover=False,
        datadir=settings.worker.data_dir,
        topic_partitions=settings.kafka.partitions,
        topic_allow_declare=False,
        web_enabled=True,
        web_bind=settings.worker.web_host,
        web_port=settings.worker.web_port,
        web_in_thread=False,
        consumer_auto_offset_reset=AUTO_OFFSET_RESET,
        producer_linger_ms=5,
        # heartbeats come from the consumer's own thread, every 3 s, whatever the batches do
        broker_session_timeout=settings.worker.session_timeout_s,
        broker_commit_every=500,
        broker_commit_interval=1.0,
    )
    # before anything creates Faust's own: ours seeks partitions nobody committed to their
    # start after a rebalance, where Faust's leaves them past records it dropped
    app.transport = Transport(app.conf.broker_consumer, app)
    topics = settings.topics
    source = app.topic(
        *topics.inputs, key_serializer="raw", value_serializer="raw", allow_empty=True
    )
    sinks = {
        name: app.topic(name, key_serializer="raw", value_serializer="raw")
        for name in topics.outputs
    }
    the_shell = shell or Shell.create(settings)
    app.riskmon_shell = the_shell  # type: ignore[attr-defined]

    async def send(topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        # straight to the app's Kafka producer: queued at once, delivery awaited per batch
        # by the shell (Topic.send costs more per record and adds nothing for raw bytes)
        if topic not in sinks:
            raise ValueError(f"not an output topic: {topic}")
        return await app.producer.send(topic, key, value, None, None, None)

    the_shell.sender = send
    the_shell.generation = lambda: int(app.rebalancing_count)

    w = settings.worker
    # the time bounds below count only while the worker is free to take records in: a
    # batch being decided holds every partition up, and does not make one look stalled
    idle = IdleClock()
    gate: EventTimeGate[Any] = EventTimeGate(w.hold_max_events, w.hold_max_s, clock=idle)
    last_offset: dict[Any, int] = {}  # per input partition, the newest offset read
    streams_seen: list[faust.StreamT[Any]] = []

    inputs = set(topics.inputs)
    deciding = asyncio.Lock()
    positions: dict[Any, int | None] = {}  # of assigned input partitions not read yet
    assigned_at: dict[Any, float] = {}  # when each input partition became ours
    unknown_grace_s = 2 * w.hold_max_s  # how long an unanswered partition holds others

    def waiting(tp: Any) -> bool:
        return idle() - assigned_at.get(tp, -math.inf) < unknown_grace_s

    def highwater(tp: Any) -> int | None:
        try:
            return app.consumer.highwater(tp)  # type: ignore[no-any-return]
        except Exception:  # revoked meanwhile: unknown
            return None

    async def position(tp: Any) -> int | None:
        try:
            return await asyncio.wait_for(app.consumer.position(tp), 1.0)
        except Exception:
            return None

    # from a revocation (or the stop), and from an assignment, until the seek back to the
    # committed offsets that follows the assignment
    closed = [False]

    def withdraw() -> list[Any]:
        """The held events' messages, taken back undecided as the partitions are revoked
        or the worker stops (see :mod:`streams.consumer`); until the next assignment,
        what the agent still offers is taken back too."""
        closed[0] = True
        withdrawn = [e.message for e in gate.withdraw()]
        metrics.HELD_EVENTS.set(len(gate))
        return withdrawn

    def read_afresh(mine: list[Any], starts: Mapping[Any, int]) -> None:
        """Forget what was read of the input partitions ``mine`` (after a rebalance each
        is read again from its committed offset, and another worker may have moved it on
        since), and record where each starts (``None`` where unknown)."""
        for tp in mine:
            last_offset.pop(tp, None)
            gate.frontier.pop(tp, None)
            gate.delivered.pop(tp, None)
            positions[tp] = starts.get(tp)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        """Start every assigned input partition afresh; where each starts is known once
        the consumer has sought them back to their committed offsets (:func:`on_seek`)."""
        mine = [tp for tp in assigned if tp.topic in inputs]
        for tp in mine:
            assigned_at[tp] = idle()
        # until the seek back to the committed offsets (on_seek), what a fetch brings is
        # from where the fetcher stood before: taken back, to be read again after it
        closed[0] = True
        positions.clear()
        read_afresh(mine, {})
        log.info("inputs_assigned", partitions=len(mine))
        the_shell.stats.inputs_assigned = len(mine)
        if not mine:
            log.warning(
                "no_input_partitions",
                note="the group gave this worker no input partition: more workers than the "
                "assignment can use (a worker count that divides the partition count uses "
                "them all)",
            )

    async def on_seek(starts: Mapping[Any, int]) -> None:
        """Once the consumer has sought the partitions back to their committed offsets
        (Faust does it after the assignment signal, when its recovery resumes the
        streams), record where each input partition starts, from the seek itself. The
        consumer's ``position`` is no guide: before the seek it is where the fetcher stood
        before, past records read, held and given up; after it, it runs ahead as records
        are buffered, before the agent has them. Either would count unread records as
        read, and let later events of other partitions go ahead of them."""
        try:
            mine = [tp for tp in app.consumer.assignment() if tp.topic in inputs]
        except Exception:  # stopping or rebalancing again: the next assignment records them
            return
        read_afresh(mine, starts)
        known = sum(positions.get(tp) is not None for tp in mine)
        log.info("inputs_sought", partitions=len(mine), starts=known)
        closed[0] = False

    async def behind() -> list[Any]:
        """Input partitions with records the worker has not read yet (see
        :func:`streams.order.backlogged`). Never raises: on any doubt about the
        assignment, nothing is held back on its account."""
        consumer = app.consumer
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic in inputs]
        except Exception:  # not started or rebalancing: hold nothing back on its account
            return []
        return backlogged(assigned, last_offset, highwater, positions, waiting)

    async def decide(events: list[Any], ack: bool) -> None:
        """Hand events to the shell in batches; with ``ack``, ack each once decided.

        The agent and the release timer both decide; one at a time, each batch to its
        end (retries included), so batches are decided in the order they were released
        and a batch being retried is never set aside for another. Busy time for the
        gate's bounds (see :class:`streams.order.IdleClock`)."""
        async with deciding:
            with idle.busy():
                for start in range(0, len(events), w.batch_size):
                    chunk = events[start : start + w.batch_size]
                    messages = [
                        (e.message.topic, e.message.partition, e.message.offset, e.key, e.value)
                        for e in chunk
                    ]
                    await _handle_until_done(the_shell, messages)
                if ack:
                    for e in events:
                        await streams_seen[0].ack(e)
            metrics.HELD_EVENTS.set(len(gate))

    async def through_gate(batch: list[Any]) -> None:
        for e in batch:
            tp = e.message.tp
            if e.message.offset > last_offset.get(tp, -1):
                last_offset[tp] = e.message.offset
        if w.hold_max_events == 0:
            await decide(batch, ack=False)  # take_events acks the batch
            return
        offered = []
        for e in batch:
            # one reference of our own: take_events' ack of the batch does not commit a
            # held event; ours, once it is decided, does
            e.message.incref()
            offered.append((e.message.tp, _event_time(e.value), e))
        ahead = await behind()
        if closed[0]:  # revoked meanwhile: read again, in order, by their next owner
            cast(Consumer, app.consumer).forget(e.message for _, _, e in offered)
            return
        await decide(gate.offer(offered, ahead), ack=True)

    @app.agent(source, name="riskmon.process")
    async def process(stream: faust.StreamT[Any]) -> None:
        streams_seen[:] = [stream]
        async for batch in stream.take_events(  # type: ignore[attr-defined]
            w.batch_size, within=w.batch_within_s
        ):
            await through_gate(list(batch))

    @app.timer(interval=0.5)
    async def release_held() -> None:
        """Release what an idle or stalled partition no longer holds back."""
        if len(gate) and streams_seen:
            released = gate.release(await behind())
            if released:
                await decide(released, ack=True)

    cast(Consumer, app.consumer).on_seek = on_seek
    if w.hold_max_events:
        cast(Consumer, app.consumer).withdraw = withdraw

    probe = BrokerProbe(settings.kafka.bootstrap)

    async def group_history() -> bool:
        """Whether this worker's consumer group has read the inputs before."""
        return await group_has_read(settings.kafka.bootstrap, settings.worker.app_id, inputs)

    the_shell.group_history = group_history

    @app.timer(interval=w.broker_check_s)
    async def check_broker() -> None:
        """Ask the broker for the end of this worker's input partitions: the input lag,
        and whether the broker answers at all (a quiet consumer cannot tell)."""
        if probe.stopped:  # the worker is stopping
            return
        mine: list[Any] | None
        try:
            mine = [tp for tp in app.consumer.assignment() if tp.topic in inputs]
        except Exception:  # not started or rebalancing: the broker is asked all the same
            mine = None
        try:
            ends = await probe.ends(mine or [])
        except Exception as exc:
            await probe.close()  # a new connection for the next probe
            if not probe.stopped:
                the_shell.broker_failed(error_text(exc))
            return
        if mine is None:  # the lag is unknown: the last one stands
            the_shell.broker_answered(None)
            return
        # partitions not read yet whose start the seek could not record: the consumer's
        # position stands in, for the lag only (it runs ahead of what the agent has had,
        # so the event-time gate never counts on it)
        unknown = [tp for tp in mine if tp not in last_offset and positions.get(tp) is None]
        got = await asyncio.gather(*(position(tp) for tp in unknown))
        known = {**positions, **dict(zip(unknown, got, strict=True))}
        the_shell.broker_answered(input_lag(ends, last_offset, known))

    @app.service
    class RuleFeed(faust.Service):  # type: ignore[misc]
        """Follows the rules topic on every worker (no consumer group: all partitions)."""

        async def on_start(self) -> None:
            await the_shell.start()

        async def on_stop(self) -> None:
            await probe.stop()
            await the_shell.stop()

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            report = the_shell.health()
            return self.json(report, status=200 if report["ok"] else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type; the exposition format is UTF-8
            content_type = CONTENT_TYPE_LATEST.split(";", 1)[0] + "; version=0.0.4"
            return self.bytes(generate_latest(REGISTRY), content_type=content_type)

    return app
