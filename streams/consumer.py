"""The worker's Kafka consumer: Faust's (aiokafka), except where it seeks back.

During a rebalance Faust stops its flow, and drops whatever a fetch hands it until the
flow starts again: it then seeks every partition back to its committed offset, so that
the dropped records are read again. A fetch that began before the rebalance can end
after the new assignment, with records of partitions just assigned (Faust gives the
fetch its live set of active partitions, which the assignment refills): these are
dropped too. aiokafka's ``seek_to_committed`` seeks only to a committed offset above 0,
so a partition nobody has committed yet keeps its position past the dropped records, and
they are never decided, nor is anything logged. A worker taking over the partitions of
one that died before its first commit met this, and so can a worker given a partition
just added to an input topic.

Here, a partition with nothing committed is sought to its beginning: where the
consumer's ``auto_offset_reset="earliest"`` starts it when it is first assigned.

Before its partitions are revoked (and when it stops), Faust waits until every message
handed to the agent is acked. The events the worker holds back in event time
(:class:`streams.order.EventTimeGate`) are not acked until decided, and with the
partitions paused nothing more arrives to release them: the gate's time bound released
them after ``worker.hold_max_s``, ahead of the records still unread behind them, which
their next owner then decided after them. Here the consumer first takes them back
(``withdraw``), undecided and not committed, so that they are read again from the
committed offsets, in order with those records. No commit goes past the lowest of them
until the next assignment: a seek back to the committed offsets does not end that, as
Faust also seeks back while the partitions are being revoked (a fetch that ends while the
flow is stopped), before the batch in hand is decided and committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Hashable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar, cast

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ConsumerT

from riskmon.logs import error_text, get_logger

log = get_logger("riskmon.consumer")

#: Where a partition with nothing committed starts (the app's ``consumer_auto_offset_reset``)
AUTO_OFFSET_RESET = "earliest"

P = TypeVar("P", bound=Hashable)


def uncommitted(committed: Mapping[P, int | None], assigned: Collection[P]) -> list[P]:
    """The partitions of ``committed`` still assigned with nothing committed (no offset,
    or 0): those that seeking to the committed offset leaves where they are.

    >>> committed = {"dev-0": 873, "dev-2": None, "txn-0": 0, "dev-3": None}
    >>> uncommitted(committed, assigned={"dev-0", "dev-2", "txn-0"})
    ['dev-2', 'txn-0']
    """
    return [tp for tp, offset in committed.items() if not offset and tp in assigned]


class Consumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """Seeks back to the committed offsets, and where none is, to the beginning; takes
    back the held messages before it waits for the agent's messages to be acked."""

    #: the messages handed to the agent and held back undecided, which it gives up
    withdraw: Callable[[], Iterable[Any]] | None = None
    #: called once the partitions are sought back to their committed offsets after an
    #: assignment (Faust does it once the ``on_partitions_assigned`` signal has been sent),
    #: with where each starts: its committed offset or, where nothing is committed, its
    #: first offset (left out when the broker could not tell it)
    on_seek: Callable[[Mapping[TP, int]], Awaitable[None]] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # per partition, the lowest offset of the messages given up undecided: no commit
        # goes past it until the next assignment
        self._withdrawn: dict[TP, int] = {}

    def forget(self, messages: Iterable[Any]) -> None:
        """No longer wait for ``messages`` to be acked: they will not be, and no commit
        goes past them until their partitions are assigned again (see
        :meth:`on_partitions_assigned`)."""
        withdrawn = self._withdrawn
        for message in messages:
            self._unacked_messages.discard(message)
            tp, offset = message.tp, message.offset
            if offset < withdrawn.get(tp, offset + 1):
                withdrawn[tp] = offset

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for ``tp``: Faust's, from the offsets acked, but never
        past a message handed to the agent and not acked (one held back in event time
        while the records after it are decided) or given up undecided (:meth:`forget`).
        Faust alone lets one such message at the committed offset go: it takes a gap at
        the head of the acked offsets to be one of two or more, and a message it skipped
        so would never be decided."""
        limit = self._withdrawn.get(tp)
        for message in self._unacked_messages:
            if message.tp == tp and not message.acked and (limit is None or message.offset < limit):
                limit = message.offset
        if limit is None:
            return cast(int | None, super()._new_offset(tp))
        acked = self._acked[tp]
        later = [offset for offset in acked if offset >= limit]
        if later:
            acked[:] = [offset for offset in acked if offset < limit]
        try:
            return cast(int | None, super()._new_offset(tp))
        finally:
            if later:  # for a commit once the limit has gone
                acked.extend(later)
                acked.sort()

    async def wait_empty(self) -> None:
        if self.withdraw is not None:
            withdrawn = list(self.withdraw())
            self.forget(withdrawn)
            if withdrawn:
                log.info("held_events_withdrawn", events=len(withdrawn))
        await super().wait_empty()

    #: an assignment came, and the seek back to the committed offsets that follows it not
    #: yet (Faust's recovery seeks once the assignment signal has been sent, and resumes
    #: the partitions just before: a fetch meanwhile reads from where it stood before)
    _seek_pending: bool = False

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Every assigned partition is read again from its committed offset, once the
        seek that follows (:meth:`seek_to_committed`) has been done."""
        self._seek_pending = True
        await super().on_partitions_assigned(assigned, generation_id)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed: Mapping[TP, int] = await super().seek_to_committed()
        assigned = self.assignment()
        fresh = uncommitted(committed, assigned)
        # asked before the seek to the beginning: until the fetcher has resolved that seek,
        # the partitions have no position (see verify_event_path)
        starts = None
        if self._seek_pending and self.on_seek is not None:
            starts = await self._starts(committed, assigned, fresh)
        if fresh:
            await self._thread.seek_to_beginning(*fresh)
            log.info(
                "uncommitted_partitions_from_start",
                partitions=len(fresh),
                topics=sorted({tp.topic for tp in fresh}),
            )
        if self._seek_pending:  # the seek of an assignment (not one during a revocation)
            self._seek_pending = False
            # read again from the committed offsets, which the withdrawn messages kept at
            # or below the lowest of them: they hold the commit back themselves, unacked
            self._withdrawn.clear()
            if self.on_seek is not None and starts is not None:
                await self.on_seek(starts)
        return committed

    def verify_event_path(self, now: float, tp: TP) -> None:
        """Faust's check for stalled partitions (a timer, logs only), which crashed the
        worker when it met a partition sought to its beginning and not yet resolved:
        aiokafka asserts that a position exists. Such a partition is skipped this time."""
        try:
            super().verify_event_path(now, tp)
        except AssertionError:
            log.debug("event_path_not_checked", topic=tp.topic, partition=tp.partition)

    async def _starts(
        self, committed: Mapping[TP, int], assigned: Collection[TP], fresh: list[TP]
    ) -> dict[TP, int]:
        """Where each assigned partition starts after the seek: its committed offset, or
        the first offset of one with nothing committed. Taken from the seek itself, not
        from the consumer's ``position``, which runs ahead as the fetcher buffers records
        that the agent has not had yet (and waits, where a seek to the beginning is still
        to be resolved)."""
        starts = {tp: offset for tp, offset in committed.items() if offset and tp in assigned}
        if fresh:
            try:
                starts.update(await self._thread.earliest_offsets(*fresh))
            except Exception as exc:  # the broker did not answer: those starts stay unknown
                log.warning(
                    "partition_starts_unknown", partitions=len(fresh), error=error_text(exc)
                )
        return starts


class Transport(faust_aiokafka.Transport):  # type: ignore[misc]
    """Faust's Kafka transport with :class:`Consumer`."""

    Consumer: ClassVar[type[ConsumerT]] = Consumer
