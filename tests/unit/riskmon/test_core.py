"""The core's handling of labels and actions, on the in-memory store."""

from __future__ import annotations

from typing import Any

from riskmon.core import Core
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
    assert store.idents["account:shop-b"].fraud == {"u1"}
    assert store.idents["account:shop-a"].fraud == set()
    core.run_batch(store, [label(2, "u1", "user", "u1")], now=0.0)
    assert store.idents["account:shop-a"].fraud == {"u1"}
    assert store.users["u1"]["fraud"] is True
