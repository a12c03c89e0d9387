"""The event-time gate: events ahead of a backlogged input wait, and come out in order."""

from __future__ import annotations

import random

from streams.order import EventTimeGate, IdleClock, backlogged


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_event_waits_until_every_backlogged_source_has_passed_its_time() -> None:
    """A cash-out read early from a sparse topic is released only after the dense topic,
    still catching up, has delivered everything before it."""
    gate: EventTimeGate[str] = EventTimeGate(max_held=1000, max_hold_s=60.0, clock=Clock())
    assert gate.offer([("txn", 100.0, "cash-out")], behind={"dev", "txn"}) == []
    assert gate.offer([("dev", 90.0, "d90")], behind={"dev"}) == ["d90"]
    assert gate.offer([("dev", 99.0, "d99")], behind={"dev"}) == ["d99"]
    assert gate.offer([("dev", 101.0, "d101")], behind={"dev"}) == ["cash-out", "d101"]
    assert len(gate) == 0


def test_released_events_come_out_in_event_time_order_whatever_the_arrival_order() -> None:
    """Three sources interleaved at random: the concatenated releases are sorted by time,
    and nothing is lost or repeated."""
    rng = random.Random(3)
    gate: EventTimeGate[float] = EventTimeGate(max_held=10**6, max_hold_s=1e9, clock=Clock())
    sources = {s: sorted(rng.uniform(0, 1000) for _ in range(300)) for s in "abc"}
    cursors = dict.fromkeys(sources, 0)
    out: list[float] = []
    while any(cursors[s] < len(sources[s]) for s in sources):
        s = rng.choice([s for s in sources if cursors[s] < len(sources[s])])
        step = sources[s][cursors[s] : cursors[s] + rng.randint(1, 20)]
        cursors[s] += len(step)
        behind = {x for x in sources if cursors[x] < len(sources[x])}
        out += gate.offer([(s, ts, ts) for ts in step], behind)
    out += gate.release(behind=set())
    assert out == sorted(out)
    assert sorted(out) == sorted(ts for v in sources.values() for ts in v)


def test_unreadable_input_is_never_held() -> None:
    """An input without an event time goes straight on (to its dead letter)."""
    gate: EventTimeGate[str] = EventTimeGate(clock=Clock())
    assert gate.offer([("dev", None, "garbage"), ("txn", 5.0, "t")], behind={"dev"}) == ["garbage"]


def test_bounds_release_the_oldest_when_too_many_are_held_or_for_too_long() -> None:
    """A source that stays behind cannot hold events for ever, nor hold without limit."""
    clock = Clock()
    gate: EventTimeGate[str] = EventTimeGate(max_held=2, max_hold_s=5.0, clock=clock)
    assert gate.offer([("txn", 3.0, "c"), ("txn", 1.0, "a")], behind={"dev"}) == []
    assert gate.offer([("txn", 2.0, "b")], behind={"dev"}) == ["a"]  # three held: one goes
    clock.now = 4.9
    assert gate.release(behind={"dev"}) == []
    clock.now = 5.0
    assert gate.release(behind={"dev"}) == ["b", "c"]
    assert gate.forced == 3


def test_a_partition_no_fetch_has_answered_for_holds_the_others_back_at_start_up() -> None:
    """At start-up the transactions partition answers first and the devices partition
    has not answered yet: the cash-out waits for the device events before it, instead of
    being decided ahead of them; once devices has answered and is read, both go."""
    highwater: dict[str, int | None] = {"txn": 3, "dev": None}
    last_read: dict[str, int] = {"txn": 2}
    gate: EventTimeGate[str] = EventTimeGate(clock=Clock())
    behind = backlogged(["txn", "dev"], last_read, highwater.get, {})
    assert behind == ["dev"]
    assert gate.offer([("txn", 50.0, "cash-out")], behind) == []
    highwater["dev"] = 2
    last_read["dev"] = 1
    behind = backlogged(["txn", "dev"], last_read, highwater.get, {})
    assert behind == []
    assert gate.offer([("dev", 40.0, "sim-change"), ("dev", 45.0, "login")], behind) == [
        "sim-change",
        "login",
        "cash-out",
    ]


def test_a_partition_not_read_yet_is_behind_only_while_records_wait_in_it() -> None:
    """A partition the worker has not read from: behind while its position is below the
    highwater mark; caught up (or empty) when they are equal; an unknown position holds
    others back only for the grace after the assignment (``waiting``), as an unknown
    highwater mark does: nothing is known of what waits in it."""
    hw = {"dev": 10}.get
    assert backlogged(["dev"], {}, hw, {"dev": 4}) == ["dev"]
    assert backlogged(["dev"], {}, hw, {"dev": 10}) == []
    assert backlogged(["dev"], {}, hw, {"dev": None}) == ["dev"]
    assert backlogged(["dev"], {}, hw, {"dev": None}, waiting=lambda tp: False) == []
    assert backlogged(["dev"], {"dev": 9}, hw, {}) == []
    assert backlogged(["dev"], {"dev": 8}, hw, {}) == ["dev"]


def test_a_partition_unanswered_past_its_grace_holds_nothing_back() -> None:
    """A partition no fetch has answered for holds the others back only while
    ``waiting`` says so: a partition whose leader is down does not delay every decision
    for as long as it is down."""
    hw: dict[str, int | None] = {"txn": 5, "dev": None}
    still = backlogged(["txn", "dev"], {"txn": 4}, hw.get, {}, waiting=lambda tp: True)
    past = backlogged(["txn", "dev"], {"txn": 4}, hw.get, {}, waiting=lambda tp: False)
    assert still == ["dev"] and past == []


def test_a_source_catching_up_holds_events_past_the_time_bound_while_it_delivers() -> None:
    """A dense source catching up on a backlog longer than the time bound, still
    delivering, holds the cash-out ahead of it until it has passed the cash-out's time:
    the time bound is for a source that delivers nothing, counted from its last delivery.
    (The cash-out went after 5 s, ahead of the takeover login still queued, and was not
    declined.)"""
    clock = Clock()
    gate: EventTimeGate[str] = EventTimeGate(max_held=1000, max_hold_s=5.0, clock=clock)
    assert gate.offer([("txn", 100.0, "cash-out")], behind={"dev", "txn"}) == []
    for step in range(1, 20):  # 19 s of catching up, a batch a second
        clock.now = float(step)
        assert gate.offer([("dev", float(step), f"d{step}")], behind={"dev"}) == [f"d{step}"]
    clock.now = 20.0
    assert gate.offer([("dev", 99.0, "login")], behind={"dev"}) == ["login"]
    assert gate.offer([("dev", 101.0, "d101")], behind={"dev"}) == ["cash-out", "d101"]
    assert gate.forced == 0
    # once the source stops delivering, the bound counts from its last delivery
    assert gate.offer([("txn", 200.0, "repay")], behind={"dev"}) == []
    clock.now = 24.9
    assert gate.release(behind={"dev"}) == []
    clock.now = 25.0
    assert gate.release(behind={"dev"}) == ["repay"]
    assert gate.forced == 1


def test_time_the_worker_spends_deciding_does_not_count_toward_the_time_bound() -> None:
    """While the worker decides a long batch it takes nothing in, from any partition: on
    the gate's clock (:class:`IdleClock`) that time stands still, so a source still
    catching up does not look stalled and the cash-out held for it stays held; only time
    the worker was free to take records in counts. (On a loaded machine, batches of a few
    seconds each let the bound release cash-outs ahead of device events of their users
    still queued behind the batch being decided.)"""
    clock = Clock()
    idle = IdleClock(clock)
    gate: EventTimeGate[str] = EventTimeGate(max_held=1000, max_hold_s=5.0, clock=idle)
    assert gate.offer([("dev", 10.0, "d10"), ("txn", 50.0, "cash-out")], behind={"dev"}) == ["d10"]
    with idle.busy():  # 8 s deciding
        clock.now = 8.0
        with idle.busy():  # a spell within a spell counts once
            clock.now = 9.0
    assert gate.release(behind={"dev"}) == []
    clock.now = 13.9  # 4.9 s free since the last delivery
    assert gate.release(behind={"dev"}) == []
    clock.now = 14.0
    assert gate.release(behind={"dev"}) == ["cash-out"]
    assert gate.forced == 1


def test_withdrawn_events_are_handed_back_undecided_and_the_frontiers_forgotten() -> None:
    """On a revocation the held events are taken back, oldest first, and never released
    afterwards, however long the time bound runs; the frontiers are forgotten, so the
    partitions read again from their committed offsets hold events back as at a start.
    (Released by the time bound with the partitions paused, a worker losing half its
    partitions decided 1,054 held events ahead of the records still unread behind them.)"""
    clock = Clock()
    gate: EventTimeGate[str] = EventTimeGate(max_held=1000, max_hold_s=5.0, clock=clock)
    assert gate.offer([("dev", 40.0, "d40")], behind={"dev"}) == ["d40"]
    assert gate.offer([("txn", 100.0, "cash-out"), ("app", 70.0, "apply")], behind={"dev"}) == []
    assert gate.withdraw() == ["apply", "cash-out"]
    assert len(gate) == 0 and gate.frontier == {} and gate.delivered == {}
    clock.now = 60.0
    assert gate.release(behind=set()) == []
    assert gate.forced == 0
    # read again: the device partition, unknown once more, holds the cash-out back
    assert gate.offer([("txn", 100.0, "cash-out")], behind={"dev"}) == []
    assert gate.offer([("dev", 90.0, "login")], behind={"dev"}) == ["login"]
