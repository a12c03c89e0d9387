"""The worker's consumer seeking back after a rebalance, with the consumer thread faked."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from riskmon.settings import Settings
from streams.app import create_app
from streams.consumer import Consumer, Transport

DEV = [TopicPartition("device.events", p) for p in range(4)]


class FakeThread:
    """What Faust's consumer thread answers: committed offsets (``None`` where nothing is
    committed), the assignment, and the seeks to the beginning asked of it."""

    def __init__(self, committed: dict[TopicPartition, int | None], assigned: set[Any]) -> None:
        self.committed = committed
        self.assigned = assigned
        self.to_beginning: list[TopicPartition] = []

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        return dict(self.committed)

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.to_beginning.extend(partitions)

    #: each partition's first offset, as the broker gives it (None: the broker fails)
    first: dict[TopicPartition, int] | None = None

    async def earliest_offsets(self, *partitions: TopicPartition) -> dict[TopicPartition, int]:
        if self.first is None:
            raise ConnectionError("no broker")
        return {tp: self.first[tp] for tp in partitions}


def consumer_with(thread: FakeThread) -> Consumer:
    consumer = Consumer.__new__(Consumer)  # the seek needs nothing but the thread
    consumer._thread = thread
    consumer._withdrawn = {}
    return consumer


async def test_a_partition_nobody_committed_is_read_again_from_its_start() -> None:
    """Seeking back to the committed offsets (what Faust does after a rebalance, having
    dropped the records a fetch handed over while its flow was stopped) also seeks a
    partition with nothing committed (no offset, or 0) to its beginning, rather than leave
    it past the dropped records; a partition revoked meanwhile is left alone."""
    thread = FakeThread(
        committed={DEV[0]: 873, DEV[1]: 0, DEV[2]: None, DEV[3]: None},
        assigned={DEV[0], DEV[1], DEV[2]},
    )
    committed = await consumer_with(thread).seek_to_committed()
    assert committed == thread.committed  # what Faust records as committed is unchanged
    assert thread.to_beginning == [DEV[1], DEV[2]]


async def test_partitions_with_committed_offsets_are_not_sought_again() -> None:
    """Where every partition has a committed offset, only Faust's seek happens."""
    thread = FakeThread(committed={DEV[0]: 873, DEV[1]: 4}, assigned={DEV[0], DEV[1]})
    await consumer_with(thread).seek_to_committed()
    assert thread.to_beginning == []


def test_the_worker_app_consumes_with_this_consumer() -> None:
    """The app the worker runs uses the consumer above, not Faust's own."""
    app = create_app(Settings.load(env={}, config_file=None))
    assert isinstance(app.transport, Transport)
    assert isinstance(app.consumer, Consumer)


class Held:
    """A message handed to the agent: acked once decided (or never, if held back)."""

    def __init__(self, offset: int) -> None:
        self.tp = DEV[0]
        self.offset = offset
        self.acked = False


async def test_before_a_revocation_held_messages_are_given_up_and_the_batch_in_hand_finished() -> (
    None
):
    """Faust waits, before the partitions are revoked (or the worker stops), until every
    message handed to the agent is acked. The messages the gate holds back are taken back
    undecided (never acked, so never committed: read again, in order, by the partition's
    next owner), while a batch being decided is still waited for. (Without this, the held
    ones were waited for until the gate's time bound decided them, ahead of the records
    unread behind them.)"""
    app = create_app(Settings.load(env={}, config_file=None))
    consumer = app.consumer
    assert isinstance(consumer, Consumer) and consumer.withdraw is not None
    held, in_hand = [Held(7), Held(8)], Held(3)
    consumer.withdraw = lambda: list(held)
    for message in (*held, in_hand):
        consumer._unacked_messages.add(message)
    commits: list[list[int]] = []

    async def commit(*args: Any, **kwargs: Any) -> bool:
        commits.append(sorted(m.offset for m in consumer._unacked_messages))
        return True

    async def wait_for_ack(timeout: float) -> None:
        await asyncio.sleep(0.01)
        in_hand.acked = True  # the batch in hand is decided meanwhile

    consumer.commit = commit  # type: ignore[method-assign]
    consumer.commit_and_end_transactions = commit  # type: ignore[method-assign]
    consumer._wait_for_ack = wait_for_ack  # type: ignore[method-assign]
    await asyncio.wait_for(consumer.wait_empty(), timeout=10.0)
    assert in_hand.acked
    assert not any(m.acked for m in held)
    assert commits[0] == [3]  # the held ones were given up before anything was waited for
    assert len(consumer._unacked_messages) == 0


class Msg:
    """What the commit reads of a message handed to the agent."""

    def __init__(self, tp: TopicPartition, offset: int) -> None:
        self.tp, self.offset, self.acked = tp, offset, False


def committing(committed: int | None, acked: list[int], unacked: list[Msg]) -> Consumer:
    """A consumer with one partition, ``DEV[0]``: its committed offset (the next to
    read), the offsets acked since, and the messages handed out and not acked."""
    from collections import defaultdict

    from intervaltree import IntervalTree

    consumer = Consumer.__new__(Consumer)
    consumer._acked = defaultdict(list, {DEV[0]: sorted(acked)})
    consumer._acked_index = defaultdict(set, {DEV[0]: set(acked)})
    consumer._gap = defaultdict(IntervalTree)
    consumer._committed_offset = defaultdict(lambda: None, {DEV[0]: committed})
    consumer._unacked_messages = set(unacked)
    consumer._withdrawn = {}
    return consumer


def test_a_held_message_at_the_committed_offset_is_not_committed_past() -> None:
    """A message held back undecided at the committed offset keeps the commit there
    while the records after it are decided and acked (Faust alone lets one unacked
    message at the head go: it looks for a gap of two), and further along, only what
    comes before the lowest message held is committed; once acked, all is."""
    held = Msg(DEV[0], 31)
    consumer = committing(31, [32, 33], [held])
    assert consumer._new_offset(DEV[0]) is None
    later = Msg(DEV[0], 40)
    consumer = committing(31, [31, 32, 33, 41, 42], [later])
    assert consumer._new_offset(DEV[0]) == 34
    assert consumer._acked[DEV[0]] == [41, 42]  # kept for a later commit
    consumer._committed_offset[DEV[0]] = 34  # that commit done
    later.acked = True
    consumer._acked[DEV[0]] = [34, 35, 36, 37, 38, 39, 40, 41, 42]
    assert consumer._new_offset(DEV[0]) == 43


def test_withdrawn_messages_are_not_committed_past_until_the_partition_is_read_again() -> None:
    """Held messages given up at a revocation are no longer waited for, but the commits
    that follow (Faust commits once the agent's messages are all acked) stop before the
    lowest of them, so that the partition's next owner reads them again; once the
    partitions are assigned again (read again from the committed offsets), it goes."""
    held = [Msg(DEV[0], 31), Msg(DEV[0], 35)]
    consumer = committing(31, [32, 33, 34], held)
    consumer.forget(held)
    assert not consumer._unacked_messages
    assert consumer._new_offset(DEV[0]) is None
    consumer._thread = FakeThread(committed={DEV[0]: 31}, assigned={DEV[0]})
    asyncio.run(consumer.seek_to_committed())
    assert consumer._withdrawn == {DEV[0]: 31}  # a seek alone leaves it


async def test_a_seek_back_during_a_revocation_keeps_withdrawn_messages_uncommitted() -> None:
    """A fetch that ends while the flow is stopped for a revocation makes Faust seek every
    partition back to its committed offset (faust's Consumer.getmany), possibly while it
    still waits for the batch in hand: the messages given up are not read again by that
    seek (the partitions are being revoked), so the commits that follow still stop before
    the lowest of them until the next assignment, which reads them again. (Cleared
    by that seek, the batch in hand committed past a withdrawn message at the committed
    offset, which then nobody decided.)"""
    app = create_app(Settings.load(env={}, config_file=None))
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    held, in_hand = Msg(DEV[0], 31), Msg(DEV[0], 32)
    consumer.withdraw = lambda: [held]
    for message in (held, in_hand):
        consumer._unacked_messages.add(message)
    consumer._thread = FakeThread(committed={DEV[0]: 31}, assigned={DEV[0]})
    commits: list[dict[Any, int]] = []

    async def commit(*args: Any, **kwargs: Any) -> bool:
        commits.append(consumer._filter_committable_offsets([DEV[0]]))
        return True

    async def wait_for_ack(timeout: float) -> None:
        await consumer.perform_seek()  # a fetch came back while the flow was stopped
        in_hand.acked = True  # the batch in hand is decided meanwhile
        consumer._acked[DEV[0]].append(32)
        consumer._acked_index[DEV[0]].add(32)

    consumer.commit = commit  # type: ignore[method-assign]
    consumer.commit_and_end_transactions = commit  # type: ignore[method-assign]
    consumer._wait_for_ack = wait_for_ack  # type: ignore[method-assign]
    await asyncio.wait_for(consumer.wait_empty(), timeout=10.0)
    assert in_hand.acked and commits
    assert all(DEV[0] not in offsets for offsets in commits), commits

    async def assigned(*args: Any) -> None:
        return None

    consumer._on_partitions_assigned = assigned
    await consumer.on_partitions_assigned({DEV[0]})
    assert consumer._withdrawn == {DEV[0]: 31}  # until the seek that follows
    await consumer.perform_seek()  # read again from the committed offset
    assert consumer._withdrawn == {}


async def assigned_and_sought(thread: FakeThread) -> list[dict[Any, int]]:
    """What ``on_seek`` is told when an assignment's partitions are sought back."""
    app = create_app(Settings.load(env={}, config_file=None))
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    consumer._thread = thread
    told: list[dict[Any, int]] = []

    async def on_seek(starts: Any) -> None:
        told.append(dict(starts))

    async def assigned(*args: Any) -> None:
        return None

    consumer.on_seek = on_seek
    consumer._on_partitions_assigned = assigned
    await consumer.perform_seek()  # not after an assignment: on_seek is not called
    assert told == []
    await consumer.on_partitions_assigned(set(thread.assigned))
    await consumer.perform_seek()
    return told


async def test_after_an_assignment_the_seek_tells_where_each_partition_starts() -> None:
    """Once an assignment's partitions are sought back, ``on_seek`` is told where each
    starts: its committed offset or, where nothing is committed, its first offset as the
    broker has it (records may have expired), and nothing of a partition revoked meanwhile.
    These are where reading starts, whatever the consumer's ``position`` says: it runs
    ahead as the fetcher buffers records the agent has not had yet, and the event-time
    gate took records buffered so for records read."""
    thread = FakeThread(
        committed={DEV[0]: 873, DEV[1]: 0, DEV[2]: None, DEV[3]: 55},
        assigned={DEV[0], DEV[1], DEV[2]},
    )
    thread.first = {DEV[1]: 0, DEV[2]: 120}
    assert await assigned_and_sought(thread) == [{DEV[0]: 873, DEV[1]: 0, DEV[2]: 120}]


async def test_starts_the_broker_cannot_tell_are_left_out() -> None:
    """Where the broker does not answer for the first offsets, the partitions with nothing
    committed are left out of the starts (unknown), and the seek still completes."""
    thread = FakeThread(committed={DEV[0]: 873, DEV[1]: None}, assigned={DEV[0], DEV[1]})
    assert await assigned_and_sought(thread) == [{DEV[0]: 873}]


def test_the_stalled_partition_check_skips_a_partition_without_a_position() -> None:
    """Faust's timer that checks each partition for stalls reads aiokafka's position,
    which asserts that one exists: for a partition just sought to its beginning (a worker
    taking over partitions nobody committed) it did not, and the assertion crashed the
    worker. That partition is skipped; the others are checked."""
    checked: list[Any] = []

    class Thread:
        def verify_event_path(self, now: float, tp: Any) -> None:
            if tp == DEV[1]:
                raise AssertionError  # aiokafka: ``assert self._position is not None``
            checked.append(tp)

    consumer = consumer_with(Thread())  # type: ignore[arg-type]
    for tp in DEV[:3]:
        consumer.verify_event_path(0.0, tp)
    assert checked == [DEV[0], DEV[2]]
