"""Feature families, computed at event time from the state before the event."""

from __future__ import annotations

from typing import Any

import pytest

from riskmon.contract import parse_ts
from riskmon.features import FEATURE_NAMES, NEVER, observe
from riskmon.state import IdentState, new_user_state
from rules.features import KNOWN_FEATURES

T0 = 1_800_000_000.0


class Timeline:
    """Feeds one user's (or several users') events through observe() in order."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.idents: dict[str, IdentState] = {}
        self.n = 0

    def feed(self, minutes: float, **event: Any) -> dict[str, float]:
        self.n += 1
        event.setdefault("event_id", f"e{self.n}")
        event.setdefault("user_id", "u1")
        ts = T0 + minutes * 60
        uid = event["user_id"]
        user = self.users.setdefault(uid, new_user_state(ts)) if uid else None
        return observe(event, ts, user, self.idents)


def dev(**kw: Any) -> dict[str, Any]:
    return {"event_type": "device", "device_id": "d1", "kind": "login", **kw}


def app(**kw: Any) -> dict[str, Any]:
    base = {
        "event_type": "application",
        "device_id": "d1",
        "application_id": "a",
        "amount": 1000.0,
        "product": "cash_loan",
    }
    return {**base, **kw}


def txn(**kw: Any) -> dict[str, Any]:
    return {"event_type": "transaction", "txn_id": "t", "status": "success", **kw}


def test_catalogue_matches_what_rules_may_use() -> None:
    """Every feature computed is known to the rule compiler, and vice versa."""
    assert set(FEATURE_NAMES) == set(KNOWN_FEATURES)


def test_user_history_new_device_sim_change_reset_and_failed_login() -> None:
    """Times since a new device, SIM change, password reset and failed login."""
    tl = Timeline()
    f = tl.feed(0, **dev(kind="install"))
    assert f["minutes_since_new_device"] == NEVER and f["user_devices_count"] == 1
    tl.feed(10, **dev(kind="login_failed"))
    tl.feed(11, **dev(kind="login_failed"))
    tl.feed(12, **dev(kind="sim_change", sim_hash="s2"))
    tl.feed(13, **dev(kind="password_reset"))
    f = tl.feed(20, **dev(device_id="d2"))
    assert f["minutes_since_new_device"] == 0.0
    assert f["user_devices_count"] == 2
    assert f["failed_logins_24h"] == 2
    assert f["minutes_since_failed_login"] == pytest.approx(9.0)
    assert f["minutes_since_sim_change"] == pytest.approx(8.0)
    assert f["minutes_since_password_reset"] == pytest.approx(7.0)
    f = tl.feed(20 + 25 * 60, **dev(device_id="d2"))
    assert f["failed_logins_24h"] == 0, "failed logins older than a day no longer count"
    assert f["account_age_days"] == pytest.approx((20 + 25 * 60) / 1440)


def test_amount_against_own_history_and_income_change() -> None:
    """Amount ratios compare with the user's prior amounts; income with the last one."""
    tl = Timeline()
    f = tl.feed(0, **app(amount=1000.0, declared_monthly_income=5000.0))
    assert f["amount_to_max_ratio"] == 1.0 and f["income_change_ratio"] == 1.0
    tl.feed(60, **app(amount=3000.0, declared_monthly_income=5000.0))
    f = tl.feed(120, **app(amount=9000.0, declared_monthly_income=20000.0))
    assert f["amount_to_max_ratio"] == pytest.approx(3.0)
    assert f["amount_to_mean_ratio"] == pytest.approx(9000.0 / 2000.0)
    assert f["income_change_ratio"] == pytest.approx(4.0)
    assert f["prior_applications"] == 2


def test_velocity_of_applications_over_windows() -> None:
    """Applications, amounts and distinct amounts per user over 1 h, 24 h and 7 d."""
    tl = Timeline()
    tl.feed(0, **app(amount=500.0))
    tl.feed(30, **app(amount=800.0))
    tl.feed(50, **app(amount=800.0))
    f = tl.feed(55, **app(amount=1200.0))
    assert (f["user_apps_1h"], f["user_apps_24h"], f["user_apps_7d"]) == (4, 4, 4)
    assert f["user_amount_24h"] == pytest.approx(3300.0)
    assert f["user_distinct_amounts_24h"] == 3
    f = tl.feed(60 * 30, **app(amount=100.0))
    assert (f["user_apps_1h"], f["user_apps_24h"], f["user_apps_7d"]) == (1, 1, 5)


def test_velocity_of_applications_per_identifier_over_windows() -> None:
    """Applications, amounts and distinct amounts per identifier over 1 h and 24 h, from
    every user: a farm device and a shared id number show them, other events read them."""
    tl = Timeline()
    for i, (minutes, amount) in enumerate([(0, 500.0), (20, 800.0), (40, 800), (70, 3000.0)]):
        f = tl.feed(
            minutes,
            **app(user_id=f"u{i}", application_id=f"a{i}", amount=amount, id_hash="id-1"),
        )
    assert (f["device_apps_1h"], f["device_apps_24h"]) == (3, 4)
    assert f["device_app_amount_24h"] == pytest.approx(5100.0)
    assert f["device_distinct_amounts_24h"] == 3  # 800 and 800.0 are one amount
    assert (f["idnum_apps_24h"], f["idnum_distinct_amounts_24h"]) == (4, 3)
    assert f["phone_apps_24h"] == 0 and f["account_apps_24h"] == 0  # not on these events
    f = tl.feed(75, **dev(user_id="u9"))  # a login on the farm device sees its applications
    assert (f["device_apps_1h"], f["device_apps_24h"]) == (3, 4)
    f = tl.feed(60 * 24 + 30, **app(user_id="u5", application_id="a5", amount=100.0))
    assert (f["device_apps_1h"], f["device_apps_24h"]) == (1, 3)  # a0 and a1 left 24 h
    assert f["device_app_amount_24h"] == pytest.approx(3900.0)
    f = tl.feed(60 * 24 * 9, **dev(user_id="u9"))
    assert f["device_apps_24h"] == 0 and tl.idents["device:d1"].apps  # kept until trimmed


def test_repayment_record_and_payout_account_and_cash_out() -> None:
    """Failed and late repayments; a new payout account; share of a disbursement out."""
    tl = Timeline()
    tl.feed(0, **txn(kind="card_bind", amount=0.0, account_hash="c1"))
    tl.feed(10, **txn(kind="repayment", amount=100.0, status="failed", days_past_due=3))
    tl.feed(20, **txn(kind="repayment", amount=100.0, days_past_due=5))
    f = tl.feed(60 * 24 * 3, **txn(kind="card_bind", amount=0.0, account_hash="c2"))
    assert f["minutes_since_new_payout_account"] == 0.0
    assert f["payout_account_is_new"] == 1.0
    assert (f["failed_repayments"], f["late_repayments"], f["max_days_past_due"]) == (1, 2, 5)
    base = 60 * 24 * 3
    f = tl.feed(base + 5, **txn(kind="disbursement", amount=10000.0, account_hash="c2"))
    assert f["payout_account_is_new"] == 1.0 and f["minutes_since_disbursement"] == 0.0
    tl.feed(base + 7, **txn(kind="withdrawal", amount=6000.0, account_hash="c2", txn_id="w"))
    f = tl.feed(base + 8, **txn(kind="transfer_out", amount=3500.0, account_hash="c2", txn_id="x"))
    assert f["outflow_share"] == pytest.approx(0.95)
    assert f["user_txn_out_1h"] == 2
    assert f["minutes_since_disbursement"] == pytest.approx(3.0)


def test_links_count_distinct_users_and_events_per_identifier_and_window() -> None:
    """Distinct users and events on a shared device over 1 h, 24 h and 7 d."""
    tl = Timeline()
    tl.feed(0, **dev(user_id="a", device_id="farm"))
    tl.feed(2 * 24 * 60, **dev(user_id="b", device_id="farm"))
    tl.feed(2 * 24 * 60 + 120, **dev(user_id="c", device_id="farm"))
    f = tl.feed(2 * 24 * 60 + 130, **dev(user_id="c", device_id="farm"))
    assert (f["device_users_1h"], f["device_users_24h"], f["device_users_7d"]) == (1, 2, 3)
    assert (f["device_events_1h"], f["device_events_24h"], f["device_events_7d"]) == (2, 3, 4)
    f = tl.feed(20 * 24 * 60, **dev(user_id="d", device_id="farm"))
    assert f["device_users_7d"] == 1, "users seen more than 7 days ago are gone"


def test_identifier_fraud_share_only_counts_labels_that_arrived() -> None:
    """An identifier's risk is the share of its users with confirmed fraud, by labels of
    the event's time or before: an event that arrives late, from before the label, is
    judged without it."""
    tl = Timeline()
    tl.feed(0, **app(user_id="a", ip="10.0.0.1"))
    tl.feed(1, **app(user_id="b", ip="10.0.0.1"))
    f = tl.feed(2, **app(user_id="c", ip="10.0.0.1"))
    assert f["ip_fraud_share"] == 0.0
    tl.idents["ip:10.0.0.1"].mark_fraud("a", T0 + 2.5 * 60)
    f = tl.feed(3, **app(user_id="d", ip="10.0.0.1"))
    assert f["ip_fraud_share"] == pytest.approx(1 / 4)
    f = tl.feed(2.2, **app(user_id="e", ip="10.0.0.1"))  # late: before the label
    assert f["ip_fraud_share"] == 0.0


def test_device_risk_comes_from_the_latest_telemetry() -> None:
    """Emulator, root and lending apps reported for a device apply to later events."""
    tl = Timeline()
    tl.feed(0, **dev(is_emulator=True, is_rooted=False, loan_apps_installed=14))
    f = tl.feed(5, **app())
    assert (f["is_emulator"], f["is_rooted"], f["loan_apps_installed"]) == (1.0, 0.0, 14.0)


def test_speed_between_places_of_consecutive_events() -> None:
    """Shanghai to Beijing (about 1,070 km) in one hour is about 1,070 km/h."""
    tl = Timeline()
    tl.feed(0, **dev(geo={"lat": 31.2304, "lon": 121.4737}))
    f = tl.feed(60, **dev(geo={"lat": 39.9042, "lon": 116.4074}))
    assert 1000 < f["geo_speed_kmh"] < 1150


def test_device_events_before_login_update_links_but_no_user() -> None:
    """A device event with an empty user_id counts on the device, not on any user."""
    tl = Timeline()
    f = tl.feed(0, **dev(user_id="", kind="install"))
    assert f["device_events_1h"] == 1 and f["device_users_1h"] == 0
    assert tl.users == {}


def test_an_event_arriving_late_is_judged_as_of_its_own_time() -> None:
    """An application dated day 2 that arrives after the user's day 9 history: the
    payout account bound, the SIM change and the failed logins of day 9 had not
    happened at its time, and the device's later users and events do not count in its
    windows. (Before, times were floored at 0: "just happened".)"""
    tl = Timeline()
    day = 24 * 60
    tl.feed(0, **txn(kind="card_bind", amount=0.0, account_hash="c1"))
    tl.feed(2 * day - 30, **dev(kind="login_failed"))
    tl.feed(9 * day, **dev(kind="sim_change"))
    tl.feed(9 * day + 1, **dev(kind="login_failed"))
    tl.feed(9 * day + 2, **dev(user_id="other"))  # someone else on the device, later
    tl.feed(9 * day + 3, **txn(kind="card_bind", amount=0.0, account_hash="c2"))
    late = tl.feed(2 * day, **app())
    assert late["minutes_since_sim_change"] == NEVER
    assert late["minutes_since_new_payout_account"] == NEVER
    assert late["failed_logins_24h"] == 1  # the one of day 2, not the one of day 9
    assert late["minutes_since_failed_login"] == NEVER  # its last one is of day 9
    assert (late["device_users_24h"], late["device_events_24h"]) == (1, 2)
    assert late["device_users_7d"] == 1  # not "other", seen on day 9
    on_time = tl.feed(9 * day + 4, **app(application_id="b"))
    assert on_time["minutes_since_sim_change"] == pytest.approx(4.0)
    assert on_time["device_users_24h"] == 2


def test_a_late_event_does_not_move_the_users_history_back() -> None:
    """A SIM change and an IP arriving late (older than what the user's history holds)
    leave the latest times as they were."""
    tl = Timeline()
    tl.feed(600, **dev(kind="sim_change", ip="1.1.1.1"))
    tl.feed(540, **dev(kind="sim_change", ip="1.1.1.1"))  # late: 09:00 after 10:00
    f = tl.feed(605, **dev(kind="login", ip="2.2.2.2"))
    assert f["minutes_since_sim_change"] == pytest.approx(5.0)
    assert f["user_ips_24h"] == 2


def test_a_user_without_history_gets_the_neutral_values_in_their_types() -> None:
    """What the user's state says when it says nothing: times never, ratios 1, counts
    as whole numbers, amounts as decimals; an event without a user keeps every user
    feature at zero, in its type."""
    tl = Timeline()
    f = tl.feed(0, **dev(kind="app_open"))
    for name in (
        "minutes_since_new_device",
        "minutes_since_sim_change",
        "minutes_since_password_reset",
        "minutes_since_failed_login",
        "minutes_since_new_payout_account",
        "minutes_since_disbursement",
    ):
        assert f[name] == NEVER
    assert f["amount_to_max_ratio"] == f["amount_to_mean_ratio"] == f["income_change_ratio"] == 1.0
    counts = ("failed_logins_24h", "user_apps_1h", "user_apps_24h", "user_apps_7d")
    counts += ("user_distinct_amounts_24h", "user_txn_out_1h")
    assert [(f[name], type(f[name])) for name in counts] == [(0, int)] * len(counts)
    assert f["geo_speed_kmh"] == f["outflow_share"] == f["user_amount_24h"] == 0.0
    assert type(f["geo_speed_kmh"]) is type(f["user_amount_24h"]) is float

    anonymous = tl.feed(1, **dev(kind="install", user_id="", device_id="d2"))
    user_names = ("minutes_since_new_device", "amount_to_max_ratio", "failed_logins_24h")
    assert [(anonymous[n], type(anonymous[n])) for n in user_names] == [
        (0.0, float),
        (0.0, float),
        (0, int),
    ]


def test_each_feature_keeps_one_number_type_whatever_the_event_carries() -> None:
    """A feature is a whole number in every event or a decimal in every event: a count is
    0 (not 0.0) where the event lacks the identifier, so that a rule's ``/`` and ``%``
    (integer operations on two whole numbers) take it alike in every event; the counts
    are those the rule catalogue types as ints."""
    from riskmon.features import FEATURE_NAMES
    from riskmon.sim.config import SimConfig
    from riskmon.sim.generator import simulate
    from riskmon.state import new_user_state
    from rules.features import WHOLE_FEATURES

    events, _ = simulate(SimConfig(seed=2, users=60, days=3))
    users: dict[str, Any] = {}
    idents: dict[str, Any] = {}
    seen: dict[str, set[type]] = {name: set() for name in FEATURE_NAMES}
    for event in events:
        if event["event_type"] == "label":
            continue
        ts = parse_ts(event["ts"])
        uid = event.get("user_id")
        user = users.setdefault(uid, new_user_state(ts)) if uid else None
        for name, value in observe(event, ts, user, idents).items():
            if name in seen:
                seen[name].add(type(value))
    mixed = {name: kinds for name, kinds in seen.items() if len(kinds) > 1}
    assert mixed == {}, " ".join(sorted(mixed))
    # and the type rules compile them with (rules.features.FEATURE_TYPES)
    wrong = [n for n, kinds in seen.items() if kinds != ({int} if n in WHOLE_FEATURES else {float})]
    assert wrong == []


def test_unbounded_whole_numbers_are_capped_and_the_user_stays_writable() -> None:
    """The contract leaves days past due, lending apps installed and contacts unbounded,
    and takes ``1e30`` as a whole number: the features cap them, so the user's document
    still serialises as JSON (a Redis save of it used to fail on every retry)."""
    import orjson

    from riskmon.features import MAX_CONTACTS, MAX_DAYS_PAST_DUE, MAX_LOAN_APPS, event_vector

    tl = Timeline()
    f = tl.feed(0, **txn(kind="repayment", amount=100.0, days_past_due=1e30))
    assert f["max_days_past_due"] == MAX_DAYS_PAST_DUE and f["late_repayments"] == 1
    f = tl.feed(1, **dev(kind="install", loan_apps_installed=1e30))
    assert f["loan_apps_installed"] == MAX_LOAN_APPS
    application = app(contacts_count=1e30)
    x = event_vector(application, tl.feed(2, **application))
    assert x["contacts_count"] == MAX_CONTACTS
    orjson.dumps(tl.users["u1"])  # raises on a whole number past 64 bits


def test_money_sent_to_an_account_never_used_is_a_new_payout_account() -> None:
    """A takeover pays out to an account the user never used, without binding it first:
    a disbursement or transfer out to it is a new payout account as a bind is; a
    repayment from another card pays in, and is not."""
    tl = Timeline()
    tl.feed(0, **txn(kind="card_bind", amount=0.0, account_hash="own", txn_id="b"))
    f = tl.feed(10, **txn(kind="repayment", amount=10.0, account_hash="other", txn_id="r"))
    assert f["minutes_since_new_payout_account"] == NEVER
    f = tl.feed(20, **txn(kind="transfer_out", amount=500.0, account_hash="mule", txn_id="o"))
    assert f["minutes_since_new_payout_account"] == 0.0 and f["payout_account_is_new"] == 1.0
    f = tl.feed(50, **txn(kind="withdrawal", amount=5.0, account_hash="own", txn_id="w"))
    assert f["minutes_since_new_payout_account"] == 30.0


def test_a_movement_reported_twice_counts_once_and_a_failure_takes_it_back() -> None:
    """A withdrawal reported ``pending`` then ``success`` (one transaction id) is one
    movement: half the payout out is a share of 0.5 and one transfer in the hour; a
    later ``failed`` report of another one takes it back out of both."""
    tl = Timeline()
    tl.feed(0, **txn(kind="disbursement", amount=1000.0, account_hash="c", txn_id="d"))
    tl.feed(5, **txn(kind="withdrawal", amount=500.0, status="pending", txn_id="w1"))
    f = tl.feed(6, **txn(kind="withdrawal", amount=500.0, txn_id="w1"))
    assert f["outflow_share"] == 0.5 and f["user_txn_out_1h"] == 1
    tl.feed(7, **txn(kind="transfer_out", amount=300.0, status="pending", txn_id="w2"))
    f = tl.feed(8, **txn(kind="transfer_out", amount=300.0, status="failed", txn_id="w2"))
    assert f["outflow_share"] == 0.5 and f["user_txn_out_1h"] == 1


def test_geo_speed_ignores_the_noise_of_fixes_but_not_a_jump_at_one_instant() -> None:
    """Two fixes 2 km apart eight seconds apart (a cell tower, then GPS) are no travel;
    Beijing then Shanghai at the same instant is impossible travel, not 0 km/h."""
    tl = Timeline()
    tl.feed(0, **dev(geo={"lat": 39.918, "lon": 116.400}))
    f = tl.feed(8 / 60, **dev(geo={"lat": 39.900, "lon": 116.400}))
    assert f["geo_speed_kmh"] == 0.0
    tl.feed(60, **dev(geo={"lat": 39.90, "lon": 116.40}))
    f = tl.feed(60, **dev(geo={"lat": 31.23, "lon": 121.47}))
    assert f["geo_speed_kmh"] == 5000.0
    f = tl.feed(180, **dev(geo={"lat": 39.90, "lon": 116.40}))  # two hours back by plane
    assert 500.0 < f["geo_speed_kmh"] < 600.0


def test_a_late_application_is_compared_with_the_income_declared_before_it() -> None:
    """The income change compares with the user's previous application in event time:
    an older application arriving late is compared with what came before it, and does
    not become the newest income (an unchanged income read as tripled after it)."""
    tl = Timeline()
    tl.feed(0, **app(application_id="a1", declared_monthly_income=5000.0))
    tl.feed(120, **app(application_id="a2", declared_monthly_income=15000.0))
    f = tl.feed(60, **app(application_id="a3", declared_monthly_income=5000.0))  # late
    assert f["income_change_ratio"] == 1.0
    f = tl.feed(180, **app(application_id="a4", declared_monthly_income=15000.0))
    assert f["income_change_ratio"] == 1.0


def _income_app(eid: str, day: int, income: float) -> dict[str, Any]:
    return {
        "event_id": eid,
        "event_type": "application",
        "user_id": "u1",
        "ts": f"2026-11-{day:02d}T10:00:00.000Z",
        "application_id": f"app-{eid}",
        "device_id": "d1",
        "amount": 500.0,
        "product": "cash_loan",
        "declared_monthly_income": income,
    }


def _observe(user: dict[str, Any], event: dict[str, Any]) -> dict[str, float]:
    idents: dict[str, IdentState] = {}
    return observe(event, parse_ts(event["ts"]), user, idents)


def test_a_late_application_on_an_older_document_does_not_become_the_newest_income() -> None:
    """A document of the previous release keeps one income, the newest declared (15,000
    on Nov 5; 5,000 was declared on Nov 1). A late application of Nov 3 arriving after the
    upgrade does not become the newest income: the next application, Nov 6, declaring
    15,000 again, shows no change."""
    user = new_user_state(parse_ts("2026-11-01T10:00:00.000Z"))
    _observe(user, _income_app("a1", 1, 5000.0))
    _observe(user, _income_app("a5", 5, 15000.0))
    # what the previous release stored: no "incomes", the newest income in "income"
    user.pop("incomes")
    assert user["income"] == 15000.0
    _observe(user, _income_app("a3", 3, 5000.0))  # late
    f = _observe(user, _income_app("a6", 6, 15000.0))
    assert f["income_change_ratio"] == 1.0


def _fix(eid: str, hhmm: str, lat: float, lon: float) -> dict[str, Any]:
    return {
        "event_id": eid,
        "event_type": "device",
        "user_id": "u1",
        "ts": f"2026-11-01T{hhmm}:00.000Z",
        "device_id": "d1",
        "kind": "login",
        "geo": {"lat": lat, "lon": lon},
    }


def test_geo_speed_does_not_depend_on_the_order_events_arrive_in() -> None:
    """Beijing at 10:00, Shanghai at 12:00, Shanghai again at 12:05: the 12:05 login did
    not move, also when the 10:00 fix arrives late (it does not become the last place)."""
    beijing, shanghai, again = (
        _fix("g1", "10:00", 39.90, 116.40),
        _fix("g2", "12:00", 31.23, 121.47),
        _fix("g3", "12:05", 31.23, 121.47),
    )
    speeds = []
    for order in ([beijing, shanghai, again], [shanghai, beijing, again]):
        user = new_user_state(parse_ts(order[0]["ts"]))
        f = {}
        for event in order:
            f = _observe(user, event)
        speeds.append(f["geo_speed_kmh"])
    assert speeds[0] == speeds[1] == 0.0


def _out(eid: str, hhmm: str, kind: str, status: str, txn: str, amount: float) -> dict[str, Any]:
    return {
        "event_id": eid,
        "event_type": "transaction",
        "user_id": "u1",
        "ts": f"2026-11-01T{hhmm}:00.000Z",
        "txn_id": txn,
        "kind": kind,
        "amount": amount,
        "status": status,
    }


def test_a_withdrawal_that_failed_is_not_counted_again_by_a_late_report() -> None:
    """A 500 withdrawal of a 1,000 loan: pending 10:00, success 10:05, failed 10:10. It
    did not go out, also when the success report arrives after the failure."""
    loan = _out("t0", "09:00", "disbursement", "success", "loan", 1000.0)
    pending = _out("t1", "10:00", "withdrawal", "pending", "w1", 500.0)
    success = _out("t2", "10:05", "withdrawal", "success", "w1", 500.0)
    failed = _out("t3", "10:10", "withdrawal", "failed", "w1", 500.0)
    probe = _out("t4", "10:20", "repayment", "success", "r1", 1.0)
    shares = []
    for order in ([loan, pending, success, failed, probe], [loan, pending, failed, success, probe]):
        user = new_user_state(parse_ts(loan["ts"]))
        f = {}
        for event in order:
            f = _observe(user, event)
        shares.append(f["outflow_share"])
    assert shares[0] == shares[1] == 0.0


def test_an_item_that_carried_no_identifier_is_kept_among_the_users_items() -> None:
    """A repayment with no device, IP or account is still one of the user's items (so a
    verdict on it, and `riskmon label`'s check, find it), with no identifier to mark."""
    tl = Timeline()
    tl.feed(0, **txn(kind="repayment", amount=10.0, txn_id="r1"))
    tl.feed(1, **txn(kind="payment", amount=5.0, txn_id="p1", account_hash="shop"))
    assert tl.users["u1"]["targets"] == {"transaction:r1": [], "transaction:p1": ["account:shop"]}
