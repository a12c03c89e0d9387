"""The starter rules (rules/lending) through the whole core, on sequences of events: the
features come from the events as they do live, not from hand-made feature dicts."""

from __future__ import annotations

from itertools import count
from typing import Any

from riskmon.contract import format_ts
from riskmon.core import Core
from riskmon.settings import Settings
from riskmon.store import MemoryStore

T0 = 1_795_860_000.0  # 2026-11-28T09:20:00Z
MIN, DAY = 60.0, 86400.0
_ids = count(1)


def ev(t: float, user: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"e{next(_ids)}", "ts": format_ts(T0 + t), "user_id": user, **fields}


def device(t: float, user: str, kind: str, device_id: str, **kw: Any) -> dict[str, Any]:
    return ev(t, user, event_type="device", kind=kind, device_id=device_id, **kw)


def txn(t: float, user: str, kind: str, amount: float, account: str, **kw: Any) -> dict[str, Any]:
    return ev(
        t,
        user,
        event_type="transaction",
        txn_id=f"tx{next(_ids)}",
        kind=kind,
        amount=amount,
        status="success",
        account_hash=account,
        **kw,
    )


def application(t: float, user: str, device_id: str, amount: float, **kw: Any) -> dict[str, Any]:
    return ev(
        t,
        user,
        event_type="application",
        application_id=f"a{next(_ids)}",
        device_id=device_id,
        amount=amount,
        product="cash_loan",
        **kw,
    )


def decide(batches: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    store, out = MemoryStore(), {}
    for batch in batches:
        for d in core.run_batch(store, batch, now=T0 + 30 * DAY).decisions:
            out[d["source_event_id"]] = d
    return out


def codes(decision: dict[str, Any]) -> list[str]:
    return [r["code"] for r in decision["reasons"]]


def test_a_takeover_cashing_out_to_an_account_never_used_is_declined() -> None:
    """Account takeover: failed logins and a SIM change from a new phone, a quick loan to
    the victim's own card, then the whole payout sent at once to an account the user never
    used, without binding it first: the cash-out is declined."""
    v = "victim"
    history = [
        device(0, v, "install", "own-phone", ip="1.1.1.1", sim_hash="s-old"),
        txn(60, v, "card_bind", 0.0, "card-own", device_id="own-phone"),
        application(120, v, "own-phone", 2000.0, bank_card_hash="card-own"),
        txn(600, v, "disbursement", 2000.0, "card-own"),
        txn(20 * DAY, v, "repayment", 2100.0, "card-own", device_id="own-phone"),
    ]
    a = 25 * DAY
    attack = [
        device(a, v, "login_failed", "atk-phone", ip="9.9.9.9"),
        device(a + 1 * MIN, v, "login_failed", "atk-phone", ip="9.9.9.9"),
        device(a + 2 * MIN, v, "login_failed", "atk-phone", ip="9.9.9.9"),
        device(a + 5 * MIN, v, "sim_change", "atk-phone", ip="9.9.9.9", sim_hash="s-new"),
        device(a + 15 * MIN, v, "login", "atk-phone", ip="9.9.9.9"),
        application(a + 20 * MIN, v, "atk-phone", 2000.0, bank_card_hash="card-own"),
        txn(a + 25 * MIN, v, "disbursement", 2000.0, "card-own"),
    ]
    cash_out = txn(a + 30 * MIN, v, "transfer_out", 2000.0, "mule-acct", device_id="atk-phone")
    out = decide([history, [*attack, cash_out]])
    decision = out[cash_out["event_id"]]
    assert decision["decision"] == "decline", codes(decision)
    assert "rule:ato_cashout_after_takeover" in codes(decision)


def test_fresh_accounts_on_one_phone_and_network_are_declined() -> None:
    """A farm: four fresh accounts on one real phone and one network, applying an hour or
    so apart (too slow for a count over one hour): the fourth application is declined by
    the shared device and network."""
    events, fourth = [], None
    for k in range(4):
        user, t = f"farm{k}", k * 70 * MIN
        events.append(device(t, user, "login", "rack-phone-1", ip="10.9.8.7", wifi_hash="w-farm"))
        fourth = application(t + 2 * MIN, user, "rack-phone-1", 3000.0, ip="10.9.8.7")
        events.append(fourth)
    assert fourth is not None
    decision = decide([events])[fourth["event_id"]]
    assert "rule:farm_fresh_accounts_shared_device" in codes(decision), codes(decision)
    assert decision["decision"] == "decline"


def test_an_honest_new_phone_login_with_imprecise_places_passes() -> None:
    """A customer installs the app on a new phone and logs in seconds later; the install
    has a coarse (cell tower) place 2 km from the login's GPS fix. That is no travel:
    the login passes."""
    u = "honest"
    old = [
        device(0, u, "install", "old-phone", ip="1.1.1.1", geo={"lat": 39.900, "lon": 116.400}),
        device(5 * DAY, u, "login", "old-phone", ip="1.1.1.1", geo={"lat": 39.901, "lon": 116.401}),
    ]
    t = 10 * DAY
    new_phone = [
        device(t, u, "install", "new-phone", ip="1.1.1.1", geo={"lat": 39.918, "lon": 116.400}),
        device(t + 8, u, "login", "new-phone", ip="1.1.1.1", geo={"lat": 39.900, "lon": 116.400}),
    ]
    login = decide([old, new_phone])[new_phone[1]["event_id"]]
    assert login["decision"] == "pass", codes(login)


def test_a_late_application_from_before_a_fraud_verdict_is_judged_without_it() -> None:
    """Three users share a phone; one is confirmed a fraudster at 10:10. Another user's
    application of 10:05 is judged without that verdict, whether it comes in the
    verdict's batch or arrives after it: the phone's fraud marks carry the label's time."""
    setup = [
        application(0, "fr", "shared-phone", 1000.0),
        application(1 * MIN, "u2", "shared-phone", 1000.0),
        application(2 * MIN, "u3", "shared-phone", 1000.0),
    ]
    verdict = ev(
        10 * MIN, "fr", event_type="label", target_type="user", target_id="fr", label="fraud"
    )
    late = application(5 * MIN, "u3", "shared-phone", 1200.0)
    together = decide([setup, [verdict, late]])[late["event_id"]]
    arrived_late = decide([setup, [verdict], [late]])[late["event_id"]]
    assert (arrived_late["decision"], codes(arrived_late)) == (
        together["decision"],
        codes(together),
    )
    assert "rule:farm_device_linked_to_fraud" not in codes(arrived_late)
    after = application(15 * MIN, "u3", "shared-phone", 1200.0)  # after it: it counts
    assert "rule:farm_device_linked_to_fraud" in codes(
        decide([setup, [verdict], [after]])[after["event_id"]]
    )
