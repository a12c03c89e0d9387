"""Each fraud pattern and honest look-alike shows up with its truth and its signature."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import pairwise
from typing import Any

from riskmon.sim.clock import parse_ts
from riskmon.sim.config import SimConfig
from riskmon.sim.generator import simulate
from riskmon.sim.patterns import FRAUD_PATTERNS, LOOKALIKE_PATTERNS

Pair = tuple[dict[str, Any], dict[str, Any]]
HOUR_MS = 3_600_000


def joined(run: Any) -> list[Pair]:
    events, truth = run
    rows = {r["event_id"]: r for r in truth}
    return [(e, rows[e["event_id"]]) for e in events if e["event_type"] != "label"]


def incidents(run: Any, pattern: str) -> dict[str, list[Pair]]:
    out: dict[str, list[Pair]] = defaultdict(list)
    for ev, row in joined(run):
        if row["pattern"] == pattern:
            out[row["incident"]].append((ev, row))
    return dict(out)


def test_every_pattern_appears_at_the_default_fraud_rate_with_few_users() -> None:
    """300 users, default rates: all four fraud patterns and four look-alikes are there."""
    _, truth = simulate(SimConfig(seed=2, users=300, days=21))
    fraud = {r["pattern"] for r in truth if r["is_fraud"]}
    honest = {r["pattern"] for r in truth if not r["is_fraud"]}
    assert fraud == set(FRAUD_PATTERNS)
    assert set(LOOKALIKE_PATTERNS) <= honest
    cash_outs = {r["pattern"] for r in truth if r["is_fraud"] and r["money_out"] > 0}
    assert cash_outs == set(FRAUD_PATTERNS)


def test_share_of_fraud_users_is_about_the_fraud_rate(default_run: Any) -> None:
    _, truth = default_run
    users: dict[str, bool] = {}
    for r in truth:
        if r["user_id"]:
            users[r["user_id"]] = users.get(r["user_id"], False) or r["is_fraud"]
    share = sum(users.values()) / len(users)
    assert 0.02 <= share <= 0.04
    assert 780 <= len(users) <= 800


def test_each_fraud_pattern_has_many_incidents(fraud_heavy_run: Any) -> None:
    _, truth = fraud_heavy_run
    per_pattern = Counter()
    for incident in {(r["pattern"], r["incident"]) for r in truth if r["is_fraud"]}:
        per_pattern[incident[0]] += 1
    for pattern in FRAUD_PATTERNS:
        assert per_pattern[pattern] >= 3, per_pattern


def test_device_farms_pack_fresh_identities_on_few_devices_or_one_network(
    fraud_heavy_run: Any,
) -> None:
    for incident, pairs in incidents(fraud_heavy_run, "device_farm").items():
        users = {e["user_id"] for e, _ in pairs if e["user_id"]}
        devices = {e["device_id"] for e, _ in pairs if "device_id" in e}
        wifis = {e["wifi_hash"] for e, _ in pairs if "wifi_hash" in e}
        assert all(r["is_fraud"] for _, r in pairs)
        assert any(e.get("kind") == "install" for e, _ in pairs), "fresh identities sign up"
        if len(users) > 1:
            assert len(devices) < len(users) or len(wifis) == 1, incident
        for e, _ in pairs:
            if e["event_type"] == "application":
                signup = min(x["ts"] for x, _ in pairs if x["user_id"] == e["user_id"])
                assert parse_ts(e["ts"]) - parse_ts(signup) < 2 * HOUR_MS


def test_account_takeover_follows_the_takeover_sequence_before_a_fast_cash_out(
    fraud_heavy_run: Any,
) -> None:
    """Failed logins, SIM change or reset, new device, new card, loan, money out."""
    pairs = joined(fraud_heavy_run)
    history: dict[str, list[Pair]] = defaultdict(list)
    for ev, row in pairs:
        history[ev["user_id"]].append((ev, row))
    checked = 0
    for _incident, ato in incidents(fraud_heavy_run, "account_takeover").items():
        outs = [e for e, r in ato if r["step"] == "cash_out"]
        if not outs:
            continue
        checked += 1
        user = ato[0][0]["user_id"]
        first_step = ato[0][0]["ts"]
        before = [e for e, r in history[user] if not r["is_fraud"] and e["ts"] < first_step]
        assert before, "the victim had honest activity before the takeover"
        kinds = [e.get("kind") for e, _ in ato]
        assert "sim_change" in kinds or "password_reset" in kinds
        assert kinds.count("login_failed") >= 2
        known_devices = {e.get("device_id") for e in before}
        assert ato[0][0]["device_id"] not in known_devices
        bind = next(e for e, _ in ato if e.get("kind") == "card_bind")
        assert bind["account_hash"] not in {e.get("account_hash") for e in before}
        assert parse_ts(outs[0]["ts"]) - parse_ts(first_step) < 2 * HOUR_MS
    assert checked >= 3


def test_multi_lending_bursts_applications_with_inflated_income_and_many_loan_apps(
    fraud_heavy_run: Any,
) -> None:
    for _incident, pairs in incidents(fraud_heavy_run, "multi_lending").items():
        burst = [e for e, r in pairs if r["is_fraud"] and e["event_type"] == "application"]
        earlier = [e for e, r in pairs if not r["is_fraud"] and e["event_type"] == "application"]
        if len(burst) < 2:
            continue
        assert len(burst) >= 4
        assert parse_ts(burst[-1]["ts"]) - parse_ts(burst[0]["ts"]) <= 6 * HOUR_MS
        assert len({e["product"] for e in burst}) >= 2 or len(burst) < 4
        if earlier:
            assert (
                min(e["declared_monthly_income"] for e in burst)
                > earlier[0]["declared_monthly_income"]
            )
        apps_seen = [
            e["loan_apps_installed"]
            for e, r in pairs
            if r["is_fraud"] and e["event_type"] == "device"
        ]
        assert max(apps_seen) >= 12


def test_bust_out_repays_a_small_loan_then_pays_a_large_one_to_a_shared_account(
    fraud_heavy_run: Any,
) -> None:
    for _incident, pairs in incidents(fraud_heavy_run, "bust_out").items():
        disbursed_to: dict[str, set[str]] = defaultdict(set)
        for e, r in pairs:
            if e.get("kind") == "disbursement" and r["is_fraud"]:
                disbursed_to[e["account_hash"]].add(e["user_id"])
        if sum(len(u) for u in disbursed_to.values()) < 2:
            continue
        assert max(len(u) for u in disbursed_to.values()) >= 2, "a mule account shared"
        for user in {u for us in disbursed_to.values() for u in us}:
            mine = [(e, r) for e, r in pairs if e["user_id"] == user]
            big = next(e for e, r in mine if r["is_fraud"] and e["event_type"] == "application")
            small = [e for e, r in mine if not r["is_fraud"] and e["event_type"] == "application"]
            repaid = [
                e for e, r in mine if e.get("kind") == "repayment" and e["status"] == "success"
            ]
            if small:
                assert small[0]["amount"] <= 2000 < big["amount"]
                assert repaid and repaid[0]["ts"] < big["ts"]
                assert repaid[0]["days_past_due"] == 0


def test_family_members_share_one_phone(default_run: Any) -> None:
    for _incident, pairs in incidents(default_run, "lookalike_family_phone").items():
        users_by_device: dict[str, set[str]] = defaultdict(set)
        for e, _ in pairs:
            if e["event_type"] == "device" and e["user_id"]:
                users_by_device[e["device_id"]].add(e["user_id"])
        assert 2 <= max(len(u) for u in users_by_device.values()) <= 3


def test_students_share_the_campus_network_on_their_own_phones(default_run: Any) -> None:
    for _incident, pairs in incidents(default_run, "lookalike_campus").items():
        users = {e["user_id"] for e, _ in pairs if e["user_id"]}
        ip_users: dict[str, set[str]] = defaultdict(set)
        device_users: dict[str, set[str]] = defaultdict(set)
        wifis = set()
        for e, _ in pairs:
            if e["event_type"] == "device" and e["user_id"]:
                device_users[e["device_id"]].add(e["user_id"])
                ip_users[e["ip"]].add(e["user_id"])
                wifis.add(e.get("wifi_hash"))
        assert max(len(u) for u in ip_users.values()) >= 0.8 * len(users)
        assert len(wifis - {None}) <= 3
        assert all(len(u) == 1 for u in device_users.values())


def test_new_phone_new_card_has_no_takeover_markers(default_run: Any) -> None:
    found = 0
    for _incident, pairs in incidents(default_run, "lookalike_new_phone_card").items():
        kinds = Counter(e.get("kind") for e, _ in pairs)
        assert kinds["sim_change"] == kinds["password_reset"] == kinds["login_failed"] == 0
        devices = {e["device_id"] for e, _ in pairs if e["event_type"] == "device"}
        sims = {e["sim_hash"] for e, _ in pairs if e["event_type"] == "device"}
        if kinds["install"] and kinds["card_bind"]:
            found += 1
            assert len(devices) == 2 and len(sims) == 1
    assert found >= 3


def test_emulator_testers_borrow_little_and_never_share_payout_accounts(default_run: Any) -> None:
    pairs = joined(default_run)
    account_users: dict[str, set[str]] = defaultdict(set)
    for e, _ in pairs:
        if e["event_type"] == "transaction" and e["kind"] in ("disbursement", "card_bind"):
            account_users[e["account_hash"]].add(e["user_id"])
    testers = [(e, r) for e, r in pairs if r["pattern"] == "lookalike_emulator_tester"]
    assert testers
    for e, _ in testers:
        if e["event_type"] == "device":
            assert e["is_emulator"] is True
        if e["event_type"] == "application":
            assert e["amount"] <= 1000
        if e["event_type"] == "transaction" and e["kind"] == "disbursement":
            assert len(account_users[e["account_hash"]]) == 1


def test_honest_loans_have_realistic_amounts_terms_and_devices(default_run: Any) -> None:
    pairs = [(e, r) for e, r in joined(default_run) if r["pattern"] == "honest"]
    cash = [e for e, _ in pairs if e["event_type"] == "application" and e["product"] == "cash_loan"]
    assert cash
    assert all(500 <= e["amount"] <= 20000 and 7 <= e["term_days"] <= 365 for e in cash)
    apps = Counter(e["loan_apps_installed"] for e, _ in pairs if e["event_type"] == "device")
    assert sum(apps[n] for n in range(1, 6)) / sum(apps.values()) > 0.75
    ages = [e["age"] for e, _ in pairs if e["event_type"] == "application"]
    assert min(ages) >= 18 and max(ages) <= 65


def test_honest_activity_follows_the_daily_rhythm(default_run: Any) -> None:
    """Busy in the day and evening (China time), quiet at night."""
    hours = Counter(
        ((parse_ts(e["ts"]) // HOUR_MS) + 8) % 24
        for e, r in joined(default_run)
        if r["pattern"] == "honest" and e["event_type"] == "device"
    )
    night = sum(hours[h] for h in range(1, 6))
    evening = sum(hours[h] for h in range(19, 24))
    assert evening > 8 * night


def test_honest_borrowers_repay_mostly_on_time_some_late_some_default(default_run: Any) -> None:
    events, truth = default_run
    rows = {r["event_id"]: r for r in truth}
    repayments = [
        e for e in events if e.get("kind") == "repayment" and not rows[e["event_id"]]["is_fraud"]
    ]
    on_time = sum(1 for e in repayments if e["status"] == "success" and e["days_past_due"] == 0)
    late = sum(1 for e in repayments if e["status"] == "success" and e["days_past_due"] > 0)
    failed = sum(1 for e in repayments if e["status"] == "failed")
    assert on_time > 5 * late > 0
    assert failed > 0
    honest_users = {r["user_id"] for r in truth if r["pattern"] == "honest"}
    defaults = [
        e
        for e in events
        if e["event_type"] == "label" and e["label"] == "default" and e["user_id"] in honest_users
    ]
    assert defaults


def test_some_declined_applications_are_retried_smaller_after_a_pause(default_run: Any) -> None:
    events, truth = default_run
    rows = {r["event_id"]: r for r in truth}
    disbursed = {e["loan_id"] for e in events if e.get("kind") == "disbursement"}
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["event_type"] == "application" and rows[e["event_id"]]["pattern"] == "honest":
            by_user[e["user_id"]].append(e)
    retries = 0
    for apps in by_user.values():
        for first, second in pairwise(apps):
            gap = parse_ts(second["ts"]) - parse_ts(first["ts"])
            if first["application_id"] not in disbursed and second["amount"] < first["amount"]:
                assert gap >= 30 * 60 * 1000
                retries += 1
    assert retries >= 3
