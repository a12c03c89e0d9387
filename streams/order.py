"""Event-time order across input partitions while a worker catches up.

A worker reads several topics at once (device events, applications, transactions,
labels), and a consumer takes records from each partition at about the same *count*
rate. Live, that is fine. After a lag, the sparse topics run ahead in event time: a
cash-out in ``loan.transactions`` can be decided before the SIM change and new-device
login, still queued in ``device.events``, that should have frozen the account first.

:class:`EventTimeGate` holds such events back. An event is released once no input
partition that still has a backlog is behind it in event time, so each partition's
*frontier* (the newest event time read from it) has passed the event. Released events
come out in event-time order. Two bounds keep a stalled or idle partition from holding
everything: at most ``max_held`` events are held, and none longer than ``max_hold_s``
seconds after every partition it waits for last delivered a record (a partition catching
up on a backlog, delivering all along, holds it until it has passed its time, however
long that takes); past either, the oldest in event time go first. The worker's gate runs
on an :class:`IdleClock`, which stands still while the worker decides a batch.

It is plain logic; the Faust shell (``streams.app``) feeds it, asks the consumer which
partitions have a backlog, and acks a held message only once it is decided, so a held
event is never committed before it is processed.

>>> gate = EventTimeGate(max_held=100, max_hold_s=60.0, clock=lambda: 0.0)
>>> gate.offer([("txn", 50.0, "cash-out")], behind={"dev"})  # dev's frontier unknown
[]
>>> gate.offer([("dev", 40.0, "sim-change"), ("dev", 45.0, "login")], behind={"dev"})
['sim-change', 'login']
>>> gate.offer([("dev", 55.0, "app-open")], behind={"dev"})  # dev has passed 50
['cash-out', 'app-open']
>>> gate.offer([("txn", 70.0, "repay")], behind=set())  # nothing is behind: all go
['repay']
"""

from __future__ import annotations

import contextlib
import heapq
import math
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")
P = TypeVar("P", bound=Hashable)


def backlogged(
    assigned: Iterable[P],
    last_read: Mapping[P, int],
    highwater: Callable[[P], int | None],
    position: Mapping[P, int | None],
    waiting: Callable[[P], bool] = lambda tp: True,
) -> list[P]:
    """The assigned partitions that still have records this worker has not read.

    * no fetch has answered for it yet (highwater unknown): counted as behind while
      ``waiting(tp)``, since nothing is known of its event times. At start-up, or after
      a rebalance, the first fetch of one partition can come back before another's
      (brokers answer separately); this keeps the partition that answered from running
      ahead. Past that grace (say, its leader is down), it holds nothing back;
    * read before: behind while the offset last read is below the highwater mark;
    * not read yet: behind while its ``position`` (next offset to read: where the seek
      after the assignment left it) is below the highwater mark; where that is unknown,
      behind while ``waiting(tp)``.

    >>> hw = {"dev": 100, "txn": 7, "lab": 0, "new": None}.get
    >>> backlogged(["dev", "txn", "lab", "new"], {"dev": 41, "txn": 6}, hw, {"lab": 0})
    ['dev', 'new']
    >>> backlogged(["dev"], {}, hw, {"dev": 60})  # restarted at offset 60 of 100
    ['dev']
    >>> backlogged(["new"], {}, hw, {}, waiting=lambda tp: False)  # unknown for too long
    []
    >>> backlogged(["dev"], {}, hw, {})  # start unknown: behind, for the grace
    ['dev']
    >>> backlogged(["dev"], {}, hw, {}, waiting=lambda tp: False)
    []
    """
    out = []
    for tp in assigned:
        end = highwater(tp)
        if end is None:
            if waiting(tp):
                out.append(tp)
            continue
        last = last_read.get(tp)
        if last is not None:
            if last + 1 < end:
                out.append(tp)
        else:
            pos = position.get(tp)
            if pos is None:
                if waiting(tp):
                    out.append(tp)
            elif pos < end:
                out.append(tp)
    return out


class IdleClock:
    """A clock that stands still while the worker is busy deciding.

    The gate's time bound is for a partition that has stopped delivering. A worker busy
    with a long batch (its core runs on the event loop) takes nothing in meanwhile, from
    any partition: counted, that time let a partition still catching up look stalled, and
    the events it held back went ahead of its records. Read in this clock, the bound
    counts only the time the worker was free to take records in.

    >>> ticks = iter([0.0, 1.0, 4.0, 6.0])
    >>> clock = IdleClock(lambda: next(ticks))
    >>> clock()  # monotonic 0
    0.0
    >>> with clock.busy():  # from 1 to 4: a batch being decided
    ...     pass
    >>> clock()  # monotonic 6, of which 3 s busy
    3.0
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.busy_s = 0.0  # seconds spent busy, before the busy spell under way
        self._since: float | None = None  # when the busy spell under way began
        self._depth = 0

    def __call__(self) -> float:
        now = self.clock()
        under_way = now - self._since if self._since is not None else 0.0
        return now - self.busy_s - under_way

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Time inside does not count (nested spells count once)."""
        if self._depth == 0:
            self._since = self.clock()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._since is not None:
                self.busy_s += self.clock() - self._since
                self._since = None


class EventTimeGate(Generic[T]):
    """Holds events ahead of a backlogged source; releases them in event-time order."""

    def __init__(
        self,
        max_held: int = 20_000,
        max_hold_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_held = max_held
        self.max_hold_s = max_hold_s
        self.clock = clock
        self.frontier: dict[Hashable, float] = {}
        #: when each source last delivered an event (its frontier may stand still)
        self.delivered: dict[Hashable, float] = {}
        self._held: list[tuple[float, int, float, T]] = []  # heap of (ts, seq, since, item)
        self._seq = 0
        self.forced = 0  # events released by a bound rather than by the frontiers

    def __len__(self) -> int:
        return len(self._held)

    def offer(
        self, items: Iterable[tuple[Hashable, float | None, T]], behind: Iterable[Hashable]
    ) -> list[T]:
        """Take ``(source, event time, item)`` triples; return what may be decided now.

        ``behind``: the sources that still have a backlog. Items without an event time
        (unreadable input, for the dead-letter path) are released at once, first.
        """
        now = self.clock()
        out: list[T] = []
        held = self._held
        frontier = self.frontier
        for source, ts, item in items:
            if ts is None:
                out.append(item)
                continue
            if ts > frontier.get(source, -math.inf):
                frontier[source] = ts
            self.delivered[source] = now
            heapq.heappush(held, (ts, self._seq, now, item))
            self._seq += 1
        return out + self.release(behind, now)

    def withdraw(self) -> list[T]:
        """Take back every held item, undecided, in event-time order, and forget every
        source's frontier: what a worker does when its partitions are revoked (or it
        stops). Its held events are not committed, so they are read again, by this worker
        or another, from the committed offsets, with the records behind them; deciding
        them now, ahead of those records, would break their order.

        >>> gate = EventTimeGate(clock=lambda: 0.0)
        >>> gate.offer([("txn", 50.0, "cash-out")], behind={"dev"})
        []
        >>> gate.withdraw(), len(gate), gate.frontier
        (['cash-out'], 0, {})
        """
        out = [item for _, _, _, item in sorted(self._held)]
        self._held.clear()
        self.frontier.clear()
        self.delivered.clear()
        return out

    def release(self, behind: Iterable[Hashable], now: float | None = None) -> list[T]:
        """Items no backlogged source is behind, plus those past a bound; oldest first.

        The time bound counts from when the item was held or, if later, from the last
        delivery of the sources it waits for: a source still delivering is catching up,
        not stalled."""
        now = self.clock() if now is None else now
        frontier, delivered = self.frontier, self.delivered
        behind = list(behind)
        limit = min((frontier.get(s, -math.inf) for s in behind), default=math.inf)
        held = self._held
        out: list[T] = []
        while held:
            ts, _, since, item = held[0]
            if ts > limit:
                if len(held) <= self.max_held:
                    waits = [s for s in behind if frontier.get(s, -math.inf) < ts]
                    last = max((delivered.get(s, -math.inf) for s in waits), default=since)
                    if now - max(since, last) < self.max_hold_s:
                        break
                self.forced += 1
            heapq.heappop(held)
            out.append(item)
        return out
