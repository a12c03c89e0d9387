"""Pending vectors: matched by id or user, matured into negatives, bounded by TTL and cap."""

from __future__ import annotations

import pytest

from detectors.labels import PendingStore, label_value

DAY = 86400.0


def store(**kw) -> PendingStore:
    params = {"maturity_s": 30 * DAY, "ttl_s": 45 * DAY, "max_items": 1000}
    return PendingStore(**(params | kw))


def ids(items) -> list[str]:
    return [i.event_id for i in items]


def filled() -> PendingStore:
    s = store()
    s.add("app", ("A1",), "u1", 0.0, "application", {"f": 1.0})
    s.add("txn", ("A1", "T1"), "u1", 10.0, "transaction", {"f": 2.0})
    s.add("dev", (), "u1", 20.0, "device", {"f": 3.0})
    s.add("other", ("A2",), "u2", 30.0, "application", {"f": 4.0})
    return s


def test_match_by_transaction_id_pops_that_item():
    """A transaction label takes the item holding that id, once."""
    s = filled()
    matched = s.match("transaction", "T1", "u1")
    assert ids(matched) == ["txn"] and matched[0].x == {"f": 2.0}
    assert s.match("transaction", "T1", "u1") == []
    assert len(s) == 3


def test_match_by_application_id_takes_every_item_naming_it():
    """An application label takes the application and the transactions naming it."""
    s = filled()
    assert ids(s.match("application", "A1", "u1")) == ["app", "txn"]
    assert "dev" in s and "other" in s


def test_match_by_user_takes_all_pending_items_of_the_user():
    """A user label takes every pending item of that user, whatever its ids."""
    s = filled()
    assert ids(s.match("user", "u1", "u1")) == ["app", "txn", "dev"]
    assert ids(s.match("user", "u2", "u2")) == ["other"]
    assert len(s) == 0


def test_unknown_target_or_label_is_refused():
    """Targets and labels outside the contract raise ValueError."""
    with pytest.raises(ValueError):
        filled().match("loan", "A1", "u1")
    with pytest.raises(ValueError):
        label_value("chargeback")


def test_label_semantics():
    """fraud is positive; legit, repaid and false_positive negative; default neither."""
    assert label_value("fraud") is True
    assert [label_value(x) for x in ("legit", "repaid", "false_positive")] == [False] * 3
    assert label_value("default") is None


def test_maturity_returns_unlabelled_items_once_in_event_time():
    """Items reaching label_maturity_s of event-time age come out once, oldest first."""
    s = filled()
    assert s.expire(29 * DAY) == []
    assert ids(s.expire(30 * DAY + 15)) == ["app", "txn"]
    assert ids(s.expire(30 * DAY + 15)) == []
    assert ids(s.expire(31 * DAY)) == ["dev", "other"]


def test_matured_items_stay_matchable_until_ttl():
    """A late label still finds a matured item; past pending_ttl_s it is dropped."""
    s = filled()
    s.expire(31 * DAY)
    late = s.match("transaction", "T1", "u1")
    assert ids(late) == ["txn"] and late[0].matured
    assert s.expire(45 * DAY + 5) == [] and ids(s.match("user", "u1", "u1")) == ["dev"]
    s.expire(46 * DAY)
    assert len(s) == 0 and s.n_dropped == 2


def test_ttl_shorter_than_maturity_drops_without_maturing():
    """When items expire before they mature, none becomes a negative."""
    s = store(maturity_s=10 * DAY, ttl_s=5 * DAY)
    s.add("e", (), "u", 0.0, "device", {})
    assert s.expire(20 * DAY) == [] and len(s) == 0


def test_cap_evicts_the_oldest_by_event_time():
    """Beyond max_items the oldest event (by ts, not arrival) is evicted first."""
    s = store(max_items=3)
    s.add("b", (), "u", 20.0, "device", {})
    s.add("a", (), "u", 10.0, "device", {})
    s.add("c", (), "u", 30.0, "device", {})
    s.add("d", (), "u", 40.0, "device", {})
    assert "a" not in s and len(s) == 3 and s.n_evicted == 1
    s.add("e", (), "u", 5.0, "device", {})
    assert "e" not in s and ids(s.match("user", "u", "u")) == ["b", "c", "d"]


def test_duplicates_are_ignored_and_popped_ids_can_return():
    """Re-adding a pending id keeps the first; after a match the id may be added again."""
    s = store()
    s.add("e", ("T",), "u", 0.0, "transaction", {"f": 1.0})
    s.add("e", ("T",), "u", 5.0, "transaction", {"f": 2.0})
    assert s.n_duplicates == 1
    assert [i.x for i in s.match("transaction", "T", "u")] == [{"f": 1.0}]
    s.add("e", ("T",), "u", 100.0, "transaction", {"f": 3.0})
    assert ids(s.expire(100.0 + 30 * DAY)) == ["e"]


def test_indexes_do_not_leak():
    """After matching, expiring and evicting, no id or user index entry is left behind."""
    s = store(max_items=50)
    for k in range(200):
        s.add(f"e{k}", (f"T{k}", f"A{k % 7}"), f"u{k % 11}", float(k), "transaction", {})
    s.match("application", "A3", "u")
    s.expire(1e9)
    assert len(s) == 0 and s._ids == set() and s._blocks == {}
    assert s._by_user == {} and s._by_target == {}
    s.compact()
    assert s._blocks == {} and s._due == s._drop == s._oldest == []


def test_batches_behave_like_single_adds():
    """add_many is add of each item in order: duplicates, eviction, maturity, matching."""
    one, many = store(max_items=40), store(max_items=40)
    rng = __import__("random").Random(5)
    t = 0.0
    for b in range(60):
        batch = []
        for k in range(rng.randint(1, 6)):
            eid = f"e{rng.randint(0, 5 * b + k)}"
            ts = t + rng.choice([0.0, -DAY, rng.uniform(-3 * DAY, DAY)])
            batch.append((eid, (f"T{rng.randint(0, 20)}",), f"u{rng.randint(0, 5)}", ts))
        for eid, targets, uid, ts in batch:
            one.add(eid, targets, uid, ts, "transaction", {"ts": ts})
        many.add_many(
            [e[0] for e in batch],
            [e[1] for e in batch],
            [e[2] for e in batch],
            [e[3] for e in batch],
            "transaction",
            [{"ts": e[3]} for e in batch],
        )
        t += rng.uniform(0, 2 * DAY)
        got = [
            [(i.event_id, i.seq, i.matured, dict(i.x)) for i in s.expire(t)] for s in (one, many)
        ]
        assert got[0] == got[1]
        if b % 5 == 0:
            tid = f"T{rng.randint(0, 20)}"
            assert ids(one.match("transaction", tid, "u")) == ids(
                many.match("transaction", tid, "u")
            )
        assert len(one) == len(many)
    assert (one.n_evicted, one.n_dropped, one.n_duplicates) == (
        many.n_evicted,
        many.n_dropped,
        many.n_duplicates,
    )
    assert one.n_evicted > 0 and one.n_duplicates > 0


def test_pickled_store_carries_on():
    """A store restored from a pickle expires and matches like the original."""
    s = filled()
    s.expire(30 * DAY + 15)
    copy = __import__("pickle").loads(__import__("pickle").dumps(s))
    assert ids(copy.match("user", "u1", "u1")) == ids(s.match("user", "u1", "u1"))
    assert ids(copy.expire(31 * DAY)) == ids(s.expire(31 * DAY)) == ["other"]


def test_a_block_pickled_with_the_older_id_sets_loads_and_matches():
    """A checkpoint's blocks from before the row indexes carried sets of ids: they load,
    and a label after a match (which builds the indexes) finds what it names."""
    s = filled()
    s.match("user", "u2", "u2")  # builds the first block's index
    first = next(iter(s._blocks))
    block = s._blocks[first]
    state = block.__getstate__()
    del state["_user_rows"], state["_target_rows"]
    state["_users_set"], state["_targets_set"] = {"u1"}, {"A1", "T1"}
    old = object.__new__(type(block))
    old.__setstate__(state)
    s._blocks[first] = old
    s._index()  # as a store restored with it would
    assert ids(s.match("application", "A1", "u1")) == ["app", "txn"]
    assert ids(s.match("user", "u1", "u1")) == ["dev"]


def test_maturity_by_type_keeps_the_order_within_each_type():
    """expire_rows_by_type gives, per event type, the items of expire in the same order."""

    def add_batches(s: PendingStore) -> None:
        for b in range(6):
            for event_type in ("device", "transaction"):
                n = 4
                s.add_many(
                    [f"{event_type}-{b}-{k}" for k in range(n)],
                    [()] * n,
                    ["u"] * n,
                    [float((b * 7 + k * 5) % 11) * DAY for k in range(n)],
                    event_type,
                    [{} for _ in range(n)],
                )

    merged, by_type = store(), store()
    add_batches(merged)
    add_batches(by_type)
    for now in (31 * DAY, 35 * DAY, 42 * DAY):
        items = merged.expire(now)
        runs = by_type.expire_rows_by_type(now)
        for event_type in ("device", "transaction"):
            got = [block.ids[k] for block, rows in runs.get(event_type, []) for k in rows.tolist()]
            assert got == [i.event_id for i in items if i.event_type == event_type]
        assert sum(len(rows) for r in runs.values() for _, rows in r) == len(items)


class _Reference:
    """The store's rules written out plainly, item by item, for the test below."""

    def __init__(self, maturity_s: float, ttl_s: float, max_items: int) -> None:
        self.maturity_s, self.ttl_s, self.max_items = maturity_s, ttl_s, max_items
        self.items: dict[str, list] = {}  # id -> [ts, seq, user, targets, matured]
        self.seq = 0
        self.n_evicted = self.n_dropped = self.n_duplicates = 0

    def add(self, eid: str, targets: tuple[str, ...], user: str, ts: float) -> None:
        if eid in self.items:
            self.n_duplicates += 1
            return
        self.seq += 1
        self.items[eid] = [ts, self.seq, user, targets, False]
        while len(self.items) > self.max_items:
            oldest = min(self.items, key=lambda e: self.items[e][:2])
            del self.items[oldest]
            self.n_evicted += 1

    def match(self, by_user: bool, key: str, until: float | None, owner: str | None = None) -> list:
        hit = [
            e
            for e, (ts, _, user, targets, _) in self.items.items()
            if (
                user == key and (until is None or ts <= until)
                if by_user
                else key in targets and user == owner
            )
        ]
        out = sorted((self.items[e][0], self.items[e][1], e, self.items[e][4]) for e in hit)
        for e in hit:
            del self.items[e]
        return [(e, seq, matured) for _, seq, e, matured in out]

    def expire(self, now: float) -> list:
        out = []
        if self.maturity_s < self.ttl_s:
            for e, item in self.items.items():
                if not item[4] and item[0] <= now - self.maturity_s:
                    item[4] = True
                    out.append((item[0], item[1], e))
        for e in [e for e, item in self.items.items() if item[0] <= now - self.ttl_s]:
            del self.items[e]
            self.n_dropped += 1
        return [(e, seq, True) for _, seq, e in sorted(out)]


def test_many_small_blocks_behave_as_the_plain_rules_say():
    """With the indexes and heaps that keep a store of many small blocks cheap, adds (with
    duplicates and eviction), labels on users (up to a time) and on a user's ids, maturity and the
    TTL give exactly what the rules, applied item by item, give; and so does a store
    restored from a pickle half-way, or from one of an older layout (blocks in a list,
    no indexes)."""
    import pickle
    import random

    rng = random.Random(11)
    ref = _Reference(3 * DAY, 5 * DAY, 90)
    s = store(maturity_s=3 * DAY, ttl_s=5 * DAY, max_items=90)
    t, n_matured = 0.0, 0
    for b in range(400):
        n = rng.randint(1, 4)
        batch = [
            (
                f"e{rng.randint(0, 3 * b + n)}",
                (f"T{rng.randint(0, 60)}", f"A{rng.randint(0, 30)}")[: rng.randint(0, 2)],
                f"u{rng.randint(0, 25)}",
                t + rng.uniform(-DAY, DAY / 4),
            )
            for _ in range(n)
        ]
        for eid, targets, user, ts in batch:
            ref.add(eid, targets, user, ts)
        s.add_many(*map(list, zip(*batch, strict=True)), "device", [{} for _ in batch])
        t += rng.uniform(0, DAY / 6)
        if b % 3 == 0:
            got = [(i.event_id, i.seq, i.matured) for i in s.expire(t)]
            assert got == ref.expire(t)
            n_matured += len(got)
        if b % 4 == 1:
            user, until = f"u{rng.randint(0, 25)}", rng.choice([None, t - DAY])
            got = [(i.event_id, i.seq, i.matured) for i in s.match("user", user, user, until)]
            assert got == ref.match(True, user, until)
        if b % 5 == 2:
            target = rng.choice([f"T{rng.randint(0, 60)}", f"A{rng.randint(0, 30)}"])
            owner = f"u{rng.randint(0, 25)}"  # a label on an item names its user's alone
            got = [(i.event_id, i.seq, i.matured) for i in s.match("transaction", target, owner)]
            assert got == ref.match(False, target, None, owner)
        if b == 200:
            s = pickle.loads(pickle.dumps(s))
            # each restored block owns its arrays (a view would keep all of them alive)
            assert all(
                a.base is None
                for blk in s._blocks.values()
                for a in (blk.ts, blk.sorted_ts, blk.order, blk.alive, blk.matured)
            )
        if b == 250:  # blocks by seq0, as held in memory
            state = s.__getstate__()
            state["_blocks"] = pickle.loads(pickle.dumps(dict(s._blocks)))
            s = object.__new__(PendingStore)
            s.__setstate__(state)
        if b == 300:  # as a checkpoint of an older release held it
            state = s.__getstate__()
            state["_blocks"] = pickle.loads(pickle.dumps(list(s._blocks.values())))
            s = object.__new__(PendingStore)
            s.__setstate__(state)
        assert sorted(s._ids) == sorted(ref.items)
    assert (s.n_evicted, s.n_dropped, s.n_duplicates) == (
        ref.n_evicted,
        ref.n_dropped,
        ref.n_duplicates,
    )
    assert ref.n_evicted > 50 and ref.n_dropped > 50 and ref.n_duplicates > 10
    assert n_matured > 50


def test_emptied_blocks_do_not_stay_in_memory():
    """Blocks emptied by labels and eviction, whose heap entries no step pops, are let go
    once they outnumber the blocks held: memory follows what is pending."""
    s = store(max_items=10)
    for k in range(2000):
        s.add(f"e{k}", (f"T{k}",), "u", float(k), "device", {})
        if k % 3 == 0:
            s.match("transaction", f"T{k}", "u")
    assert len(s._blocks) == 10
    assert len(s._due) <= 2 * 64 + 3 * len(s._blocks)
    assert len(s._drop) <= 2 * 64 + 3 * len(s._blocks)
    assert len(s._oldest) <= 2 * 64 + 3 * len(s._blocks)


def test_held_items_wait_for_a_verdict_without_maturing():
    """Items a default names are held: they never mature into negatives, a later verdict
    still finds them, and the TTL drops them like any other; a checkpoint keeps the hold,
    and one packed before holds existed loads with none held."""
    import pickle

    s = filled()
    assert s.hold("application", "A1", "u1") == 2  # the application and its payout
    restored = pickle.loads(pickle.dumps(s))
    for each in (s, restored):
        assert ids(each.expire(31 * DAY)) == ["dev", "other"]
        assert ids(each.match("transaction", "T1", "u1")) == ["txn"]
        assert ids(each.expire(46 * DAY)) == []  # past the TTL: "app" dropped
        assert "app" not in each and len(each) == 0
    old = filled()
    packed = old.__getstate__()
    del packed["_blocks"]["held"]
    older = PendingStore.__new__(PendingStore)
    older.__setstate__(packed)
    assert ids(older.expire(31 * DAY)) == ["app", "txn", "dev", "other"]


def test_a_label_on_an_item_names_its_typed_key_or_a_bare_id_kept_before() -> None:
    """Vectors name their items by typed keys (``transaction:42``): a verdict on
    transaction 42 does not name application 42. Vectors kept by an older release hold
    the bare id: a verdict on an item names those of its own user only."""
    from detectors.labels import target_key

    s = store()
    s.add("app", (target_key("application", "42"),), "u1", 0.0, "application", {"f": 1.0})
    s.add("txn", (target_key("transaction", "42"),), "u2", 1.0, "transaction", {"f": 2.0})
    s.add("old-1", ("42",), "u1", 2.0, "transaction", {"f": 3.0})
    s.add("old-2", ("42",), "u2", 3.0, "transaction", {"f": 4.0})
    assert ids(s.match("transaction", "42", "u2")) == ["txn", "old-2"]
    assert ids(s.match("application", "42", "u1")) == ["app", "old-1"]
