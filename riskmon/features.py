"""Features at event time: what the user's history, the identifiers they share with
others, their velocity and their device say about one event.

:func:`observe` is the one entry point: it reads the state as it was before the event,
computes the features, then folds the event into the state. It is pure: all it touches
is the state it is given, so the stream worker (Redis) and the replay (memory) compute
identical features from identical state.

An event that arrives late (older than what the state already holds) is judged as of
its own time as far as the state allows: windows end at its time, and a change the
state dates after it (a SIM change, a new payout account, a disbursement) had not
happened yet. What the state has forgotten (an earlier SIM change replaced by a later
one) it cannot tell.

>>> from riskmon.state import new_user_state, IdentState
>>> user = new_user_state(0.0)
>>> idents = {}
>>> ev = {"event_id": "d1", "event_type": "device", "kind": "login", "user_id": "u1",
...       "device_id": "dev-1", "ip": "1.2.3.4"}
>>> f = observe(ev, 100.0, user, idents)
>>> f["user_devices_count"], f["device_users_24h"], f["minutes_since_new_device"]
(1, 1, 1000000.0)
>>> sorted(idents)
['device:dev-1', 'ip:1.2.3.4']
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Iterable
from typing import Any

from detectors.labels import target_key
from riskmon.state import WEEK, IdentState
from rules.features import WHOLE_FEATURES

NEVER = 1e6  # minutes_since_* when the thing never happened
IDENT_KINDS = ("device", "ip", "wifi", "sim", "account", "phone", "idnum")
LINK_SUFFIXES = ("users_1h", "users_24h", "users_7d", "events_1h", "events_24h", "events_7d")
#: velocity of the loan applications that carried an identifier (the kinds applications carry)
APP_KINDS = ("device", "ip", "account", "phone", "idnum")
APP_SUFFIXES = ("apps_1h", "apps_24h", "app_amount_24h", "distinct_amounts_24h")
OUT_KINDS = ("withdrawal", "transfer_out")
#: transactions that pay money to an account: one the user never used is a new payout
#: account, bound or not
PAYOUT_KINDS = ("card_bind", "disbursement", *OUT_KINDS)
#: the contract leaves these whole numbers unbounded; past these values they say nothing
#: more, and a user's document must stay writable (JSON whole numbers of 64 bits)
MAX_DAYS_PAST_DUE = 36_500
MAX_LOAN_APPS = 10_000
MAX_CONTACTS = 1_000_000
#: distances below this between two events' places are the noise of the fixes (a cell
#: tower against GPS), not travel
GEO_NOISE_KM = 5.0
#: the shortest time a move between places is taken to have had: two fixes seconds apart
#: would otherwise make any noise look like flight
GEO_MIN_S = 60.0
#: recent out movements a user's document keeps by transaction id
MAX_OUT_TXNS = 32

#: event field -> identifier kind, per event type
IDENT_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "application": (
        ("device_id", "device"),
        ("ip", "ip"),
        ("bank_card_hash", "account"),
        ("phone_hash", "phone"),
        ("id_hash", "idnum"),
    ),
    "device": (("device_id", "device"), ("ip", "ip"), ("wifi_hash", "wifi"), ("sim_hash", "sim")),
    "transaction": (("device_id", "device"), ("ip", "ip"), ("account_hash", "account")),
}

USER_FEATURES = (
    "account_age_days",
    "user_devices_count",
    "user_sims_count",
    "user_ips_24h",
    "minutes_since_new_device",
    "minutes_since_sim_change",
    "minutes_since_password_reset",
    "minutes_since_failed_login",
    "minutes_since_new_payout_account",
    "failed_logins_24h",
    "amount_to_max_ratio",
    "amount_to_mean_ratio",
    "income_change_ratio",
    "failed_repayments",
    "late_repayments",
    "max_days_past_due",
    "repaid_loans",
    "prior_applications",
    "payout_account_is_new",
    "outflow_share",
    "minutes_since_disbursement",
    "disbursed_amount",
)
VELOCITY_FEATURES = (
    "user_apps_1h",
    "user_apps_24h",
    "user_apps_7d",
    "user_amount_24h",
    "user_distinct_amounts_24h",
    "user_txn_out_1h",
    "geo_speed_kmh",
)
DEVICE_FEATURES = ("is_emulator", "is_rooted", "loan_apps_installed")
LINK_FEATURES = tuple(
    f"{kind}_{suffix}" for kind in IDENT_KINDS for suffix in (*LINK_SUFFIXES, "fraud_share")
)
IDENT_VELOCITY_FEATURES = tuple(f"{kind}_{suffix}" for kind in APP_KINDS for suffix in APP_SUFFIXES)
FEATURE_NAMES: tuple[str, ...] = (
    USER_FEATURES + VELOCITY_FEATURES + IDENT_VELOCITY_FEATURES + DEVICE_FEATURES + LINK_FEATURES
)


#: the ``minutes_since_*`` feature of each time kept in a user's ``last``
_SINCE_FEATURES = {
    "new_device": "minutes_since_new_device",
    "sim_change": "minutes_since_sim_change",
    "password_reset": "minutes_since_password_reset",
    "failed_login": "minutes_since_failed_login",
    "new_account": "minutes_since_new_payout_account",
}

#: per event type: (event field, key prefix ``kind:``, the kind's link feature names, its
#: application velocity feature names or ``None``)
_IDENT_SPECS: dict[str, tuple[tuple[str, str, tuple[str, ...], tuple[str, ...] | None], ...]] = {
    etype: tuple(
        (
            fld,
            f"{kind}:",
            tuple(f"{kind}_{suffix}" for suffix in (*LINK_SUFFIXES, "fraud_share")),
            tuple(f"{kind}_{suffix}" for suffix in APP_SUFFIXES) if kind in APP_KINDS else None,
        )
        for fld, kind in fields
    )
    for etype, fields in IDENT_FIELDS.items()
}
#: per event type: (event field, key prefix ``kind:``) of the identifiers it carries
_KEY_FIELDS = {etype: tuple(spec[:2] for spec in specs) for etype, specs in _IDENT_SPECS.items()}
#: counts (:data:`rules.features.WHOLE_FEATURES`) are 0, not 0.0, where the event has no
#: user or lacks the identifier: whole numbers in every event
_ZEROS: dict[str, float] = {name: 0 if name in WHOLE_FEATURES else 0.0 for name in FEATURE_NAMES}
#: an event's features with a user before :func:`_user_features` reads the user's state:
#: what it leaves them at when that state has nothing to say (no earlier device, SIM
#: change or password reset, failed login, payout account or disbursement, no
#: applications or money out in the windows, no amount to compare)
_USER_ZEROS: dict[str, float] = {
    **_ZEROS,
    **dict.fromkeys(_SINCE_FEATURES.values(), NEVER),
    "minutes_since_disbursement": NEVER,
    "amount_to_max_ratio": 1.0,
    "amount_to_mean_ratio": 1.0,
    "income_change_ratio": 1.0,
}


def ident_keys(event: dict[str, Any]) -> list[str]:
    """The identifier keys (``kind:value``) an event carries.

    >>> ident_keys({"event_type": "transaction", "device_id": "d", "account_hash": "c"})
    ['device:d', 'account:c']
    """
    out = []
    for fld, prefix in _KEY_FIELDS.get(event["event_type"], ()):
        value = event.get(fld)
        if value:
            out.append(prefix + value if type(value) is str else f"{prefix}{value}")
    return out


def _minutes_since(ts: float, then: float | None) -> float:
    if then is None:
        return NEVER
    return max(0.0, (ts - then) / 60.0)


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 12742.0 * math.asin(min(1.0, math.sqrt(a)))


def _cap(d: dict[str, float], n: int) -> None:
    """Keep the ``n`` newest entries of a small ``key -> ts`` map."""
    if len(d) > n:
        for key, _ in sorted(d.items(), key=lambda kv: (kv[1], kv[0]))[: len(d) - n]:
            del d[key]


def observe(
    event: dict[str, Any],
    ts: float,
    user: dict[str, Any] | None,
    idents: dict[str, IdentState],
) -> dict[str, float]:
    """Features of ``event`` at event time ``ts``; folds the event into the state.

    ``user`` is the user's document (``None`` for device events before login);
    ``idents`` maps identifier keys to their state and gains entries for new ones.
    """
    etype = event["event_type"]
    f = _ZEROS.copy() if user is None else _USER_ZEROS.copy()
    uid = event.get("user_id") or ""
    event_id = event["event_id"]

    # --- links between people: fold the event in first, so counts include it
    keys: list[str] = []
    dev: IdentState | None = None
    application = None
    if etype == "application" and event.get("amount") is not None:
        application = event.get("application_id")
    for fld, prefix, (n1, n2, n3, n4, n5, n6, n7), app_names in _IDENT_SPECS.get(etype, ()):
        value = event.get(fld)
        if not value:
            continue
        key = prefix + value if type(value) is str else f"{prefix}{value}"
        keys.append(key)
        state = idents.get(key)
        if state is None:
            state = idents[key] = IdentState()
        f[n1], f[n2], f[n3], f[n4], f[n5], f[n6], f[n7] = state.record(uid, event_id, ts)
        if app_names is not None:
            if application:
                state.add_application(application, event["amount"], ts)
            if state.apps:
                a1, a2, a3, a4 = app_names
                f[a1], f[a2], f[a3], f[a4] = state.application_counts(ts)
        if fld == "device_id":
            dev = state

    # --- device risk: the latest telemetry known for the device
    if dev is not None:
        attrs = dev.attrs
        if etype == "device":
            if "is_emulator" in event:
                dev.set_attr("is_emulator", "1" if event["is_emulator"] else "0", ts)
            if "is_rooted" in event:
                dev.set_attr("is_rooted", "1" if event["is_rooted"] else "0", ts)
            if "loan_apps_installed" in event:
                apps_installed = int(min(event["loan_apps_installed"], MAX_LOAN_APPS))
                dev.set_attr("loan_apps_installed", str(apps_installed), ts)
        f["is_emulator"] = float(attrs.get("is_emulator", "0"))
        f["is_rooted"] = float(attrs.get("is_rooted", "0"))
        f["loan_apps_installed"] = float(attrs.get("loan_apps_installed", "0"))

    if user is None:
        return f
    _user_features(event, etype, event.get("kind"), ts, user, f)
    # remember which identifiers this user was seen with (for label propagation)
    linked = user["idents"]
    for key in keys:
        if key not in linked:
            linked.append(key)
            if len(linked) > 64:
                del linked[0]
    # and which identifiers each recent application or transaction carried, so that a
    # label on it marks where the fraud happened rather than all the user ever touched
    # (by ``kind:id``: an application and a transaction may have one id)
    # (an item that carried none is kept too: a verdict on it is on an item the user had)
    target = event.get("txn_id") if etype == "transaction" else event.get("application_id")
    if target:
        targets = user.setdefault("targets", {})
        targets[target_key(etype, target)] = keys
        if len(targets) > 64:
            del targets[next(iter(targets))]
    return f


def _user_features(
    event: dict[str, Any],
    etype: str,
    kind: str | None,
    ts: float,
    user: dict[str, Any],
    f: dict[str, float],
) -> None:
    last = user["last"]
    # an event older than the user's newest one arrived late: its counts must leave out
    # what the state holds of later times
    late = ts < user.get("newest", ts)
    if not late:
        user["newest"] = ts
    age = (ts - user["first_ts"]) / 86400.0
    f["account_age_days"] = age if age > 0.0 else 0.0

    devices = user["devices"]
    device = event.get("device_id")
    if device and device not in devices:
        if devices:
            _set_last(last, "new_device", ts)
        devices[device] = ts
        _cap(devices, 32)
    sims = user["sims"]
    sim = event.get("sim_hash")
    if sim and sim not in sims:
        sims[sim] = ts
        _cap(sims, 16)
    ips = user["ips"]
    ip = event.get("ip")
    if ip:
        if ts > ips.get(ip, -math.inf):  # a late event does not move it back
            ips[ip] = ts
        if len(ips) > 32:
            _cap(ips, 32)

    failed = user["failed_logins"]
    if etype == "device":
        if kind == "sim_change":
            _set_last(last, "sim_change", ts)
        elif kind == "password_reset":
            _set_last(last, "password_reset", ts)
        elif kind == "login_failed":
            _set_last(last, "failed_login", ts)
            insort(failed, ts)  # in time order, a late one too
            del failed[:-32]

    day = ts - 86400.0
    hour = ts - 3600.0
    f["user_devices_count"] = len(devices)
    f["user_sims_count"] = len(sims)
    f["user_ips_24h"] = _since(day, ts, ips.values(), late)  # seen in the 24 h to ts
    if failed:
        f["failed_logins_24h"] = _since(day, ts, failed, late)

    # amounts against the user's own history of the same kind
    amount = event.get("amount")
    if amount is not None and etype != "device":
        akey = etype if etype == "application" else f"txn:{kind}"
        count, total, peak = user["amounts"].get(akey, (0, 0.0, 0.0))
        if count:
            f["amount_to_max_ratio"] = amount / peak if peak > 0 else (1.0 if amount == 0 else 10.0)
            mean = total / count
            f["amount_to_mean_ratio"] = (
                amount / mean if mean > 0 else (1.0 if amount == 0 else 10.0)
            )
        user["amounts"][akey] = [count + 1, total + amount, max(peak, amount)]

    # applications: velocity, declared income
    apps = user["apps"]
    if etype == "application":
        income = event.get("declared_monthly_income")
        if income is not None:
            prev = _declared_income(user, ts, float(income))
            if prev:
                f["income_change_ratio"] = income / prev
        f["prior_applications"] = user["n_apps"]
        user["n_apps"] += 1
        apps.append([ts, float(amount or 0.0)])
        cutoff = ts - WEEK
        while apps and apps[0][0] < cutoff:
            apps.pop(0)
        del apps[:-64]
    else:
        f["prior_applications"] = user["n_apps"]
    if apps:
        week = ts - WEEK
        n_hour = n_day = n_week = 0
        recent = []
        for a in apps:
            t = a[0]
            if week <= t <= ts:
                n_week += 1
                if day <= t:
                    n_day += 1
                    recent.append(a[1])
                    if hour <= t:
                        n_hour += 1
        f["user_apps_1h"] = n_hour
        f["user_apps_24h"] = n_day
        f["user_apps_7d"] = n_week
        f["user_amount_24h"] = sum(recent, 0.0)  # a decimal, also when there are none
        f["user_distinct_amounts_24h"] = len(set(recent))

    # money movements
    repay = user["repay"]
    outs = user["outs"]
    if etype == "transaction":
        status = event.get("status")
        account = event.get("account_hash")
        if account and account not in user["accounts"]:
            user["accounts"][account] = ts
            _cap(user["accounts"], 16)
            # money sent to an account the user never used, bound first or not, beside
            # one the user had: a new payout account (a repayment pays in)
            if kind in PAYOUT_KINDS and len(user["accounts"]) > 1:
                _set_last(last, "new_account", ts)
        if account:
            bound = user["accounts"].get(account)
            new = bound is not None and 0.0 <= ts - bound < 86400.0
            f["payout_account_is_new"] = 1.0 if new else 0.0
        if kind == "repayment":
            dpd = int(min(event.get("days_past_due") or 0, MAX_DAYS_PAST_DUE))
            if status == "failed":
                repay[0] += 1
            elif status == "success":
                repay[3] += 1
            if dpd > 0:
                repay[1] += 1
                repay[2] = max(repay[2], dpd)
        elif kind == "disbursement" and status != "failed":
            user["disb"] = [ts, float(amount or 0.0), 0.0]
        elif kind in OUT_KINDS:
            _money_out(user, outs, event.get("txn_id"), status, ts, float(amount or 0.0))
    # (a time after ``ts`` had not come yet for this event: it arrived late)
    for what, then in last.items():
        name = _SINCE_FEATURES.get(what)
        if name is not None and not then > ts:
            f[name] = (ts - then) / 60.0
    f["failed_repayments"] = repay[0]
    f["late_repayments"] = repay[1]
    f["max_days_past_due"] = repay[2]
    f["repaid_loans"] = repay[3]
    if outs:
        f["user_txn_out_1h"] = _since(hour, ts, outs, late)
    disb = user["disb"]
    if disb is not None and disb[0] <= ts:
        f["minutes_since_disbursement"] = _minutes_since(ts, disb[0])
        f["disbursed_amount"] = disb[1]
        f["outflow_share"] = min(disb[2] / disb[1], 5.0) if disb[1] > 0 else 0.0

    # speed between the places of consecutive events
    geo = event.get("geo")
    if geo is not None:
        prev_geo = user["geo"]
        if prev_geo is None or ts >= prev_geo[2]:
            if prev_geo is not None:
                km = _haversine_km(prev_geo[0], prev_geo[1], geo["lat"], geo["lon"])
                if km >= GEO_NOISE_KM:
                    hours = max(ts - prev_geo[2], GEO_MIN_S) / 3600.0
                    f["geo_speed_kmh"] = min(km / hours, 5000.0)
            user["geo"] = [geo["lat"], geo["lon"], ts]  # a late fix does not move it back


#: declared incomes a user's document keeps, with their times
MAX_INCOMES = 8


def _declared_income(user: dict[str, Any], ts: float, income: float) -> float | None:
    """Record an income declared at event time ``ts``; the income declared before it
    (``None`` if none), in event time: a late application is compared with what was
    declared before it, and does not become the newest income.

    ``user["income"]`` stays the newest declared income (what older documents hold,
    without ``incomes``: their one income, dated at the user's newest event, the latest
    it can have been declared).

    >>> u = {"income": None, "first_ts": 0.0}
    >>> _declared_income(u, 10.0, 5000.0), _declared_income(u, 30.0, 15000.0)
    (None, 5000.0)
    >>> _declared_income(u, 20.0, 5000.0), u["income"]  # late: before 30
    (5000.0, 15000.0)
    >>> _declared_income(u, 40.0, 15000.0)
    15000.0
    """
    incomes: list[list[float]] | None = user.get("incomes")
    if incomes is None:
        old = user.get("income")
        dated = user.get("newest", user["first_ts"])
        incomes = user["incomes"] = [] if old is None else [[dated, old]]
    at = len(incomes)
    while at and incomes[at - 1][0] > ts:
        at -= 1
    prev = incomes[at - 1][1] if at else None
    incomes.insert(at, [ts, income])
    del incomes[:-MAX_INCOMES]
    user["income"] = incomes[-1][1]
    return prev


def _money_out(
    user: dict[str, Any],
    outs: list[float],
    txn_id: str | None,
    status: str | None,
    ts: float,
    amount: float,
) -> None:
    """Fold a withdrawal or transfer out into the user's money out: once per transaction
    id (a ``pending`` report then its ``success`` are one movement, at its first time),
    taken back when a report says it ``failed``, and not counted again by a report dated
    before that failure (one arriving late); a report after it is a retry, counted anew.

    >>> u = {"disb": [0.0, 1000.0, 0.0]}; outs = []
    >>> _money_out(u, outs, "w1", "pending", 60.0, 500.0)
    >>> _money_out(u, outs, "w1", "success", 90.0, 500.0)
    >>> outs, u["disb"]
    ([60.0], [0.0, 1000.0, 500.0])
    >>> _money_out(u, outs, "w1", "failed", 120.0, 500.0)
    >>> _money_out(u, outs, "w1", "success", 100.0, 500.0)  # late, before the failure
    >>> outs, u["disb"]
    ([], [0.0, 1000.0, 0.0])
    >>> _money_out(u, outs, "w1", "success", 300.0, 500.0)  # retried after it
    >>> outs, u["disb"]
    ([300.0], [0.0, 1000.0, 500.0])
    """
    disb = user["disb"]
    # txn id -> [first time, amount counted, the disbursement's time, failed at (-1: no)]
    moved: dict[str, list[float]] = user.setdefault("out_txns", {})
    known = moved.get(txn_id) if txn_id else None
    failed_at = (known[3] if len(known) > 3 else -1.0) if known is not None else -1.0
    if known is not None and failed_at < 0.0:  # a later report of a movement counted
        then, counted, against = known[0], known[1], known[2]
        if status != "failed":
            if amount != counted and disb is not None and disb[0] == against:
                disb[2] += amount - counted  # the amount as last reported
            known[1] = amount
            return
        index = bisect_left(outs, then)
        if index < len(outs) and outs[index] == then:
            del outs[index]
        if disb is not None and disb[0] == against:
            disb[2] = max(0.0, disb[2] - counted)
        moved[txn_id] = [then, counted, against, ts]  # type: ignore[index]
        return
    if status == "failed":
        if txn_id and known is None:  # reports from before it may still arrive
            _keep_out(moved, txn_id, [ts, amount, -1.0, ts])
        return
    if known is not None and ts <= failed_at:
        return  # a report from before the failure, arriving late
    insort(outs, ts)
    del outs[:-32]
    if disb is not None:
        disb[2] += amount
    if txn_id:
        _keep_out(moved, txn_id, [ts, amount, disb[0] if disb is not None else -1.0, -1.0])


def _keep_out(moved: dict[str, list[float]], txn_id: str, entry: list[float]) -> None:
    moved.pop(txn_id, None)
    moved[txn_id] = entry
    if len(moved) > MAX_OUT_TXNS:
        del moved[next(iter(moved))]


def _set_last(last: dict[str, float], what: str, ts: float) -> None:
    """Note the time of the latest ``what``; a late event does not move it back."""
    if ts > last.get(what, -math.inf):
        last[what] = ts


def _since(start: float, ts: float, times: Iterable[float], late: bool) -> int:
    """How many of ``times`` fall in ``[start, ts]`` (for an event in order, none is
    later than ``ts``).

    >>> _since(10.0, 20.0, [5.0, 10.0, 15.0, 25.0], late=True)
    2
    """
    if late:
        return sum(start <= t <= ts for t in times)
    return sum(map(start.__le__, times))


#: the event's own numbers :func:`event_vector` adds, per event type
_VECTOR_EXTRAS: dict[str, tuple[str, ...]] = {
    "application": (
        "amount",
        "log_amount",
        "term_days",
        "declared_monthly_income",
        "age",
        "contacts_count",
        "bureau_score",
        "face_match_score",
        "liveness_fail",
    ),
    "transaction": ("amount", "log_amount"),
    "device": (),
}


def model_columns(event_type: str) -> tuple[str, ...]:
    """The columns the models of an event type see, sorted: every feature and number its
    events can carry. Link and application-velocity features of identifier kinds the
    type never carries (a device event has no payout account) are zero on every one of
    its events, so they are left out: they tell the models nothing and cost them time.

    >>> cols = model_columns("device")
    >>> "sim_users_24h" in cols, "account_users_24h" in cols, "amount" in cols
    (True, False, False)
    >>> "account_users_24h" in model_columns("transaction")
    True
    """
    carried = {kind for _, kind in IDENT_FIELDS[event_type]}
    absent = {
        f"{kind}_{suffix}"
        for kind in IDENT_KINDS
        if kind not in carried
        for suffix in (*LINK_SUFFIXES, "fraud_share", *APP_SUFFIXES)
    }
    return tuple(sorted({*FEATURE_NAMES, *_VECTOR_EXTRAS[event_type]} - absent))


MODEL_COLUMNS: dict[str, tuple[str, ...]] = {etype: model_columns(etype) for etype in IDENT_FIELDS}


def event_vector(event: dict[str, Any], features: dict[str, float]) -> dict[str, float]:
    """The numeric vector the models see: the features plus the event's own numbers."""
    x = features.copy()
    etype = event["event_type"]
    # the contract's amount (a number, 0 or more) of applications and transactions; a
    # device event has none, and a field of that name beyond its contract is not read
    amount = event.get("amount") if etype != "device" else None
    x["amount"] = float(amount) if amount is not None else 0.0
    x["log_amount"] = math.log1p(x["amount"])
    if etype == "application":
        x["term_days"] = float(event.get("term_days") or 0)
        x["declared_monthly_income"] = float(event.get("declared_monthly_income") or 0.0)
        x["age"] = float(event.get("age") or 0)
        x["contacts_count"] = float(min(event.get("contacts_count") or 0, MAX_CONTACTS))
        bureau = event.get("bureau_score")
        x["bureau_score"] = float(bureau) if bureau is not None else 0.0
        kyc = event.get("kyc") or {}
        x["face_match_score"] = float(kyc.get("face_match_score", 1.0))
        x["liveness_fail"] = 0.0 if kyc.get("liveness_pass", True) else 1.0
    return x
