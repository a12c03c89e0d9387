"""The core judges events the same whatever order the input topics deliver them in and
however the stream is batched: labels ahead of their events, shares of identifiers."""

from __future__ import annotations

from typing import Any

from riskmon.core import Core
from riskmon.settings import Settings
from riskmon.store import MemoryStore


def _app(eid: str, user: str, hhmm: str) -> dict[str, Any]:
    return {
        "event_id": eid,
        "event_type": "application",
        "user_id": user,
        "ts": f"2026-11-01T{hhmm}:00.000Z",
        "application_id": f"app-{eid}",
        "device_id": "shared-phone",
        "amount": 500.0,
        "product": "cash_loan",
    }


def _verdict(eid: str, what: str, hhmm: str) -> dict[str, Any]:
    return {
        "event_id": eid,
        "event_type": "label",
        "user_id": "u1",
        "ts": f"2026-11-01T{hhmm}:00.000Z",
        "target_type": "user",
        "target_id": "u1",
        "label": what,
    }


def _core() -> Core:
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    core.apply_rule(
        {
            "rule_id": "review_device_of_fraudster",
            "version": 1,
            "applies_to": ["application"],
            "when": "features.device_fraud_share > 0.0",
            "score": 0.6,
            "severity": "medium",
            "action": "review",
            "mode": "active",
            "reason": "Device used by a confirmed fraudster.",
            "enabled": True,
        }
    )
    return core


def test_a_fraud_verdict_taken_back_later_still_marks_a_late_events_identifiers() -> None:
    """u1 applies at 10:05 from a phone; a fraud verdict on u1 at 10:10 is taken back by
    a legit one at 10:20 (a takeover victim); u2 applies from the same phone at 10:30. The
    fraud verdict marks the phone (marks stay when a verdict is taken back) and u2 is
    reviewed, whether u1's application comes before the verdicts or after them (the
    labels topic running ahead)."""
    a1, fraud, legit, a2 = (
        _app("a1", "u1", "10:05"),
        _verdict("l1", "fraud", "10:10"),
        _verdict("l2", "legit", "10:20"),
        _app("a2", "u2", "10:30"),
    )
    decided = []
    for order in ([a1, fraud, legit, a2], [fraud, legit, a1, a2]):
        core, store = _core(), MemoryStore()
        outs = [core.run_batch(store, [event], now=0.0) for event in order]
        d = {x["source_event_id"]: x for out in outs for x in out.decisions}
        decided.append((d["a2"]["rule_ids"], sorted(store.idents["device:shared-phone"].fraud)))
    assert decided[0] == decided[1]


def test_a_fraud_verdict_on_an_application_marks_that_applications_identifiers() -> None:
    """u1's application 42 came from device dev-app; u1's transaction 42 (an id of
    another table) paid out to account acct-txn from device dev-txn. A fraud verdict on
    application 42 marks dev-app, where the fraud happened, not the transaction's device
    and account."""
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    store = MemoryStore()
    app = {
        "event_id": "a1",
        "event_type": "application",
        "user_id": "u1",
        "ts": "2026-11-01T10:00:00.000Z",
        "application_id": "42",
        "device_id": "dev-app",
        "amount": 500.0,
        "product": "cash_loan",
    }
    txn = {
        "event_id": "t1",
        "event_type": "transaction",
        "user_id": "u1",
        "ts": "2026-11-01T10:30:00.000Z",
        "txn_id": "42",
        "kind": "payment",
        "amount": 50.0,
        "status": "success",
        "device_id": "dev-txn",
        "account_hash": "acct-txn",
    }
    verdict = {
        "event_id": "l1",
        "event_type": "label",
        "user_id": "u1",
        "ts": "2026-11-01T11:00:00.000Z",
        "target_type": "application",
        "target_id": "42",
        "label": "fraud",
    }
    for event in (app, txn, verdict):
        core.run_batch(store, [event], now=0.0)
    marked = sorted(k for k, ident in store.idents.items() if ident.fraud)
    assert marked == ["device:dev-app"]


def _at(second: int) -> str:
    return f"2026-11-01T{10 + second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}.000Z"


def _login(k: int, second: int) -> dict[str, Any]:
    return {
        "event_id": f"d{k}",
        "event_type": "device",
        "user_id": f"u{k}",
        "ts": _at(second),
        "device_id": f"dev{k}",
        "kind": "login",
        "ip": "10.9.8.7",
    }


def _fraud_label(k: int, second: int) -> dict[str, Any]:
    return {
        "event_id": f"l{k}",
        "event_type": "label",
        "user_id": f"u{k}",
        "ts": _at(second),
        "target_type": "user",
        "target_id": f"u{k}",
        "label": "fraud",
    }


def test_ip_fraud_share_is_the_same_however_the_stream_is_batched() -> None:
    """260 users log in from one IP, the first ten confirmed fraudsters. The last login's
    ip_fraud_share is the same in one batch as in batches of ten: the share's users
    saturate at what a saved identifier holds (MAX_IDENT_USERS), as the counts do."""
    rule = {
        "rule_id": "review_shared_ip_fraud",
        "version": 1,
        "applies_to": ["device"],
        "when": "features.ip_fraud_share >= 0.045",
        "score": 0.6,
        "severity": "medium",
        "action": "review",
        "mode": "active",
        "reason": "IP shared with confirmed fraudsters.",
        "enabled": True,
    }
    stream = [_login(k, 10 * k) for k in range(10)]
    stream += [_fraud_label(k, 100 + k) for k in range(10)]
    stream += [_login(k, 10 * k + 5) for k in range(10, 260)]
    decided = []
    for size in (len(stream), 10):
        core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
        core.apply_rule(rule)
        store = MemoryStore()
        last = None
        for i in range(0, len(stream), size):
            out = core.run_batch(store, stream[i : i + size], now=0.0)
            for d in out.decisions:
                if d["source_event_id"] == "d259":
                    last = d["rule_ids"]
        decided.append(last)
    assert decided[0] == decided[1]


def _application(eid: str, user: str, ts: str) -> dict[str, Any]:
    return {
        "event_id": eid,
        "event_type": "application",
        "user_id": user,
        "ts": ts,
        "application_id": f"app-{eid}",
        "device_id": f"dev-{user}",
        "amount": 500.0,
        "product": "cash_loan",
    }


def test_a_default_ahead_of_its_application_holds_it_as_in_arrival_order() -> None:
    """u1's application of 10:00 defaults (a label at 12:00). Whether the default comes
    after the application or before it (the labels topic ahead), the application's
    vector is held: 31 days on (past label_maturity_s) it has not matured into a
    negative."""
    app = _application("a1", "u1", "2026-11-01T10:00:00.000Z")
    default = {
        "event_id": "l1",
        "event_type": "label",
        "user_id": "u1",
        "ts": "2026-11-01T12:00:00.000Z",
        "target_type": "application",
        "target_id": "app-a1",
        "label": "default",
    }
    later = _application("a2", "u2", "2026-12-02T10:00:00.000Z")  # moves event time past maturity
    taught = []
    for order in ([app, default, later], [default, app, later]):
        core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
        store = MemoryStore()
        for event in order:
            core.run_batch(store, [event], now=0.0)
        taught.append(core.models.counts["matured"])
    assert taught[0] == taught[1] == 0
