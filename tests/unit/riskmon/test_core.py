"""The core's handling of labels and actions, and of its own failures, on the
in-memory store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

import riskmon.core as core_module
from detectors.bank import ModelBank
from detectors.base import BaseDetector
from detectors.registry import REGISTRY
from riskmon.core import Core, Failure
from riskmon.features import MODEL_COLUMNS
from riskmon.settings import Settings
from riskmon.store import MemoryStore


def txn(i: int, user: str, account: str, minute: int) -> dict[str, Any]:
    return {
        "event_id": f"t{i}",
        "event_type": "transaction",
        "user_id": user,
        "ts": f"2026-11-01T10:{minute:02d}:00.000Z",
        "txn_id": f"tx{i}",
        "kind": "payment",
        "amount": 50.0,
        "status": "success",
        "account_hash": account,
    }


def label(i: int, user: str, target_type: str, target: str) -> dict[str, Any]:
    return {
        "event_id": f"l{i}",
        "event_type": "label",
        "user_id": user,
        "ts": "2026-11-02T10:00:00.000Z",
        "target_type": target_type,
        "target_id": target,
        "label": "fraud",
    }


def test_fraud_on_a_transaction_marks_where_it_happened() -> None:
    """A fraud label on one payment marks that payment's account, not every account the
    user ever paid; a fraud label on the user marks all of them."""
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    store = MemoryStore()
    core.run_batch(store, [txn(1, "u1", "shop-a", 1), txn(2, "u1", "shop-b", 2)], now=0.0)
    core.run_batch(store, [label(1, "u1", "transaction", "tx2")], now=0.0)
    assert store.idents["account:shop-b"].fraud.keys() == {"u1"}
    assert store.idents["account:shop-a"].fraud.keys() == set()
    core.run_batch(store, [label(2, "u1", "user", "u1")], now=0.0)
    assert store.idents["account:shop-a"].fraud.keys() == {"u1"}
    assert store.users["u1"]["fraud"] is True


def test_a_fraud_mark_reaches_the_later_events_of_its_batch() -> None:
    """A fraud label marks the identifiers of the user at its place in event time: a
    later payment by another user to the same account, in the same batch, sees the
    account's fraud share (a rule on it flags the payment), as it does when the label
    came in an earlier batch; an earlier payment of the batch does not."""

    def core() -> Core:
        return _core_with(
            _rule(
                "test_account_fraud_share",
                "features.account_fraud_share > 0",
                0.6,
                "medium",
                "review",
                applies_to=("transaction",),
            )
        )

    def at(event: dict[str, Any], hour: int) -> dict[str, Any]:
        return {**event, "ts": f"2026-11-02T{hour:02d}:00:00.000Z"}

    stream = [
        at(txn(1, "u1", "mule", 0), 8),
        at(txn(2, "u2", "mule", 0), 9),  # before the verdict
        at(label(3, "u1", "user", "u1"), 10),
        at(txn(4, "u3", "mule", 0), 11),  # after it
    ]
    results = []
    for batches in ([stream], [[e] for e in stream]):
        c, store = core(), MemoryStore()
        outs = [c.run_batch(store, batch, now=0.0) for batch in batches]
        decided = {d["source_event_id"]: d["decision"] for out in outs for d in out.decisions}
        results.append(decided)
    assert results[0] == results[1] == {"t1": "pass", "t2": "pass", "t4": "review"}


def test_a_fraud_label_shows_in_the_profile_at_once_and_stops_new_credit() -> None:
    """After a fraud label on a user, the approval service's profile says
    ``confirmed_fraud`` at once (before the user's next event), as of the label's time.
    The user's next application is declined with the label as its reason, and so is a
    withdrawal; a login still passes."""
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    store = MemoryStore()
    core.run_batch(store, [txn(1, "u1", "shop-a", 1)], now=0.0)
    before = store.get_profile("user", "u1")
    assert before is not None and before["confirmed_fraud"] is False
    core.run_batch(store, [label(1, "u1", "user", "u1")], now=0.0)
    after = store.get_profile("user", "u1")
    assert after is not None and after["confirmed_fraud"] is True
    assert after["event_time"] > before["event_time"]  # replaces the stored profile
    assert after["event_id"] == before["event_id"]  # still the last decision's

    app = {
        "event_id": "a1",
        "event_type": "application",
        "user_id": "u1",
        "ts": "2026-11-03T10:00:00.000Z",
        "application_id": "app1",
        "amount": 500.0,
        "product": "cash_loan",
    }
    cash_out = {**txn(2, "u1", "shop-a", 3), "kind": "withdrawal", "ts": "2026-11-03T11:00:00Z"}
    login = {
        "event_id": "d1",
        "event_type": "device",
        "user_id": "u1",
        "ts": "2026-11-03T12:00:00.000Z",
        "kind": "login",
        "device_id": "dev1",
    }
    out = core.run_batch(store, [app, cash_out, login], now=0.0)
    by_event = {d["source_event_id"]: d for d in out.decisions}
    for eid in ("a1", "t2"):
        assert by_event[eid]["decision"] == "decline"
        assert by_event[eid]["reasons"][0]["code"] == "label:fraud"
    assert by_event["d1"]["decision"] == "pass"
    assert {(a["source_event_id"], a["action"]) for a in out.adjustments} >= {
        ("a1", "decline"),
        ("t2", "freeze"),
    }


def test_a_late_events_freeze_and_a_later_label_reach_the_users_profile() -> None:
    """A withdrawal that arrives late (older than the stored profile) and is declined
    with a freeze: the profile keeps the newest decision but shows the freeze; a fraud
    label dated between the two events still shows at once."""
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    store = MemoryStore()
    login = {
        "event_id": "d5",
        "event_type": "device",
        "user_id": "u1",
        "ts": "2026-11-05T10:00:00.000Z",
        "kind": "login",
        "device_id": "dev1",
    }
    core.run_batch(store, [login], now=0.0)
    newest = store.get_profile("user", "u1")
    assert newest is not None
    store.users["u1"]["actions"]["freeze"] = 2_000_000_000.0  # a freeze in force
    late = {**txn(9, "u1", "shop-a", 1), "kind": "withdrawal", "ts": "2026-11-04T10:00:00Z"}
    out = core.run_batch(store, [late], now=0.0)
    assert out.decisions[0]["decision"] == "decline"
    after = store.get_profile("user", "u1")
    assert after is not None and after["event_id"] == "d5"  # still the newest decision
    assert "freeze" in after["actions"] and after["event_time"] >= newest["event_time"]
    fraud = {**label(3, "u1", "user", "u1"), "ts": "2026-11-04T12:00:00.000Z"}
    core.run_batch(store, [fraud], now=0.0)
    labelled = store.get_profile("user", "u1")
    assert labelled is not None and labelled["confirmed_fraud"] is True


def test_a_fraud_verdict_taken_back_clears_the_user() -> None:
    """A ``false_positive`` label on the user (or on what the fraud label named) takes
    the verdict back: the profile says so at once and the user's withdrawals are judged
    as anyone's again; a ``legit`` label on some other transaction does not."""
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    store = MemoryStore()
    core.run_batch(store, [txn(1, "u1", "shop-a", 1)], now=0.0)
    core.run_batch(store, [label(1, "u1", "transaction", "tx1")], now=0.0)
    other = {**label(2, "u1", "transaction", "tx-other"), "label": "legit"}
    core.run_batch(store, [other], now=0.0)
    assert store.users["u1"]["fraud"] is True
    undo = {**label(3, "u1", "transaction", "tx1"), "label": "false_positive"}
    undo["ts"] = "2026-11-02T11:00:00.000Z"
    core.run_batch(store, [undo], now=0.0)
    profile = store.get_profile("user", "u1")
    assert profile is not None and profile["confirmed_fraud"] is False
    cash_out = {**txn(4, "u1", "shop-a", 5), "kind": "withdrawal", "ts": "2026-11-03T10:00:00Z"}
    out = core.run_batch(store, [cash_out], now=0.0)
    assert out.decisions[0]["decision"] == "pass"
    assert not any(r["code"] == "label:fraud" for r in out.decisions[0]["reasons"])


def test_verdicts_on_a_new_user_and_out_of_order_and_taken_back() -> None:
    """A fraud label on a user with no decided event yet gives a profile at once (its
    decision fields empty); a verdict older than the one in force, arriving late, does
    not overturn it; taking the verdict back lifts the freeze it brought."""
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    store = MemoryStore()
    core.run_batch(store, [{**label(1, "new", "user", "new"), "ts": "2026-11-05T10:00:00Z"}])
    profile = store.get_profile("user", "new")
    assert profile is not None and profile["confirmed_fraud"] is True
    assert profile["decision"] is None and profile["event_id"] is None
    old_legit = {**label(2, "new", "user", "new"), "label": "legit"}  # dated 2026-11-02
    core.run_batch(store, [old_legit], now=0.0)
    assert store.users["new"]["fraud"] is True  # the newer fraud verdict stands
    cash_out = {**txn(3, "new", "shop", 1), "kind": "withdrawal", "ts": "2026-11-06T10:00:00Z"}
    out = core.run_batch(store, [cash_out], now=0.0)
    assert out.decisions[0]["decision"] == "decline"
    assert "freeze" in store.users["new"]["actions"]
    undo = {**label(4, "new", "user", "new"), "label": "false_positive"}
    undo["ts"] = "2026-11-07T10:00:00.000Z"
    lifted = core.run_batch(store, [undo], now=0.0).adjustments
    assert store.users["new"]["actions"] == {}
    assert [(a["action"], a["source_event_id"]) for a in lifted] == [("unfreeze", "l4")]
    again = {**txn(5, "new", "shop", 2), "kind": "withdrawal", "ts": "2026-11-08T10:00:00Z"}
    assert core.run_batch(store, [again], now=0.0).decisions[0]["decision"] == "pass"


def test_a_verdict_on_one_item_leaves_the_verdicts_on_others_alone() -> None:
    """A legit verdict on one transaction does not block a fraud verdict on another that
    arrives later with an older time; taking back the fraud on one transaction leaves
    the user a fraudster while another fraud verdict stands."""
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    store = MemoryStore()
    core.run_batch(store, [txn(1, "u1", "a", 1), txn(2, "u1", "b", 2)], now=0.0)

    def verdict(i: int, target: str, what: str, day: int) -> dict[str, Any]:
        ev = {**label(i, "u1", "transaction", target), "label": what}
        ev["ts"] = f"2026-11-0{day}T10:00:00.000Z"
        return ev

    core.run_batch(store, [verdict(10, "tx1", "legit", 3)], now=0.0)
    core.run_batch(store, [verdict(11, "tx2", "fraud", 2)], now=0.0)  # older, other item
    assert store.users["u1"]["fraud"] is True
    assert store.idents["account:b"].fraud.keys() == {"u1"}
    core.run_batch(store, [verdict(12, "tx1", "fraud", 4)], now=0.0)
    core.run_batch(store, [verdict(13, "tx2", "false_positive", 5)], now=0.0)
    assert store.users["u1"]["fraud"] is True  # the fraud on tx1 stands


def freezing_core() -> Core:
    """A core with one more rule: a withdrawal above 1,000 is declined, with a freeze."""
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    core.apply_rule(
        {
            "rule_id": "test_big_withdrawal",
            "version": 1,
            "applies_to": ["transaction"],
            "when": "event.kind == 'withdrawal' && event.amount > 1000.0",
            "score": 0.9,
            "severity": "high",
            "action": "freeze",
            "mode": "active",
            "reason": "A large withdrawal.",
            "enabled": True,
        }
    )
    return core


def withdrawal(i: int, amount: float, minute: int) -> dict[str, Any]:
    return {**txn(i, "u1", "shop-a", minute), "kind": "withdrawal", "amount": amount}


def verdict_on(i: int, target_type: str, target: str, what: str, minute: int) -> dict[str, Any]:
    return {
        **label(i, "u1", target_type, target),
        "label": what,
        "ts": f"2026-11-01T11:{minute:02d}:00.000Z",
    }


def test_a_false_positive_on_the_flagged_transaction_lifts_its_freeze() -> None:
    """The risk team finds the withdrawal that froze the account a false positive: one
    ``unfreeze`` adjustment, with the verdict as its reason and an id of the label's; the
    profile no longer shows the freeze and the next withdrawal passes. A verdict on some
    other transaction lifts nothing, and the same label delivered twice lifts once."""
    core, store = freezing_core(), MemoryStore()
    out = core.run_batch(store, [withdrawal(1, 5000.0, 1)], now=0.0)
    assert [a["action"] for a in out.adjustments] == ["freeze"]

    other = core.run_batch(store, [verdict_on(2, "transaction", "tx-other", "legit", 1)])
    assert other.adjustments == [] and "freeze" in store.users["u1"]["actions"]

    clear = verdict_on(3, "transaction", "tx1", "false_positive", 2)
    out = core.run_batch(store, [clear], now=0.0)
    assert [(a["action"], a["source_event_id"]) for a in out.adjustments] == [("unfreeze", "l3")]
    (unfreeze,) = out.adjustments
    assert unfreeze["reasons"][0]["code"] == "label:false_positive"
    assert "tx1" in unfreeze["reasons"][0]["detail"]
    assert unfreeze["adjustment_id"].startswith("adj") and "expires_at" not in unfreeze
    profile = store.get_profile("user", "u1")
    assert profile is not None and "freeze" not in profile["actions"]
    assert core.run_batch(store, [clear], now=0.0).adjustments == []  # a duplicate

    out = core.run_batch(store, [withdrawal(4, 200.0, 30)], now=0.0)
    assert out.decisions[0]["decision"] == "pass"


def test_a_freeze_two_flags_caused_is_lifted_when_both_are_cleared() -> None:
    """A second large withdrawal while frozen is declined and becomes a cause of the
    freeze too: clearing the first leaves the account frozen, clearing both lifts it."""
    core, store = freezing_core(), MemoryStore()
    core.run_batch(store, [withdrawal(1, 5000.0, 1)], now=0.0)
    out = core.run_batch(store, [withdrawal(2, 6000.0, 2)], now=0.0)
    assert out.decisions[0]["decision"] == "decline" and out.adjustments == []
    first = core.run_batch(store, [verdict_on(3, "transaction", "tx1", "false_positive", 1)])
    assert first.adjustments == [] and "freeze" in store.users["u1"]["actions"]
    second = core.run_batch(store, [verdict_on(4, "transaction", "tx2", "legit", 2)])
    assert [a["action"] for a in second.adjustments] == ["unfreeze"]
    assert "freeze" not in store.users["u1"]["actions"]


def test_a_verdict_on_the_user_leaves_an_action_taken_after_it_in_force() -> None:
    """In one batch: a freezing withdrawal, a legit verdict on the user, then another
    freezing withdrawal. The verdict lifts the freeze that came before it, at its place
    in event time, and the later flag freezes the account again: it stays frozen. A
    later verdict on the user lifts the freeze."""
    core, store = freezing_core(), MemoryStore()
    user_verdict = {**verdict_on(2, "user", "u1", "legit", 0), "ts": "2026-11-01T10:02:00Z"}
    batch = [withdrawal(1, 5000.0, 1), user_verdict, withdrawal(3, 5000.0, 3)]
    out = core.run_batch(store, batch, now=0.0)
    assert [a["action"] for a in out.adjustments] == ["freeze", "unfreeze", "freeze"]
    assert "freeze" in store.users["u1"]["actions"]
    later = core.run_batch(store, [verdict_on(4, "user", "u1", "legit", 5)], now=0.0)
    assert [a["action"] for a in later.adjustments] == ["unfreeze"]


def test_nothing_is_lifted_while_the_user_is_a_confirmed_fraudster() -> None:
    """A false positive on the withdrawal that froze the account lifts nothing while a
    fraud verdict on another transaction of the user stands."""
    core, store = freezing_core(), MemoryStore()
    core.run_batch(store, [withdrawal(1, 5000.0, 1), txn(2, "u1", "shop-b", 2)], now=0.0)
    core.run_batch(store, [verdict_on(3, "transaction", "tx2", "fraud", 1)], now=0.0)
    out = core.run_batch(store, [verdict_on(4, "transaction", "tx1", "false_positive", 2)])
    assert out.adjustments == [] and "freeze" in store.users["u1"]["actions"]


def application(i: int, minute: int) -> dict[str, Any]:
    return {
        "event_id": f"a{i}",
        "event_type": "application",
        "user_id": "u1",
        "ts": f"2026-11-01T10:{minute:02d}:00.000Z",
        "application_id": f"app{i}",
        "amount": 500.0,
        "product": "cash_loan",
    }


def test_a_legit_verdict_lifts_the_freeze_for_a_later_withdrawal_of_its_batch() -> None:
    """A legit verdict on the user at 11:00 and a small withdrawal at 11:05, in one batch
    after a freeze: the verdict lifts the freeze at its own time (one ``unfreeze``), so
    the withdrawal passes and the profile shows no action, as when they come apart."""
    froze = [withdrawal(1, 5000.0, 1)]
    lift = verdict_on(2, "user", "u1", "legit", 0)
    small = {**withdrawal(3, 50.0, 0), "ts": "2026-11-01T11:05:00.000Z"}
    for batches in ([froze, [lift], [small]], [froze, [lift, small]]):
        core, store = freezing_core(), MemoryStore()
        outs = [core.run_batch(store, batch, now=0.0) for batch in batches]
        adjustments = [a["action"] for out in outs[1:] for a in out.adjustments]
        assert adjustments == ["unfreeze"]
        decision = outs[-1].decisions[0]
        assert decision["decision"] == "pass", decision["reasons"]
        profile = store.get_profile("user", "u1")
        assert profile is not None and profile["actions"] == {}


def test_a_freezing_flag_in_the_second_half_of_a_freeze_renews_it() -> None:
    """A freeze has a term (``detection.adjustment_ttl_s``, 7 days). A new freezing flag
    while it has more than half its term left adds no adjustment (one action, not one per
    event); one in its second half renews it for a full term from that flag, with a new
    ``freeze`` adjustment, so money stays held after the first term would have ended."""
    core, store = freezing_core(), MemoryStore()

    def on(day: str, i: int, amount: float) -> dict[str, Any]:
        return {**withdrawal(i, amount, 0), "ts": f"2026-11-{day}T10:00:00.000Z"}

    outs = [
        core.run_batch(store, [on(day, i, amount)], now=0.0)
        for i, (day, amount) in enumerate(
            [("01", 5000.0), ("03", 6000.0), ("07", 7000.0), ("08", 50.0), ("15", 50.0)]
        )
    ]
    assert [a["expires_at"] for a in outs[0].adjustments] == ["2026-11-08T10:00:00.000Z"]
    assert outs[1].decisions[0]["decision"] == "decline" and outs[1].adjustments == []
    assert [(a["action"], a["expires_at"]) for a in outs[2].adjustments] == [
        ("freeze", "2026-11-14T10:00:00.000Z")
    ]
    assert outs[3].decisions[0]["decision"] == "decline"  # past the first term: still held
    assert outs[4].decisions[0]["decision"] == "pass"  # past the renewed term
    profile = store.get_profile("user", "u1")
    assert profile is not None and profile["actions"] == {}


def test_a_fraud_verdict_does_not_judge_an_earlier_event_of_its_batch() -> None:
    """An application at 10:00 and a fraud verdict on the user dated 12:00, in one batch:
    the application passes, as it does when the verdict comes in a later batch (it did
    not exist at the application's time); the user's profile says confirmed fraud."""
    app = {**application(1, 0), "ts": "2026-11-01T10:00:00.000Z"}
    fraud = {**label(9, "u1", "user", "u1"), "ts": "2026-11-01T12:00:00.000Z"}
    for batches in ([[app], [fraud]], [[app, fraud]]):
        core, store = freezing_core(), MemoryStore()
        (first, *_) = [core.run_batch(store, batch, now=0.0) for batch in batches]
        assert first.decisions[0]["decision"] == "pass", first.decisions[0]["reasons"]
        profile = store.get_profile("user", "u1")
        assert profile is not None and profile["confirmed_fraud"] is True


def test_verdicts_decide_the_same_however_the_stream_is_batched() -> None:
    """Verdicts among the events of a batch are taken at their place in event time: a
    stream decided as one batch gives the same decisions (decision, reasons, score),
    adjustments and final profiles as one event per batch. An application before a fraud
    verdict passes and a withdrawal after it is declined; a fraudster's withdrawal before
    a legit verdict is declined, and the verdict lifts the freeze for the next one."""
    stream = [  # in event time
        withdrawal(1, 5000.0, 1),  # a freeze
        application(2, 5),  # before the fraud verdict: passes
        {**verdict_on(3, "user", "u1", "fraud", 0), "ts": "2026-11-01T10:10:00.000Z"},
        withdrawal(4, 50.0, 15),  # a confirmed fraudster's: declined
        application(5, 18),  # declined too
        {**verdict_on(6, "user", "u1", "legit", 0), "ts": "2026-11-01T10:20:00.000Z"},
        withdrawal(7, 50.0, 25),  # the freeze lifted: passes
        withdrawal(9, 5000.0, 27),  # freezes again, before the verdict on it
        {**verdict_on(8, "transaction", "tx9", "false_positive", 0), "ts": "2026-11-01T10:28Z"},
        withdrawal(10, 50.0, 40),  # after that verdict: passes
    ]

    def run(batches: list[list[dict[str, Any]]]) -> tuple[list[Any], list[Any], Any]:
        core, store = freezing_core(), MemoryStore()
        outs = [core.run_batch(store, batch, now=0.0) for batch in batches]
        decisions = [
            (d["source_event_id"], d["decision"], d["reasons"], d["score"])
            for out in outs
            for d in out.decisions
        ]
        return decisions, [a for out in outs for a in out.adjustments], store.profiles

    decisions, adjustments, profiles = run([stream[::-1]])  # the batch is put in time
    assert (decisions, adjustments, profiles) == run([[event] for event in stream])
    by_event = {eid: (what, [r["code"] for r in reasons]) for eid, what, reasons, _ in decisions}
    assert by_event["a2"][0] == "pass"
    assert by_event["t4"] == ("decline", ["label:fraud", "action:freeze"])
    assert by_event["a5"][0] == "decline" and "label:fraud" in by_event["a5"][1]
    assert by_event["t7"][0] == "pass" and by_event["t10"][0] == "pass"
    assert [(a["source_event_id"], a["action"]) for a in adjustments] == [
        ("t1", "freeze"),
        ("a5", "decline"),
        ("l6", "unfreeze"),
        ("t9", "freeze"),
        ("l8", "unfreeze"),
    ]
    assert profiles["user:u1"]["actions"] == {} and profiles["user:u1"]["confirmed_fraud"] is False


def test_peak_score_24h_is_the_highest_score_of_the_last_24_hours_of_event_time() -> None:
    """Over random decisions, some arriving late, the kept pairs give at every newest
    event time exactly what all decisions of the 24 hours up to it give."""
    import random

    from riskmon.core import add_peak, peak_at

    rng = random.Random(5)
    for _ in range(200):
        peaks: list[list[float]] = []
        seen: list[tuple[float, float]] = []
        newest = 0.0
        for _ in range(60):
            late = rng.random() < 0.2
            ts = newest - rng.uniform(0, 30000) if late else newest + rng.expovariate(1 / 9000)
            newest = max(newest, ts)
            score = round(rng.random(), 2)
            seen.append((ts, score))
            add_peak(peaks, ts, score)
            at = newest + rng.uniform(0, 5000)  # a profile is written at or after the newest
            truth = max((s for t, s in seen if at - 86400 < t <= at), default=0.0)
            assert peak_at(peaks, at) == truth


def test_a_user_document_from_before_keeps_its_peak() -> None:
    """A stored user document of the earlier layout (``peak``: ``[score, ts]``) gives
    its peak for 24 hours after it, then nothing."""
    from riskmon.core import _peaks, add_peak, peak_at

    user = {"peak": [0.8, 1000.0]}
    peaks = _peaks(user)
    assert "peak" not in user and user["peaks"] == [[1000.0, 0.8]]
    add_peak(peaks, 2000.0, 0.3)
    assert peak_at(peaks, 2000.0) == 0.8 and peak_at(peaks, 1000.0 + 86400) == 0.3


def test_past_the_cap_the_lowest_scores_go_and_the_peak_stays_exact() -> None:
    """More falling scores in a day than a document keeps: the highest still counts."""
    from riskmon.core import MAX_PEAKS, add_peak, peak_at

    peaks: list[list[float]] = []
    for i in range(MAX_PEAKS + 20):
        add_peak(peaks, 100.0 * i, 0.99 - 0.001 * i)
    assert len(peaks) == MAX_PEAKS
    assert peak_at(peaks, 100.0 * (MAX_PEAKS + 19)) == 0.99


def test_a_batch_the_core_fails_on_is_decided_event_by_event(
    core_fails_on: Callable[[str, Exception], None],
) -> None:
    """When the core fails on a batch, it decides the batch again event by event: every
    other event gets its decision, and only the event it fails on is left out, in
    ``failed`` with its place in the batch and the kind of failure (not its text), and
    not marked seen (it may come again, fixed)."""
    core_fails_on("t2", KeyError("13800138000"))  # a failure whose text quotes a value
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    store = MemoryStore()
    batch = [txn(1, "u1", "shop-a", 1), txn(2, "u2", "shop-b", 2), txn(3, "u3", "shop-c", 3)]
    out = core.run_batch(store, batch, now=0.0)
    assert [d["source_event_id"] for d in out.decisions] == ["t1", "t3"]
    assert out.failed == [Failure(1, batch[1], "KeyError")]
    assert "13800138000" not in out.failed[0].reason
    assert {"t1", "t3"} <= set(store.seen) and "t2" not in store.seen
    again = core.run_batch(store, [txn(4, "u1", "shop-a", 4)], now=0.0)
    assert [d["source_event_id"] for d in again.decisions] == ["t4"] and not again.failed


class Counting(BaseDetector):
    """Counts the vectors it learns, by amount; its scoring raises on one amount."""

    supervised = False
    ready = True

    def __init__(self, name: str, fails_on: float | None = None) -> None:
        self.name = name
        self.fails_on = fails_on
        self.learned: Counter[float] = Counter()

    def learn_one(self, x: Mapping[str, float], y: bool | None = None) -> None:
        self.learned[x["amount"]] += 1

    def score_one(self, x: Mapping[str, float]) -> float:
        return self.score_many([x])[0]

    def score_many(self, xs: Sequence[Mapping[str, float]]) -> list[float]:
        if any(x["amount"] == self.fails_on for x in xs):
            raise ValueError("no score for this amount (test)")
        return [0.0] * len(xs)


def counting_core(monkeypatch: pytest.MonkeyPatch) -> tuple[Core, ModelBank, Counting, Counting]:
    """A core whose models are two :class:`Counting` detectors, ``counting`` first."""
    counting, raiser = Counting("counting"), Counting("raiser")
    monkeypatch.setitem(REGISTRY, "counting", lambda s: counting)
    monkeypatch.setitem(REGISTRY, "raiser", lambda s: raiser)
    settings = Settings.load(env={}, config_file=None)
    bank = ModelBank(
        settings.detection,
        unsupervised=("counting", "raiser"),
        supervised=None,
        features=MODEL_COLUMNS,
    )
    return Core.create(settings, models=bank, deterministic=True), bank, counting, raiser


def payment(i: int, minute: int) -> dict[str, Any]:
    return {**txn(i, f"u{i}", f"shop-{i}", minute), "amount": 100.0 + i}


def test_a_batch_failed_twice_before_it_is_decided_event_by_event_is_learned_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The core fails on a batch after a model learned it, and the worker cannot load
    the state again to decide it event by event (Redis away): the batch comes again, and
    fails again, then is decided event by event. The model has learned each event once."""
    core, _, counting, raiser = counting_core(monkeypatch)
    store = MemoryStore()
    raiser.fails_on = 102.0
    batch = [payment(1, 1), payment(2, 2), payment(3, 3)]
    for _ in range(2):
        with pytest.raises(ValueError):
            core.process(batch, store.load(core.needs(batch)), now=0.0)
    out = core.isolate(batch, store.load(core.needs(batch)), now=0.0)
    assert [f.event["event_id"] for f in out.failed] == ["t2"]
    assert counting.learned == {101.0: 1, 102.0: 1, 103.0: 1}


@pytest.mark.parametrize("where", ["between two models", "after the models"])
def test_the_models_learn_each_event_once_when_a_batch_attempt_failed(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A batch attempt that failed after a model learned the batch (a later model failed
    on one event, or the decisions did): decided again event by event, the model scores
    the events it already learned without learning them again, so it has learned every
    event once; the drift streams, the vectors kept for labels and a label in the batch
    are each taken once too."""
    core, bank, counting, raiser = counting_core(monkeypatch)
    store = MemoryStore()
    core.run_batch(store, [payment(0, 0)], now=0.0)
    if where == "between two models":
        raiser.fails_on = 102.0
    else:
        real = core_module._write_profiles

        def write_profiles(latest: Any, *args: Any) -> None:
            if any(event["event_id"] == "t2" for event, *_ in latest.values()):
                raise RuntimeError("boom (test)")
            real(latest, *args)

        monkeypatch.setattr(core_module, "_write_profiles", write_profiles)
    fraud_on_t0 = {**label(0, "u0", "transaction", "tx0"), "ts": "2026-11-01T10:00:30.000Z"}
    batch = [payment(1, 1), payment(2, 2), fraud_on_t0, payment(3, 3)]
    out = core.run_batch(store, batch, now=0.0)
    assert [d["source_event_id"] for d in out.decisions] == ["t1", "t3"]
    assert [f.event["event_id"] for f in out.failed] == ["t2"]
    assert counting.learned == {100.0: 1, 101.0: 1, 102.0: 1, 103.0: 1}
    if where == "between two models":  # it failed on t2 in both attempts
        assert raiser.learned == {100.0: 1, 101.0: 1, 103.0: 1}
    assert bank.counts["labels"] == 1 and bank.counts["labels_unmatched"] == 0
    assert bank.pending.n_duplicates == 0
    # the failed attempt fed the drift streams the batch only when the models all ran
    assert bank.drift.streams["counting:transaction"].seen == (
        3 if where == "between two models" else 4
    )


def test_a_freeze_is_not_lifted_while_an_item_that_caused_it_is_not_cleared() -> None:
    """One withdrawal froze the account; another, retried again and again while frozen,
    renewed it each time. Clearing the second leaves the freeze (the first was never
    cleared), however many times the second came; clearing the first too lifts it."""
    core, store = freezing_core(), MemoryStore()
    core.run_batch(store, [withdrawal(1, 5000.0, 1)], now=0.0)
    for attempt in range(40):
        retry = {**withdrawal(2, 6000.0, 2), "event_id": f"t2-{attempt}"}
        core.run_batch(store, [retry], now=0.0)
    out = core.run_batch(store, [verdict_on(3, "transaction", "tx2", "legit", 1)], now=0.0)
    assert out.adjustments == [] and "freeze" in store.users["u1"]["actions"]
    out = core.run_batch(store, [verdict_on(4, "transaction", "tx1", "legit", 2)], now=0.0)
    assert [a["action"] for a in out.adjustments] == ["unfreeze"]


def test_a_freeze_renewed_by_more_items_than_are_kept_is_lifted_only_for_the_user() -> None:
    """Past the causes kept per action, the oldest are folded into one that only a
    verdict on the whole user clears: clearing every item still kept lifts nothing."""
    from riskmon.core import MAX_CAUSES

    core, store = freezing_core(), MemoryStore()
    for i in range(MAX_CAUSES + 3):
        core.run_batch(store, [withdrawal(i, 5000.0, i % 60)], now=0.0)
    kept = [c[0] for c in store.users["u1"]["action_by"]["freeze"] if c[0] != "*"]
    assert len(kept) == MAX_CAUSES
    for n, item in enumerate(kept):
        tx = item.split(":", 1)[1]
        verdict = {**verdict_on(100 + n, "transaction", tx, "legit", 30), "event_id": f"v{n}"}
        assert core.run_batch(store, [verdict], now=0.0).adjustments == []
    out = core.run_batch(store, [verdict_on(200, "user", "u1", "legit", 40)], now=0.0)
    assert [a["action"] for a in out.adjustments] == ["unfreeze"]


def _run(batches: list[list[dict[str, Any]]]) -> tuple[Core, MemoryStore]:
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    store = MemoryStore()
    for batch in batches:
        core.run_batch(store, batch, now=0.0)
    return core, store


def _learning(batches: list[list[dict[str, Any]]]) -> dict[str, int]:
    counts = _run(batches)[0].models.counts
    keys = ("labels_unmatched", "taught_positive", "taught_negative", "matured")
    return {k: counts[k] for k in keys}


def _later(i: int) -> dict[str, Any]:
    """Another user's payment 40 days on: what was scored before has matured."""
    return {**txn(100 + i, "u9", "shop-z", 0), "ts": "2026-12-11T10:00:00.000Z"}


def test_a_label_in_the_batch_of_the_event_it_names_teaches_the_classifier() -> None:
    """The models take a batch's verdicts after its events wait for them: a fraud label
    that arrives with the transaction it names, in one micro-batch, teaches a positive,
    as it does when the two come in separate batches; the transaction never matures
    into a negative."""
    fraud = {**label(1, "u1", "transaction", "tx1"), "ts": "2026-11-01T10:01:30.000Z"}
    together = _learning([[txn(1, "u1", "shop-a", 1), fraud], [_later(1)]])
    apart = _learning([[txn(1, "u1", "shop-a", 1)], [fraud], [_later(1)]])
    assert together == apart
    assert together["taught_positive"] == 1 and together["labels_unmatched"] == 0
    assert together["matured"] == 0


def test_a_confirmed_fraudsters_later_events_never_mature_into_negatives() -> None:
    """After a fraud verdict on a user, the user's events wait for no verdict: unlabelled,
    they would have taught the classifier that a fraudster's withdrawal is honest. An
    event before the verdict still waits, and the verdict teaches it as a positive."""
    fraud = label(1, "u1", "user", "u1")  # 2026-11-02
    after = {**txn(2, "u1", "shop-a", 3), "kind": "withdrawal", "ts": "2026-11-03T10:00:00Z"}
    counts = _learning([[txn(1, "u1", "shop-a", 1)], [fraud], [after], [_later(1)]])
    assert counts["taught_positive"] == 1  # the payment before the verdict
    assert counts["matured"] == 0 and counts["taught_negative"] == 0
    unlabelled = _learning([[txn(1, "u1", "shop-a", 1)], [after], [_later(1)]])
    assert unlabelled["matured"] == 2  # without the verdict, both wait and mature


def test_a_verdict_is_taught_before_later_events_of_its_batch_mature_its_vector() -> None:
    """A batch holding a verdict and, later in event time, an event that brings the
    named vector to maturity: the verdict is taken at its own time, first, so the vector
    is taught as what it is, never as a negative as well."""
    fraud = {**label(1, "u1", "transaction", "tx1"), "ts": "2026-11-30T10:00:00.000Z"}
    counts = _learning([[txn(1, "u1", "shop-a", 1)], [fraud, _later(1)]])
    assert counts == {
        "labels_unmatched": 0,
        "taught_positive": 1,
        "taught_negative": 0,
        "matured": 0,
    }


def test_a_verdict_earlier_in_event_time_than_the_item_it_names_still_finds_it() -> None:
    """Clocks differ between systems: a fraud verdict on a transaction dated a little
    before the transaction, in one batch with it, finds its vector (the verdict made the
    user a confirmed fraudster first, but the item it names waits for it)."""
    fraud = {**label(1, "u1", "transaction", "tx1"), "ts": "2026-11-01T10:00:30.000Z"}
    counts = _learning([[txn(1, "u1", "shop-a", 1), fraud], [_later(1)]])
    assert counts["taught_positive"] == 1 and counts["labels_unmatched"] == 0


def test_a_legit_verdict_on_a_user_judges_only_the_events_before_it() -> None:
    """A user found legit at a time says nothing of the user's later events (an account
    taken over afterwards): those wait for their own verdicts, and mature."""
    legit = {**label(1, "u1", "user", "u1"), "label": "legit", "ts": "2026-11-01T10:02:00Z"}
    counts = _learning([[txn(1, "u1", "shop-a", 1), legit, txn(2, "u1", "shop-b", 3)], [_later(1)]])
    assert counts["taught_negative"] == 2  # the payment before the verdict, then maturity
    assert counts["matured"] == 1  # the payment after it


def test_how_a_stream_is_batched_does_not_change_what_matures() -> None:
    """A payment past maturity by the time of a verdict on it is taught as a negative when
    it matures and then as the verdict says, whether the two come in one micro-batch or
    two; a late event's vector past maturity matures in its own batch, with or without
    a verdict about someone else beside it."""
    pay = txn(1, "u1", "shop-a", 1)  # 2026-11-01
    fraud = {**label(1, "u1", "transaction", "tx1"), "ts": "2026-12-11T10:00:00.000Z"}
    together, apart = _learning([[pay, fraud]]), _learning([[pay], [fraud]])
    assert together == apart
    assert together["matured"] == 1 and together["taught_positive"] == 1
    other = {**label(2, "u7", "transaction", "tx999"), "ts": "2026-12-11T09:00:00.000Z"}
    late = {**_later(1), "ts": "2026-12-11T10:00:00.000Z"}
    assert _learning([[late, pay]])["matured"] == 1
    assert _learning([[late, pay, other]])["matured"] == 1


def test_a_vector_taught_as_a_negative_when_it_matured_is_not_taught_so_again() -> None:
    """A legit verdict after the vector matured (and was taught as a negative) does not
    teach it as a negative a second time."""
    pay = txn(1, "u1", "shop-a", 1)
    legit = {**label(1, "u1", "transaction", "tx1"), "label": "legit"}
    legit["ts"] = "2026-12-12T10:00:00.000Z"
    counts = _learning([[pay], [_later(1)], [legit]])
    assert counts["matured"] == 1 and counts["taught_negative"] == 1


def _rule(
    rule_id: str,
    when: str,
    score: float,
    severity: str,
    action: str,
    applies_to: tuple[str, ...] = ("transaction", "device"),
) -> dict[str, Any]:
    return {
        "rule_id": rule_id,
        "version": 1,
        "applies_to": list(applies_to),
        "when": when,
        "score": score,
        "severity": severity,
        "action": action,
        "mode": "active",
        "reason": f"Test rule {rule_id}.",
        "enabled": True,
    }


def _core_with(*rules: dict[str, Any]) -> Core:
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    for r in rules:
        core.apply_rule(r)
    return core


def _at(event: dict[str, Any], ts: str) -> dict[str, Any]:
    return {**event, "ts": ts}


def test_a_more_severe_alert_within_the_dedup_window_is_sent() -> None:
    """Alerts are deduplicated per user and pattern (the most severe rule hit) within
    ``detection.alert_dedup_s``; an alert more severe than the one sent goes out all the
    same: a critical cash-out ten minutes after a high alert reaches the risk team."""
    core = _core_with(
        _rule("a_watch", "event.kind == 'withdrawal'", 0.6, "high", "review"),
        _rule(
            "b_big",
            "event.kind == 'withdrawal' && event.amount >= 5000.0",
            0.95,
            "critical",
            "freeze",
        ),
    )
    store = MemoryStore()
    outs = [
        core.run_batch(store, [_at(withdrawal(i, amount, 0), ts)], now=0.0)
        for i, (amount, ts) in enumerate(
            [
                (100.0, "2026-11-01T10:00:00.000Z"),
                (9000.0, "2026-11-01T10:10:00.000Z"),
                (9500.0, "2026-11-01T10:20:00.000Z"),  # critical again: deduplicated
                (100.0, "2026-11-01T10:30:00.000Z"),  # high, after a critical: too
            ]
        )
    ]
    assert [[a["severity"] for a in out.alerts] for out in outs] == [["high"], ["critical"], [], []]


def test_alert_dedup_does_not_depend_on_arrival_order() -> None:
    """Two alerts of one pattern four hours apart are two incidents, whichever arrives
    first: a late event is deduplicated against alerts near it in event time only."""
    early = _at(withdrawal(1, 100.0, 0), "2026-11-01T06:00:00.000Z")
    late = _at(withdrawal(2, 100.0, 0), "2026-11-01T10:00:00.000Z")
    near = _at(withdrawal(3, 100.0, 0), "2026-11-01T09:30:00.000Z")
    for batches, want in (
        ([[early], [late]], ["t1", "t2"]),
        ([[late, early]], ["t1", "t2"]),
        ([[late], [early]], ["t2", "t1"]),
        ([[late], [near]], ["t2"]),  # within the window of the newer alert
    ):
        core = _core_with(_rule("a_watch", "event.kind == 'withdrawal'", 0.6, "high", "review"))
        store = MemoryStore()
        sent = [a["source_event_id"] for b in batches for a in core.run_batch(store, b, 0.0).alerts]
        assert sent == want, batches


def test_no_account_action_for_an_event_without_a_user() -> None:
    """A device event before login (``user_id`` empty) has no account to freeze: a
    freezing rule on it alerts, and sends no ``freeze`` for a user ``""``."""
    core = _core_with(_rule("rooted", "event.is_rooted == true", 0.9, "critical", "freeze"))
    events = [
        {
            "event_id": f"d{i}",
            "event_type": "device",
            "user_id": "",
            "ts": f"2026-11-01T10:0{i}:00.000Z",
            "device_id": f"dev{i}",
            "kind": "install",
            "is_rooted": True,
        }
        for i in range(3)
    ]
    out = core.run_batch(MemoryStore(), events, now=0.0)
    assert [a["severity"] for a in out.alerts] == ["critical"] * 3
    assert out.adjustments == []


def test_a_late_flag_from_before_a_clearing_verdict_takes_no_action() -> None:
    """A legit verdict on the user at 11:00 lifts the freezes of the flags before it; a
    flag dated 10:30 that arrives after the verdict was taken is judged already: no new
    freeze, the account stays free, as when it came in time."""
    core_rule = _rule(
        "big", "event.kind == 'withdrawal' && event.amount > 1000.0", 0.9, "high", "freeze"
    )
    first = _at(withdrawal(1, 5000.0, 0), "2026-11-01T10:01:00.000Z")
    flag = _at(withdrawal(2, 6000.0, 0), "2026-11-01T10:30:00.000Z")
    clear = verdict_on(3, "user", "u1", "legit", 0)  # 11:00
    results = []
    for batches in (
        [[first], [flag], [clear]],
        [[first], [clear], [flag]],
        [[first], [clear, flag]],
    ):
        core, store = _core_with(core_rule), MemoryStore()
        actions = [
            (a["action"], a["source_event_id"])
            for b in batches
            for a in core.run_batch(store, b, now=0.0).adjustments
        ]
        results.append((actions, store.users["u1"]["actions"]))
    assert results == [([("freeze", "t1"), ("unfreeze", "l3")], {})] * 3


def test_a_late_flag_sends_no_action_whose_term_has_ended() -> None:
    """A flag that arrives three weeks late would freeze the account for a week that is
    over by the user's newest event: no adjustment is sent, and the profile shows none."""
    core = _core_with(
        _rule("big", "event.kind == 'withdrawal' && event.amount > 1000.0", 0.9, "high", "freeze")
    )
    store = MemoryStore()
    core.run_batch(store, [_at(withdrawal(1, 10.0, 0), "2026-11-20T10:00:00.000Z")], now=0.0)
    out = core.run_batch(store, [_at(withdrawal(2, 5000.0, 0), "2026-11-01T10:00:00.000Z")], 0.0)
    assert out.decisions[0]["decision"] == "decline"
    assert out.adjustments == []
    profile = store.get_profile("user", "u1")
    assert profile is not None and profile["actions"] == {}


def test_a_late_event_older_than_a_fraud_verdict_is_judged_without_it() -> None:
    """An application dated 10:00 that arrives after a fraud verdict dated 12:00 (taken
    in an earlier batch) is judged as it was when it happened: it passes, as it does
    when it comes in the verdict's batch; an application after the verdict is declined."""
    first = txn(0, "u1", "shop", 0)
    app = {**application(1, 0), "ts": "2026-11-01T10:30:00.000Z"}
    fraud = {**label(9, "u1", "user", "u1"), "ts": "2026-11-01T12:00:00.000Z"}
    after = {**application(2, 0), "ts": "2026-11-01T13:00:00.000Z"}
    got = []
    for batches in ([[first], [app, fraud], [after]], [[first], [fraud], [app], [after]]):
        core, store = freezing_core(), MemoryStore()
        outs = [core.run_batch(store, b, now=0.0) for b in batches]
        got.append({d["source_event_id"]: d["decision"] for o in outs for d in o.decisions})
    assert got[0] == got[1]
    assert got[1]["a1"] == "pass" and got[1]["a2"] == "decline"


def test_a_fraud_verdict_on_an_item_not_seen_marks_no_identifier() -> None:
    """A fraud verdict on a transaction the user's document does not hold (its event not
    seen yet, or a label naming the wrong user) marks nothing: it used to mark every
    identifier the user had touched, accounts the fraud never used among them."""
    core, store = freezing_core(), MemoryStore()
    core.run_batch(store, [txn(1, "u1", "shop-a", 1)], now=0.0)
    core.run_batch(store, [label(2, "u1", "transaction", "tx-unknown")], now=0.0)
    assert store.idents["account:shop-a"].fraud.keys() == set()
    assert store.users["u1"]["fraud"] is True  # the verdict on the user stands


def test_a_fraud_verdict_is_not_forgotten_for_legit_verdicts_on_other_items() -> None:
    """A user's document keeps MAX_VERDICTS verdicts: one fraud verdict followed by 64
    legit verdicts on other items leaves the user a confirmed fraudster (the room is
    made by forgetting verdicts that clear only their own item)."""
    from riskmon.core import MAX_VERDICTS

    core, store = freezing_core(), MemoryStore()
    core.run_batch(store, [txn(0, "u1", "mule", 0)], now=0.0)
    core.run_batch(store, [label(0, "u1", "transaction", "tx0")], now=0.0)
    for i in range(1, MAX_VERDICTS + 1):
        legit = {**label(i, "u1", "transaction", f"tx{i}"), "label": "legit"}
        core.run_batch(store, [{**legit, "ts": "2026-11-03T09:00:00.000Z"}], now=0.0)
    assert store.users["u1"]["fraud"] is True
    assert len(store.users["u1"]["verdicts"]) <= MAX_VERDICTS


def test_alerts_without_a_user_are_deduplicated_per_device() -> None:
    """Before login there is no user to deduplicate on: alerts of one pattern on one
    device within ``detection.alert_dedup_s`` of event time are one alert, in one batch
    or one event a batch; another device, another pattern or a later hour goes out."""

    def install(i: int, device: str, minute: int, rooted: bool = False) -> dict[str, Any]:
        return {
            "event_id": f"d{i}",
            "event_type": "device",
            "user_id": "",
            "ts": f"2026-11-01T{10 + minute // 60:02d}:{minute % 60:02d}:00.000Z",
            "device_id": device,
            "kind": "install",
            "is_emulator": True,
            "is_rooted": rooted,
        }

    events = [
        install(1, "farm", 0),
        install(2, "farm", 20),  # the same device and pattern: deduplicated
        install(3, "other", 25),  # another device
        install(4, "farm", 30, rooted=True),  # another pattern (its most severe hit)
        install(5, "farm", 40, rooted=True),  # that pattern again: deduplicated
        install(6, "farm", 140),  # more than an hour after the last farm alert
    ]
    for batches in ([events], [[e] for e in events]):
        core = _core_with(
            _rule("emulator", "event.is_emulator == true", 0.7, "high", "review"),
            _rule(
                "emulator_rooted",
                "event.is_emulator == true && event.is_rooted == true",
                0.9,
                "critical",
                "freeze",
            ),
        )
        store = MemoryStore()
        sent = [
            (a["source_event_id"], a["rule_ids"][-1])
            for b in batches
            for a in core.run_batch(store, b, now=0.0).alerts
        ]
        assert sent == [
            ("d1", "emulator"),
            ("d3", "emulator"),
            ("d4", "emulator_rooted"),
            ("d6", "emulator"),
        ], len(batches)


def _marks_and_learning(batches: list[list[dict[str, Any]]]) -> tuple[dict[str, Any], Any]:
    """What the classifier was taught and the fraud marks, after ``batches`` (a label that
    came before its item found nothing then: it counts as unmatched, hence not here)."""
    core, store = _run(batches)
    counts = core.models.counts
    keys = ("labels", "taught_positive", "taught_negative", "matured")
    marks = {k: set(v.fraud) for k, v in store.idents.items() if v.fraud}
    return {k: counts[k] for k in keys}, marks


def test_a_verdict_that_arrives_before_its_item_judges_the_item_when_it_comes() -> None:
    """The label topic may run ahead of the transaction topic: a fraud verdict on a
    transaction taken before the transaction arrives marks the transaction's account
    and teaches its vector as a positive when it comes, as when the two come in the
    other order; the vector never matures into a negative."""
    pay = txn(1, "u1", "shop-a", 1)
    fraud = label(1, "u1", "transaction", "tx1")  # a day after the payment
    in_order = _marks_and_learning([[pay], [fraud], [_later(1)]])
    label_first = _marks_and_learning([[fraud], [pay], [_later(1)]])
    assert label_first == in_order
    counts, marks = label_first
    assert counts["taught_positive"] == 1 and counts["matured"] == 0
    assert marks == {"account:shop-a": {"u1"}}


def test_a_user_verdict_judges_a_late_event_from_before_it() -> None:
    """A payment dated before a fraud verdict on its user, arriving after the verdict was
    taken, is judged by it as if it had come in time: its account is marked, and its
    vector is taught as a positive instead of maturing into a negative. A legit verdict
    teaches such a payment as a negative."""
    pay = txn(1, "u1", "shop-a", 1)
    for verdict, taught, marks in (
        ("fraud", "taught_positive", {"account:shop-a": {"u1"}}),
        ("legit", "taught_negative", {}),
    ):
        on_user = {**label(1, "u1", "user", "u1"), "label": verdict}
        in_order = _marks_and_learning([[pay], [on_user], [_later(1)]])
        late = _marks_and_learning([[on_user], [pay], [_later(1)]])
        assert late == in_order, verdict
        assert late[0][taught] == 1 and late[0]["matured"] == 0, verdict
        assert late[1] == marks, verdict


def test_a_default_leaves_the_vector_to_a_later_verdict() -> None:
    """A default is credit risk, not fraud nor honesty: the payment it names is taught
    nothing, waits for a verdict that says, and never matures into a negative; a fraud
    verdict after the default teaches it as a positive."""
    pay = txn(1, "u1", "shop-a", 1)
    default = {**label(1, "u1", "transaction", "tx1"), "label": "default"}  # a day on
    fraud = {**label(2, "u1", "transaction", "tx1"), "ts": "2026-11-20T10:00:00.000Z"}
    counts = _learning([[pay], [default], [fraud], [_later(1)]])
    assert counts["taught_positive"] == 1 and counts["labels_unmatched"] == 0
    assert counts["matured"] == 0 and counts["taught_negative"] == 0
    counts = _learning([[pay], [default], [_later(1)]])
    assert counts["taught_positive"] == counts["taught_negative"] == counts["matured"] == 0


def test_a_verdict_on_an_item_teaches_only_that_item_of_that_user() -> None:
    """Application and transaction ids are different fields, often from different
    sequences: u2's transaction "42" being fraud says nothing of u1's application "42".
    The verdict judges u2 alone, and the classifier learns one positive, not two."""
    application = {
        "event_id": "app-u1",
        "event_type": "application",
        "user_id": "u1",
        "ts": "2026-11-01T10:00:00.000Z",
        "application_id": "42",
        "device_id": "d-u1",
        "amount": 3000.0,
        "product": "cash_loan",
    }
    payment = {**txn(1, "u2", "shop-a", 5), "txn_id": "42"}
    verdict = label(1, "u2", "transaction", "42")
    core, store = _run([[application, payment], [verdict]])
    assert not store.users["u1"]["fraud"] and store.users["u2"]["fraud"]
    assert core.models.counts["taught_positive"] == 1
    assert core.models.types["application"].counts["pos"] == 0


def test_model_reasons_name_only_features_far_from_usual() -> None:
    """The features a model finds farthest from usual are named in a decision's reasons
    only when they are far (3 standard deviations or more): an ordinary value, 0.7 off,
    is not called "rare" or "far above usual" to the analyst."""
    from riskmon.core import FEATURE_REASON_Z, feature_reasons

    top = [("failed_logins_24h", 6.0, 5.2), ("payout_account_is_new", 0.0, -0.7)]
    reasons = feature_reasons(top, "transaction")
    assert [r["code"] for r in reasons] == ["feature:failed_logins_24h"]
    assert "far above usual" in reasons[0]["detail"]
    edge = feature_reasons([("x", 1.0, -FEATURE_REASON_Z)], "device")
    assert [r["code"] for r in edge] == ["feature:x"]


def test_identifier_counts_do_not_depend_on_how_the_stream_is_batched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """260 users log in through one IP within five minutes: the last login sees the same
    users and events on the IP in one batch as in batches of ten (the counts saturate at
    what a saved identifier holds, MAX_IDENT_USERS and MAX_IDENT_EVENTS)."""
    from riskmon.state import MAX_IDENT_EVENTS, MAX_IDENT_USERS

    logins = [
        {
            "event_id": f"d{i}",
            "event_type": "device",
            "user_id": f"u{i}",
            "ts": f"2026-11-01T10:{i // 60:02d}:{i % 60:02d}.000Z",
            "device_id": f"dev{i}",
            "kind": "login",
            "ip": "1.1.1.1",
        }
        for i in range(260)
    ]
    seen: dict[str, dict[str, float]] = {}
    real = core_module.observe

    def spy(event: dict[str, Any], *args: Any) -> dict[str, float]:
        seen[event["event_id"]] = f = real(event, *args)
        return f

    monkeypatch.setattr(core_module, "observe", spy)
    names = ("ip_users_1h", "ip_users_7d", "ip_events_1h", "ip_events_24h")
    got = []
    for batches in ([logins], [logins[i : i + 10] for i in range(0, 260, 10)]):
        _run(batches)
        got.append({n: seen["d259"][n] for n in names})
    assert got[0] == got[1]
    assert got[0]["ip_users_1h"] == MAX_IDENT_USERS
    assert got[0]["ip_events_1h"] == min(260, MAX_IDENT_EVENTS)


def test_a_user_document_from_before_verdicts_were_kept_is_judged_by_its_flag() -> None:
    """A user document without ``verdicts`` (written by a release that kept only the
    ``fraud`` flag) makes its user a confirmed fraudster when the flag is set: the
    user's withdrawal is declined for it; with the flag clear, it is not."""
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    store = MemoryStore()
    core.run_batch(store, [txn(1, "u1", "shop-a", 1)], now=0.0)
    user = store.users["u1"]
    assert "verdicts" not in user and user["fraud"] is False
    out = core.run_batch(store, [withdrawal(2, 50.0, 2)], now=0.0)
    assert "label:fraud" not in [r["code"] for r in out.decisions[0]["reasons"]]
    user["fraud"] = True
    out = core.run_batch(store, [withdrawal(3, 50.0, 3)], now=0.0)
    (dec,) = out.decisions
    assert dec["decision"] == "decline" and dec["score"] == 1.0
    assert "label:fraud" in [r["code"] for r in dec["reasons"]]


def test_the_items_a_scored_event_names_are_those_of_its_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The models get, with each event's vector, the applications and transactions it
    names (what a verdict on them finds): from its own fields, whatever its type (a
    device event that carries a transaction id beyond the contract names it too)."""
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    seen: dict[str, tuple[str, ...]] = {}
    score_batch = core.models.score_batch

    def recording(inputs: Any, learned: Any) -> Any:
        seen.update((i.event_id, i.targets) for i in inputs)
        return score_batch(inputs, learned)

    monkeypatch.setattr(core.models, "score_batch", recording)
    device = {
        "event_id": "d1",
        "event_type": "device",
        "user_id": "u1",
        "ts": "2026-11-01T10:00:00.000Z",
        "device_id": "dev1",
        "kind": "login",
    }
    events = [
        device,
        {**device, "event_id": "d2", "txn_id": "tx9"},
        {**device, "event_id": "d3", "loan_id": "app7"},
        {**txn(1, "u1", "shop-a", 1), "loan_id": "app1"},
        application(1, 2),
    ]
    core.run_batch(MemoryStore(), events, now=0.0)
    assert seen == {
        "d1": (),
        "d2": ("transaction:tx9",),
        "d3": ("application:app7",),
        "t1": ("transaction:tx1", "application:app1"),
        "a1": ("application:app1",),
    }
