"""Scored vectors waiting for their label.

Every scored event is kept (its features and the ids a label can name) until a label
arrives or it matures. Times are event times (epoch seconds), never the wall clock.

- ``match`` pops the items a label names: ``'user'`` names every pending item of that user
  (``target_id`` is the user id); ``'application'`` and ``'transaction'`` name the items
  whose ``targets`` hold ``target_id``.
- ``expire(now)`` returns, once, the items whose age reached ``maturity_s``: never
  labelled, they become negatives. They stay matchable (a late label still counts) until
  their age reaches ``ttl_s``, when they are dropped. When ``maturity_s >= ttl_s`` items are
  dropped before they mature.
- At most ``max_items`` are kept: the oldest (by event time) are evicted first.

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

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LABELS", "PendingItem", "PendingStore", "label_value"]

LABELS: dict[str, bool | None] = {
    "fraud": True,
    "default": None,
    "legit": False,
    "repaid": False,
    "false_positive": False,
}

TARGET_TYPES = ("application", "transaction", "user")


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


class PendingStore:
    """Bounded, event-time TTL store of scored vectors, indexed by target id and user."""

    def __init__(self, maturity_s: float, ttl_s: float, max_items: int) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self.maturity_s = maturity_s
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._items: dict[str, PendingItem] = {}
        self._by_target: dict[str, dict[str, None]] = {}
        self._by_user: dict[str, dict[str, None]] = {}
        self._young: list[tuple[float, int, str]] = []  # heap: not matured yet
        self._old: list[tuple[float, int, str]] = []  # heap: matured, waiting for the TTL
        self._seq = 0
        self.n_evicted = 0
        self.n_dropped = 0
        self.n_duplicates = 0

    @classmethod
    def from_settings(cls, settings: Any) -> PendingStore:
        """Limits from a ``DetectionSettings``."""
        return cls(settings.label_maturity_s, settings.pending_ttl_s, settings.pending_max)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._items

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
        if event_id in self._items:
            self.n_duplicates += 1
            return
        self._seq += 1
        seq = self._seq
        self._items[event_id] = PendingItem(event_id, targets, user_id, ts, event_type, x, seq)
        heapq.heappush(self._young, (ts, seq, event_id))
        by_target = self._by_target
        for t in targets:
            ids = by_target.get(t)
            if ids is None:
                by_target[t] = {event_id: None}
            else:
                ids[event_id] = None
        ids = self._by_user.get(user_id)
        if ids is None:
            self._by_user[user_id] = {event_id: None}
        else:
            ids[event_id] = None
        if len(self._items) > self.max_items:
            self._evict(len(self._items) - self.max_items)

    def match(self, target_type: str, target_id: str, user_id: str) -> list[PendingItem]:
        """Pop and return the pending items a label names, oldest first."""
        if target_type == "user":
            ids = self._by_user.get(target_id)
        elif target_type in TARGET_TYPES:
            ids = self._by_target.get(target_id)
        else:
            raise ValueError(f"unknown target_type {target_type!r}; expected {TARGET_TYPES}")
        if not ids:
            return []
        out = [self._remove(eid) for eid in list(ids)]
        out.sort(key=lambda i: (i.ts, i.seq))
        return out

    def expire(self, now_ts: float) -> list[PendingItem]:
        """Items that matured since the last call (oldest first); drops those past the TTL."""
        out: list[PendingItem] = []
        items = self._items
        if self.maturity_s < self.ttl_s:
            cutoff = now_ts - self.maturity_s
            young = self._young
            while young and young[0][0] <= cutoff:
                entry = heapq.heappop(young)
                item = items.get(entry[2])
                if item is None or item.seq != entry[1]:
                    continue
                item.matured = True
                out.append(item)
                heapq.heappush(self._old, entry)
        cutoff = now_ts - self.ttl_s
        for heap in (self._old, self._young):
            while heap and heap[0][0] <= cutoff:
                _, seq, eid = heapq.heappop(heap)
                item = items.get(eid)
                if item is not None and item.seq == seq:
                    self._remove(eid)
                    self.n_dropped += 1
        return out

    def _evict(self, count: int) -> None:
        for _ in range(count):
            best: list[tuple[float, int, str]] | None = None
            for heap in (self._old, self._young):
                while heap and self._stale(heap[0]):
                    heapq.heappop(heap)
                if heap and (best is None or heap[0] < best[0]):
                    best = heap
            if best is None:
                return
            _, _, eid = heapq.heappop(best)
            self._remove(eid)
            self.n_evicted += 1

    def _stale(self, entry: tuple[float, int, str]) -> bool:
        item = self._items.get(entry[2])
        return item is None or item.seq != entry[1]

    def _remove(self, event_id: str) -> PendingItem:
        item = self._items.pop(event_id)
        for t in item.targets:
            ids = self._by_target.get(t)
            if ids is not None:
                ids.pop(event_id, None)
                if not ids:
                    del self._by_target[t]
        ids = self._by_user.get(item.user_id)
        if ids is not None:
            ids.pop(event_id, None)
            if not ids:
                del self._by_user[item.user_id]
        return item

    def compact(self) -> None:
        """Rebuild the time heaps without the entries of items already popped."""
        self._young = [e for e in self._young if not self._stale(e)]
        self._old = [e for e in self._old if not self._stale(e)]
        heapq.heapify(self._young)
        heapq.heapify(self._old)
