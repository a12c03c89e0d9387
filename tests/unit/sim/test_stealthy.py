"""``--stealthy`` fraud is slower and quieter than the default, measurably."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from riskmon.sim.clock import parse_ts

HOUR_MS = 3_600_000


def _fraud_by_incident(run: Any, pattern: str) -> dict[str, list[dict[str, Any]]]:
    _, truth = run
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in truth:
        if row["pattern"] == pattern and row["is_fraud"]:
            out[row["incident"]].append(row)
    return out


def _median_hours_first_step_to_cash_out(run: Any, pattern: str) -> float:
    gaps = []
    for rows in _fraud_by_incident(run, pattern).values():
        outs = [r for r in rows if r["step"] == "cash_out"]
        if outs:
            gaps.append((parse_ts(outs[0]["ts"]) - parse_ts(rows[0]["ts"])) / HOUR_MS)
    assert len(gaps) >= 3
    return statistics.median(gaps)


def _median_cash_out_spread_hours(run: Any) -> float:
    """Per loan: time from the first to the last cash-out of its disbursement."""
    events, truth = run
    rows = {r["event_id"]: r for r in truth}
    per_loan: dict[str, list[int]] = defaultdict(list)
    for e in events:
        if e["event_type"] == "transaction" and rows[e["event_id"]]["step"] == "cash_out":
            per_loan[e["loan_id"]].append(parse_ts(e["ts"]))
    return statistics.median((max(t) - min(t)) / HOUR_MS for t in per_loan.values())


def test_account_takeover_takes_longer_from_first_step_to_cash_out(
    fraud_heavy_run: Any, stealthy_run: Any
) -> None:
    loud = _median_hours_first_step_to_cash_out(fraud_heavy_run, "account_takeover")
    quiet = _median_hours_first_step_to_cash_out(stealthy_run, "account_takeover")
    assert loud < 1.5
    assert quiet > 5 * loud and quiet > 4


def test_every_fraud_pattern_is_slower_to_cash_out(fraud_heavy_run: Any, stealthy_run: Any) -> None:
    for pattern in ("device_farm", "multi_lending", "bust_out"):
        loud = _median_hours_first_step_to_cash_out(fraud_heavy_run, pattern)
        quiet = _median_hours_first_step_to_cash_out(stealthy_run, pattern)
        assert quiet > 2 * loud, pattern


def test_stealthy_takeovers_fail_fewer_logins(fraud_heavy_run: Any, stealthy_run: Any) -> None:
    def failed_per_incident(run: Any) -> float:
        incidents = _fraud_by_incident(run, "account_takeover")
        fails = [sum(r["step"] == "login_failed" for r in rows) for rows in incidents.values()]
        return statistics.mean(fails)

    assert failed_per_incident(stealthy_run) < 1 < 2 <= failed_per_incident(fraud_heavy_run)


def _farm_sharing(run: Any) -> list[tuple[int, int]]:
    """Per farm: (most identities on one device, most identities on one Wi-Fi)."""
    events, truth = run
    rows = {r["event_id"]: r for r in truth}
    on_device: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    on_wifi: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for e in events:
        if e["event_type"] != "device" or not e["user_id"]:
            continue
        row = rows[e["event_id"]]
        if row["pattern"] == "device_farm":
            on_device[row["incident"]][e["device_id"]].add(e["user_id"])
            if "wifi_hash" in e:
                on_wifi[row["incident"]][e["wifi_hash"]].add(e["user_id"])
    return [
        (max(map(len, on_device[i].values())), max(map(len, on_wifi[i].values()), default=0))
        for i in on_device
    ]


def test_stealthy_farms_put_fewer_identities_on_each_device(
    fraud_heavy_run: Any, stealthy_run: Any
) -> None:
    """Loud farms pack 3+ identities on a device or all on one Wi-Fi; quiet ones <= 2."""
    for per_device, per_wifi in _farm_sharing(fraud_heavy_run):
        assert per_device >= 3 or per_wifi >= 3
    assert all(per_device <= 2 for per_device, _ in _farm_sharing(stealthy_run))


def test_stealthy_cash_outs_are_smaller_and_spread_over_hours(
    fraud_heavy_run: Any, stealthy_run: Any
) -> None:
    def median_amount(run: Any) -> float:
        _, truth = run
        return statistics.median(r["money_out"] for r in truth if r["step"] == "cash_out")

    assert median_amount(stealthy_run) < 0.5 * median_amount(fraud_heavy_run)
    assert _median_cash_out_spread_hours(fraud_heavy_run) < 0.25
    assert _median_cash_out_spread_hours(stealthy_run) > 2
