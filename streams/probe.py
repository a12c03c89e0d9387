"""What the broker says of a worker's inputs: whether it answers, and how many records of
each input partition the worker has not read yet (its input lag).

The worker's consumer runs in a thread of Faust's and goes quiet in two very different
cases: no traffic, and no broker. The probe asks the broker itself, on a connection of
its own, every ``worker.broker_check_s`` seconds, so ``/health`` and ``/metrics`` tell the
two apart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

#: the longest one probe waits for the broker
PROBE_TIMEOUT_S = 5.0

Partition = tuple[str, int]


def input_lag(
    ends: Mapping[Partition, int],
    read: Mapping[Partition, int],
    starts: Mapping[Partition, int | None],
) -> dict[str, int]:
    """Records not read yet, per topic: each partition's end offset (``ends``, what the
    broker says) minus the offset after the newest record the worker read of it
    (``read``), or, for a partition it has read nothing of yet, minus the position it
    started reading at (``starts``). A partition with neither counts for nothing.

    >>> ends = {("apps", 0): 10, ("apps", 1): 5, ("devs", 0): 3, ("devs", 1): 8}
    >>> input_lag(ends, {("apps", 0): 6}, {("apps", 1): 5, ("devs", 0): 1, ("devs", 1): None})
    {'apps': 3, 'devs': 2}
    """
    lag: dict[str, int] = {}
    for (topic, partition), end in ends.items():
        tp = (topic, partition)
        if tp in read:
            behind = end - (read[tp] + 1)
        elif starts.get(tp) is not None:
            behind = end - starts[tp]  # type: ignore[operator]
        else:
            continue
        lag[topic] = lag.get(topic, 0) + max(0, behind)
    return lag


async def group_has_read(
    bootstrap: str, group: str, topics: Iterable[str], timeout_s: float = PROBE_TIMEOUT_S
) -> bool:
    """Whether consumer group ``group`` has committed offsets on any of ``topics``: its
    workers read them before. Raises when the broker does not answer in time."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        offsets = await asyncio.wait_for(admin.list_consumer_group_offsets(group), timeout_s)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    wanted = set(topics)
    return any(tp.topic in wanted and meta.offset >= 0 for tp, meta in offsets.items())


class BrokerProbe:
    """Asks the broker for its metadata and the end offsets of some partitions, on a
    connection of its own (an ``AIOKafkaConsumer`` in no group, assigned nothing)."""

    def __init__(self, bootstrap: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self._consumer: Any = None
        self.stopped = False

    async def ends(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The end offset of each partition; raises when the broker does not answer
        within the timeout (a metadata round trip is made even for no partitions)."""
        return await asyncio.wait_for(self._ends(list(partitions)), self.timeout_s)

    async def _ends(self, partitions: list[Partition]) -> dict[Partition, int]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if self.stopped:
            raise RuntimeError("the broker probe is stopped")
        if self._consumer is None:
            ms = int(self.timeout_s * 1000)
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=ms,
            )
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
        consumer = self._consumer
        await consumer.topics()  # a metadata round trip: the broker answers
        if not partitions:
            return {}
        got = await consumer.end_offsets([TopicPartition(t, p) for t, p in partitions])
        return {(tp.topic, tp.partition): int(end) for tp, end in got.items()}

    async def stop(self) -> None:
        """Close for good: a probe asked after this raises, and opens nothing."""
        self.stopped = True
        await self.close()

    async def close(self) -> None:
        """Drop the connection (the next probe opens a new one); never raises."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), self.timeout_s)
