"""Scored vectors waiting for their label.

Every scored event is kept (its features and the ids a label can name) until a label
arrives or it matures. Times are event times (epoch seconds), never the wall clock.

- ``match`` pops the items a label names: ``'user'`` names every pending item of that user
  (``target_id`` is the user id); ``'application'`` and ``'transaction'`` name the user's
  items whose ``targets`` hold ``target_key(target_type, target_id)`` (or the bare id, as
  items kept before targets were typed hold it).
- ``expire(now)`` returns, once, the items whose age reached ``maturity_s``: never
  labelled, they become negatives. They stay matchable (a late label still counts) until
  their age reaches ``ttl_s``, when they are dropped. When ``maturity_s >= ttl_s`` items are
  dropped before they mature.
- At most ``max_items`` are kept: the oldest (by event time) are evicted first.

Items are stored in blocks, one per ``add_many`` call (a scored micro-batch of one event
type): parallel columns plus a per-block time order, so a batch costs a few C-level
operations rather than objects and heap entries per item. Ties in event time are broken
by arrival order everywhere (``expire``, ``match``, eviction).

A live worker's micro-batches are small, so a full store holds tens of thousands of
blocks. No step walks them all: ``expire`` takes the blocks that hold something due from
two heaps (by the next time to mature and to drop), a label finds the blocks of its user
or id in an index, and eviction takes the oldest items from a heap of each block's oldest.

>>> store = PendingStore(maturity_s=100, ttl_s=200, max_items=1000)
>>> store.add("e1", ("app-1",), "u1", 0.0, "application", {"f": 1.0})
>>> store.add("e2", ("app-1", "txn-9"), "u1", 10.0, "transaction", {"f": 2.0})
>>> store.add("e3", (), "u2", 20.0, "device", {"f": 3.0})
>>> [i.event_id for i in store.match("transaction", "txn-9", "u1")]
['e2']
>>> [i.event_id for i in store.expire(105.0)]
['e1']
>>> [i.event_id for i in store.match("user", "u2", "u2")]
['e3']
>>> store.expire(300.0), len(store)
([], 0)
>>> label_value("fraud"), label_value("default"), label_value("repaid")
(True, None, False)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from heapq import heapify, heappop, heappush, heapreplace
from typing import Any

import numpy as np

__all__ = ["LABELS", "PendingItem", "PendingStore", "label_value"]

LABELS: dict[str, bool | None] = {
    "fraud": True,
    "default": None,
    "legit": False,
    "repaid": False,
    "false_positive": False,
}

TARGET_TYPES = ("application", "transaction", "user")


def target_key(target_type: str, target_id: str) -> str:
    """How a pending vector names an application or a transaction it carries: ids of
    different kinds (or tables) may be equal, a verdict on one names only its own.

    >>> target_key("transaction", "42"), target_key("application", "42")
    ('transaction:42', 'application:42')
    """
    return f"{target_type}:{target_id}"


def label_value(label: str) -> bool | None:
    """What a label teaches the fraud model: ``True`` fraud, ``False`` not fraud.

    A ``default`` is credit risk, not fraud: ``None``, it is not learned either way.
    """
    try:
        return LABELS[label]
    except KeyError:
        raise ValueError(f"unknown label {label!r}; expected one of {sorted(LABELS)}") from None


@dataclass(slots=True, eq=False)
class PendingItem:
    event_id: str
    targets: tuple[str, ...]
    user_id: str
    ts: float
    event_type: str
    x: Mapping[str, float]
    seq: int = 0
    matured: bool = False


class PendingBlock:
    """Items added together, as parallel columns (row ``k`` has sequence ``seq0 + k``).

    ``order`` lists the rows by ``(ts, seq)``; the first ``n_mature`` of that order have
    been through maturity, the first ``n_drop`` through the TTL; none of the first
    ``head`` is alive. ``held`` rows wait for a verdict without maturing (a default
    named them: not fraud, nor a sign of honesty).
    """

    __slots__ = (
        "_target_rows",
        "_user_rows",
        "alive",
        "event_type",
        "head",
        "held",
        "ids",
        "matured",
        "n_alive",
        "n_drop",
        "n_mature",
        "order",
        "seq0",
        "sorted_ts",
        "targets",
        "ts",
        "users",
        "xs",
    )

    def __init__(
        self,
        ids: list[str],
        targets: list[tuple[str, ...]],
        users: list[str],
        ts: np.ndarray,
        event_type: str,
        xs: Sequence[Mapping[str, float]],
        seq0: int,
    ) -> None:
        n = len(ids)
        self.ids = ids
        self.targets = targets
        self.users = users
        self.ts = ts
        self.event_type = event_type
        self.xs = xs
        self.seq0 = seq0
        self.alive = np.ones(n, dtype=bool)
        self.matured = np.zeros(n, dtype=bool)
        self.held = np.zeros(n, dtype=bool)
        self.n_alive = n
        if n < 2 or bool((ts[1:] >= ts[:-1]).all()):
            self.order = np.arange(n)
            self.sorted_ts = ts
        else:
            self.order = np.argsort(ts, kind="stable")
            self.sorted_ts = ts[self.order]
        self.n_mature = 0
        self.n_drop = 0
        self.head = 0
        # the rows of each user and each target id, built when a label first asks
        self._user_rows: dict[str, list[int]] | None = None
        self._target_rows: dict[str, list[int]] | None = None

    def item(self, k: int) -> PendingItem:
        return PendingItem(
            self.ids[k],
            self.targets[k],
            self.users[k],
            float(self.ts[k]),
            self.event_type,
            self.xs[k],
            self.seq0 + k,
            bool(self.matured[k]),
        )

    def oldest(self) -> tuple[float, int] | None:
        """``(ts, seq)`` of the block's oldest alive item, or ``None``."""
        order, alive, head = self.order, self.alive, self.head
        n = len(order)
        while head < n and not alive[order[head]]:
            head += 1
        self.head = head
        if head == n:
            return None
        k = int(order[head])
        return float(self.ts[k]), self.seq0 + k

    def advance(self, pointer: str, cutoff: float) -> np.ndarray | None:
        """Move the ``pointer`` (``n_mature`` or ``n_drop``) of the time order past every
        row at or before ``cutoff``; the alive rows it passed, or ``None``."""
        start = getattr(self, pointer)
        if start == len(self.order) or self.sorted_ts[start] > cutoff:
            return None
        stop = int(np.searchsorted(self.sorted_ts, cutoff, side="right"))
        rows = self.order[start:stop]
        setattr(self, pointer, stop)
        rows = rows[self.alive[rows]]
        return rows if len(rows) else None

    def rows_of_user(self, user_id: str) -> list[int]:
        """The alive rows of ``user_id``, in order."""
        index = self._user_rows
        if index is None:
            index = self._user_rows = {}
            for k, u in enumerate(self.users):
                index.setdefault(u, []).append(k)
        rows = index.get(user_id)
        if rows is None:
            return []
        alive = self.alive
        return [k for k in rows if alive[k]]

    def rows_of_target(self, target_id: str) -> list[int]:
        """The alive rows whose targets include ``target_id``, in order."""
        index = self._target_rows
        if index is None:
            index = self._target_rows = {}
            for k, targets in enumerate(self.targets):
                for t in targets:
                    held = index.setdefault(t, [])
                    if not held or held[-1] != k:  # a row once, whatever it repeats
                        held.append(k)
        rows = index.get(target_id)
        if rows is None:
            return []
        alive = self.alive
        return [k for k in rows if alive[k]]

    def __getstate__(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in self.__slots__}
        state["_user_rows"] = state["_target_rows"] = None  # built again when asked
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.head = 0  # blocks of older checkpoints have none
        self.held = np.zeros(len(state["ids"]), dtype=bool)  # nor this
        for k, v in state.items():
            if k not in _OLD_INDEXES:
                setattr(self, k, v)
        self._user_rows = self._target_rows = None


#: what a store builds from its blocks (:meth:`PendingStore._index`), not pickled
_BUILT = ("_by_user", "_by_target", "_due", "_drop", "_oldest", "_dead")

#: the indexes that blocks of older checkpoints carry (sets of ids): built again instead
_OLD_INDEXES = frozenset({"_users_set", "_targets_set"})


class PendingStore:
    """Bounded, event-time TTL store of scored vectors, indexed by target id and user."""

    def __init__(self, maturity_s: float, ttl_s: float, max_items: int) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self.maturity_s = maturity_s
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._ids: set[str] = set()  # the pending event ids
        self._blocks: dict[int, PendingBlock] = {}  # by seq0: in arrival (sequence) order
        self._seq = 0
        self.n_evicted = 0
        self.n_dropped = 0
        self.n_duplicates = 0
        self._index()

    def _index(self) -> None:
        """Build the indexes and heaps over the blocks held (a new or restored store)."""
        # user id / target id -> the blocks holding an item of it (by seq0, in order)
        self._by_user: dict[str, dict[int, PendingBlock]] = {}
        self._by_target: dict[str, dict[int, PendingBlock]] = {}
        # (time of the next row to pass, seq0, block): maturity, TTL; (ts, seq, block) of
        # each block's oldest alive item: eviction. Entries of dead blocks are skipped
        # when they come up, and the heaps are rebuilt when those are the most of them.
        self._due: list[tuple[float, int, PendingBlock]] = []
        self._drop: list[tuple[float, int, PendingBlock]] = []
        self._oldest: list[tuple[float, int, PendingBlock]] = []
        self._dead = 0  # blocks emptied since the heaps were built
        for block in self._blocks.values():
            self._index_block(block)
        self._heaps()

    def _index_keys(
        self, block: PendingBlock
    ) -> tuple[tuple[dict[str, dict[int, PendingBlock]], Iterable[str]], ...]:
        """Each index with the keys of ``block`` in it (its users, its target ids)."""
        targets = {t: None for ts in block.targets for t in ts}
        return (self._by_user, dict.fromkeys(block.users)), (self._by_target, targets)

    def _index_block(self, block: PendingBlock) -> None:
        seq0 = block.seq0
        for index, keys in self._index_keys(block):
            for key in keys:
                held = index.get(key)
                if held is None:
                    index[key] = {seq0: block}
                else:
                    held[seq0] = block

    def _heaps(self) -> None:
        """The three heaps, from the blocks alone."""
        due, drop, oldest = [], [], []
        for block in self._blocks.values():
            n = len(block.order)
            if block.n_mature < n:
                due.append((float(block.sorted_ts[block.n_mature]), block.seq0, block))
            if block.n_drop < n:
                drop.append((float(block.sorted_ts[block.n_drop]), block.seq0, block))
            first = block.oldest()
            if first is not None:
                oldest.append((*first, block))
        heapify(due)
        heapify(drop)
        heapify(oldest)
        self._due, self._drop, self._oldest = due, drop, oldest
        self._dead = 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in _BUILT:
            state.pop(name, None)
        state["_blocks"] = _pack(list(self._blocks.values()))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        blocks: Any = self._blocks
        if isinstance(blocks, list):  # older checkpoints: a list in sequence order
            self._blocks = {b.seq0: b for b in blocks if b.n_alive}
        elif _PACKED in blocks:
            self._blocks = _unpack(blocks)
        # else blocks by seq0, as held in memory
        self._index()

    @classmethod
    def from_settings(cls, settings: Any) -> PendingStore:
        """Limits from a ``DetectionSettings``."""
        return cls(settings.label_maturity_s, settings.pending_ttl_s, settings.pending_max)

    def limit_by(self, settings: Any) -> None:
        """Take the limits of a ``DetectionSettings`` from now on (a store restored from a
        checkpoint keeps its items)."""
        self.maturity_s = settings.label_maturity_s
        self.ttl_s = settings.pending_ttl_s
        self.max_items = settings.pending_max

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(
        self,
        event_id: str,
        targets: tuple[str, ...],
        user_id: str,
        ts: float,
        event_type: str,
        x: Mapping[str, float],
    ) -> None:
        """Keep ``x`` until a label names it; a second add of a pending id is ignored."""
        self.add_many([event_id], [targets], [user_id], [ts], event_type, [x])

    def add_many(
        self,
        event_ids: list[str],
        targets: list[tuple[str, ...]],
        user_ids: list[str],
        ts: Iterable[float],
        event_type: str,
        xs: Sequence[Mapping[str, float]],
    ) -> None:
        """``add`` of every item in order (items of one event type)."""
        n = len(event_ids)
        if n == 0:
            return
        ids = self._ids
        if ids.isdisjoint(event_ids) and len(set(event_ids)) == n:
            self._append(event_ids, targets, user_ids, np.fromiter(ts, float, n), event_type, xs)
            if len(ids) > self.max_items:
                # with no id added twice, evicting after the whole batch evicts the same
                # items as evicting after each add (the oldest are always the ones to go)
                self._evict(len(ids) - self.max_items)
            return
        for k, t in enumerate(ts):
            eid = event_ids[k]
            if eid in ids:
                self.n_duplicates += 1
                continue
            self._append(
                [eid], [targets[k]], [user_ids[k]], np.array([t], float), event_type, [xs[k]]
            )
            if len(ids) > self.max_items:
                self._evict(len(ids) - self.max_items)

    def _append(
        self,
        event_ids: list[str],
        targets: list[tuple[str, ...]],
        user_ids: list[str],
        ts: np.ndarray,
        event_type: str,
        xs: Sequence[Mapping[str, float]],
    ) -> None:
        block = PendingBlock(event_ids, targets, user_ids, ts, event_type, xs, self._seq + 1)
        self._seq += len(event_ids)
        self._ids.update(event_ids)
        self._blocks[block.seq0] = block
        self._index_block(block)
        first = float(block.sorted_ts[0])
        heappush(self._due, (first, block.seq0, block))
        heappush(self._drop, (first, block.seq0, block))
        k = int(block.order[0])
        heappush(self._oldest, (float(block.ts[k]), block.seq0 + k, block))
        if self._dead > 64 and self._dead > len(self._blocks):
            # the heaps hold mostly emptied blocks (with their vectors): built afresh, so
            # that memory follows what is pending
            self._heaps()

    def match(
        self, target_type: str, target_id: str, user_id: str, until: float | None = None
    ) -> list[PendingItem]:
        """Pop and return the pending items a label names, oldest first; with ``until``,
        a label on the user takes only the user's items of that event time or before
        (those it can have judged)."""
        out: list[PendingItem] = []
        for block, rows in self._named(target_type, target_id, user_id, until):
            out.extend(block.item(k) for k in rows)
            self._kill(block, np.array(rows, dtype=np.intp))
        out.sort(key=lambda i: (i.ts, i.seq))
        return out

    def hold(
        self, target_type: str, target_id: str, user_id: str, until: float | None = None
    ) -> int:
        """Keep the pending items a label names (as :meth:`match` finds them) from
        maturing: they wait for another verdict until the TTL, and never become
        negatives unlabelled. How many it names (held already or not).

        >>> store = PendingStore(maturity_s=100, ttl_s=1000, max_items=10)
        >>> store.add("e1", ("t1",), "u1", 0.0, "transaction", {"f": 1.0})
        >>> store.add("e2", ("t2",), "u1", 0.0, "transaction", {"f": 2.0})
        >>> store.hold("transaction", "t1", "u1"), store.hold("transaction", "t1", "u1")
        (1, 1)
        >>> [i.event_id for i in store.expire(500.0)]  # e1 is held
        ['e2']
        >>> [i.event_id for i in store.match("transaction", "t1", "u1")]
        ['e1']
        """
        n = 0
        for block, rows in self._named(target_type, target_id, user_id, until):
            block.held[rows] = True
            n += len(rows)
        return n

    def _named(
        self, target_type: str, target_id: str, user_id: str, until: float | None
    ) -> list[tuple[PendingBlock, list[int]]]:
        """The alive rows a label names, per block: the user's (up to ``until``), or the
        user's rows that carry the application or transaction."""
        if target_type == "user":
            by_user = True
        elif target_type in TARGET_TYPES:
            by_user = False
        else:
            raise ValueError(f"unknown target_type {target_type!r}; expected {TARGET_TYPES}")
        if by_user:
            return self._rows(self._by_user, target_id, until, None)
        # an item by its typed key (see target_key); vectors kept before targets were
        # typed hold the bare id, which only the same user's label may name
        out = self._rows(self._by_target, target_key(target_type, target_id), None, user_id)
        return out + self._rows(self._by_target, target_id, None, user_id)

    def _rows(
        self,
        index: dict[str, dict[int, PendingBlock]],
        key: str,
        until: float | None,
        user_id: str | None,
    ) -> list[tuple[PendingBlock, list[int]]]:
        held = index.get(key)
        if not held:
            return []
        by_user = index is self._by_user
        out = []
        for block in list(held.values()):  # a block emptied by the caller leaves the index
            rows = block.rows_of_user(key) if by_user else block.rows_of_target(key)
            if rows and until is not None:
                ts = block.ts
                rows = [k for k in rows if ts[k] <= until]
            if rows and user_id is not None:
                users = block.users
                rows = [k for k in rows if users[k] == user_id]
            if rows:
                out.append((block, rows))
        return out

    def expire(self, now_ts: float) -> list[PendingItem]:
        """Items that matured since the last call (oldest first); drops those past the TTL."""
        return [block.item(k) for block, rows in self.expire_rows(now_ts) for k in rows.tolist()]

    def expire_rows(self, now_ts: float) -> list[tuple[PendingBlock, np.ndarray]]:
        """``expire`` as runs of rows of one block each: the same items in the same order."""
        return _merge(self._expire_runs(now_ts))

    def expire_rows_by_type(
        self, now_ts: float
    ) -> dict[str, list[tuple[PendingBlock, np.ndarray]]]:
        """``expire_rows`` per event type: the runs of each type in the same order, without
        ordering the items of different types against each other."""
        by_type: dict[str, list[tuple[PendingBlock, np.ndarray]]] = {}
        for block, rows in self._expire_runs(now_ts):
            by_type.setdefault(block.event_type, []).append((block, rows))
        return {event_type: _merge(runs) for event_type, runs in by_type.items()}

    def _expire_runs(self, now_ts: float) -> list[tuple[PendingBlock, np.ndarray]]:
        """The rows that matured, per block in block order (each in time order)."""
        found: list[tuple[PendingBlock, np.ndarray]] = []
        if self.maturity_s < self.ttl_s:
            for block, passed in _passed(self._due, "n_mature", now_ts - self.maturity_s):
                rows = passed[~block.held[passed]]
                if len(rows):
                    block.matured[rows] = True
                    found.append((block, rows))
            if len(found) > 1:
                found.sort(key=lambda run: run[0].seq0)
        for block, rows in _passed(self._drop, "n_drop", now_ts - self.ttl_s):
            self._kill(block, rows)
            self.n_dropped += len(rows)
        return found

    def _evict(self, count: int) -> None:
        """Drop the ``count`` oldest pending items (by ``(ts, seq)``)."""
        heap = self._oldest
        evicted = 0
        while evicted < count and heap:
            ts, seq, block = heap[0]
            first = block.oldest() if block.n_alive else None
            if first is None:
                heappop(heap)
            elif first != (ts, seq):  # its oldest went since (evicted, a label, the TTL)
                heapreplace(heap, (*first, block))
            else:
                self._kill(block, np.array([seq - block.seq0], dtype=np.intp))
                evicted += 1
        self.n_evicted += evicted

    def _kill(self, block: PendingBlock, rows: np.ndarray) -> None:
        """Forget the (alive) ``rows`` of ``block``; an emptied block is forgotten."""
        block.alive[rows] = False
        block.n_alive -= len(rows)
        ids = block.ids
        deque(map(self._ids.remove, [ids[k] for k in rows.tolist()]), maxlen=0)
        if not block.n_alive:
            self._forget(block)

    def _forget(self, block: PendingBlock) -> None:
        """Take an emptied block out of the store and its indexes (its heap entries are
        skipped when they come up)."""
        seq0 = block.seq0
        del self._blocks[seq0]
        self._dead += 1
        for index, keys in self._index_keys(block):
            for key in keys:
                held = index.get(key)
                if held is not None:
                    held.pop(seq0, None)
                    if not held:
                        del index[key]

    def compact(self) -> None:
        """Rebuild the heaps without the entries of emptied blocks."""
        self._heaps()


def _passed(
    heap: list[tuple[float, int, PendingBlock]], pointer: str, cutoff: float
) -> list[tuple[PendingBlock, np.ndarray]]:
    """Move the ``pointer`` of each block whose next row is at or before ``cutoff`` past
    every such row (:meth:`PendingBlock.advance`); the alive rows passed, per block."""
    out = []
    while heap and heap[0][0] <= cutoff:
        _, seq0, block = heap[0]
        if not block.n_alive:  # emptied: gone from the store
            heappop(heap)
            continue
        rows = block.advance(pointer, cutoff)
        at = getattr(block, pointer)
        if at < len(block.order):
            heapreplace(heap, (float(block.sorted_ts[at]), seq0, block))
        else:
            heappop(heap)
        if rows is not None:
            out.append((block, rows))
    return out


_PACKED = "packed"  # the key that marks blocks written out by :func:`_pack`
_PACK_HEAD = ("seq0", "n", "n_mature", "n_drop", "n_alive", "head", "event_type", "xs_kind")


def _pack(blocks: list[PendingBlock]) -> dict[str, Any]:
    """The blocks as a few columns, to pickle: a live store holds tens of thousands of
    small blocks, and pickling each block's own arrays costs many times as much.

    Vectors that are rows of one matrix (``xs`` with a ``block`` array and the
    ``schema`` naming its columns, as :class:`detectors.bank.FeatureRows`) are written
    as one matrix per schema; others as they are.

    >>> store = PendingStore(maturity_s=100, ttl_s=200, max_items=10)
    >>> store.add_many(["e1", "e2"], [(), ("t",)], ["u1", "u2"], [5.0, 1.0], "device",
    ...                [{"f": 1.0}, {"f": 2.0}])
    >>> store.add("e3", (), "u1", 3.0, "application", {"g": 3.0})
    >>> packed = _pack(list(store._blocks.values()))
    >>> packed["blocks"].tolist(), packed["types"], packed["order"].tolist()
    ([[1, 2, 0, 0, 2, 0, 0, -1], [3, 1, 0, 0, 1, 0, 1, -1]], ['device', 'application'], [1, 0, 0])
    >>> for b in _unpack(packed).values():
    ...     print(b.ids, b.ts.tolist(), b.sorted_ts.tolist(), b.xs)
    ['e1', 'e2'] [5.0, 1.0] [1.0, 5.0] [{'f': 1.0}, {'f': 2.0}]
    ['e3'] [3.0] [3.0] [{'g': 3.0}]
    """
    types: dict[str, int] = {}
    kinds: dict[int, int] = {}  # id(schema) -> kind
    schemas: list[tuple[type, Any]] = []  # per kind: (class of the xs, schema)
    matrices: list[list[np.ndarray]] = []  # per kind: the blocks' matrices, in order
    loose: list[Sequence[Mapping[str, float]]] = []  # the xs of other blocks, in order
    rows = []
    ids: list[str] = []
    users: list[str] = []
    targets: list[tuple[str, ...]] = []
    for b in blocks:
        xs = b.xs
        schema, matrix = getattr(xs, "schema", None), getattr(xs, "block", None)
        if schema is not None and isinstance(matrix, np.ndarray) and len(matrix) == len(b.ids):
            kind = kinds.get(id(schema))
            if kind is None:
                kind = kinds[id(schema)] = len(schemas)
                schemas.append((type(xs), schema))
                matrices.append([])
            matrices[kind].append(matrix)
        else:
            kind = -1
            loose.append(list(xs))
        t = types.setdefault(b.event_type, len(types))
        rows.append((b.seq0, len(b.ids), b.n_mature, b.n_drop, b.n_alive, b.head, t, kind))
        ids += b.ids
        users += b.users
        targets += b.targets

    def column(name: str, dtype: Any) -> np.ndarray:
        parts = [getattr(b, name) for b in blocks]
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)

    return {
        _PACKED: 1,
        "blocks": np.array(rows, dtype=np.int64).reshape(-1, len(_PACK_HEAD)),
        "types": list(types),
        "ids": ids,
        "users": users,
        "targets": targets,
        "ts": column("ts", float),
        "alive": column("alive", bool),
        "matured": column("matured", bool),
        "held": column("held", bool),
        "order": column("order", np.intp),
        "xs_schemas": schemas,
        "xs_matrices": [np.concatenate(parts) for parts in matrices],
        "xs_loose": loose,
    }


def _unpack(packed: dict[str, Any]) -> dict[int, PendingBlock]:
    """The blocks of :func:`_pack`, by seq0 (each with arrays of its own: a view would
    keep every restored vector in memory as long as one block of them is pending)."""
    head = packed["blocks"]
    ids, users, targets = packed["ids"], packed["users"], packed["targets"]
    ts, alive, matured, order = packed["ts"], packed["alive"], packed["matured"], packed["order"]
    held = packed.get("held")  # packed before items were held: none is
    if held is None:
        held = np.zeros(len(ts), dtype=bool)
    starts = np.concatenate(([0], np.cumsum(head[:, 1])))
    sorted_ts = ts[order + np.repeat(starts[:-1], head[:, 1])] if len(ts) else ts
    types, schemas = packed["types"], packed["xs_schemas"]
    matrices, loose = packed["xs_matrices"], iter(packed["xs_loose"])
    at = [0] * len(schemas)  # per kind: the next row of its matrix
    out: dict[int, PendingBlock] = {}
    for (seq0, n, n_mature, n_drop, n_alive, first, t, kind), a in zip(
        head.tolist(), starts[:-1].tolist(), strict=True
    ):
        z = a + n
        block = PendingBlock.__new__(PendingBlock)
        block.ids, block.users, block.targets = ids[a:z], users[a:z], targets[a:z]
        if kind < 0:
            block.xs = next(loose)
        else:
            cls, schema = schemas[kind]
            block.xs = cls(schema, matrices[kind][at[kind] : at[kind] + n].copy())
            at[kind] += n
        block.ts, block.sorted_ts = ts[a:z].copy(), sorted_ts[a:z].copy()
        block.order, block.alive, block.matured, block.held = (
            order[a:z].copy(),
            alive[a:z].copy(),
            matured[a:z].copy(),
            held[a:z].copy(),
        )
        block.event_type, block.seq0 = types[t], seq0
        block.n_mature, block.n_drop, block.n_alive, block.head = n_mature, n_drop, n_alive, first
        block._user_rows = block._target_rows = None
        out[seq0] = block
    return out


def _merge(
    found: list[tuple[PendingBlock, np.ndarray]],
) -> list[tuple[PendingBlock, np.ndarray]]:
    """Runs of rows (each in ``(ts, seq)`` order) merged into one ``(ts, seq)`` order."""
    if len(found) < 2:
        return found
    last = -np.inf
    for block, rows in found:  # blocks in sequence order: ordered when they do not overlap
        first = block.ts[rows[0]]
        if first < last:
            break
        last = block.ts[rows[-1]]
    else:
        return found
    ts = np.concatenate([block.ts[rows] for block, rows in found])
    seq = np.concatenate([rows + block.seq0 for block, rows in found])
    owner = np.concatenate([np.full(len(rows), b) for b, (_, rows) in enumerate(found)])
    order = np.lexsort((seq, ts))
    owner, seq = owner[order], seq[order]
    cuts = np.flatnonzero(owner[1:] != owner[:-1]) + 1
    out = []
    for o, s in zip(np.split(owner, cuts), np.split(seq, cuts), strict=True):
        block = found[int(o[0])][0]
        out.append((block, s - block.seq0))
    return out
