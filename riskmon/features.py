"""Features at event time: what the user's history, the identifiers they share with
others, their velocity and their device say about one event.

:func:`observe` is the one entry point: it reads the state as it was before the event,
computes the features, then folds the event into the state. It is pure: all it touches
is the state it is given, so the stream worker (Redis) and the replay (memory) compute
identical features from identical state.

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
from typing import Any

from riskmon.state import WEEK, IdentState

NEVER = 1e6  # minutes_since_* when the thing never happened
IDENT_KINDS = ("device", "ip", "wifi", "sim", "account", "phone", "idnum")
LINK_SUFFIXES = ("users_1h", "users_24h", "users_7d", "events_1h", "events_24h", "events_7d")
OUT_KINDS = ("withdrawal", "transfer_out")

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
FEATURE_NAMES: tuple[str, ...] = USER_FEATURES + VELOCITY_FEATURES + DEVICE_FEATURES + LINK_FEATURES


def ident_keys(event: dict[str, Any]) -> list[str]:
    """The identifier keys (``kind:value``) an event carries.

    >>> ident_keys({"event_type": "transaction", "device_id": "d", "account_hash": "c"})
    ['device:d', 'account:c']
    """
    out = []
    for fld, kind in IDENT_FIELDS.get(event["event_type"], ()):
        value = event.get(fld)
        if value:
            out.append(f"{kind}:{value}")
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
    kind = event.get("kind")
    f: dict[str, float] = dict.fromkeys(FEATURE_NAMES, 0.0)
    uid = event.get("user_id") or ""

    # --- links between people: fold the event in first, so counts include it
    for key in ident_keys(event):
        state = idents.get(key)
        if state is None:
            state = idents[key] = IdentState()
        state.add(uid, event["event_id"], ts)
        u1, u24, u7, e1, e24, e7, share = state.counts(ts)
        prefix = key.split(":", 1)[0]
        f[f"{prefix}_users_1h"] = u1
        f[f"{prefix}_users_24h"] = u24
        f[f"{prefix}_users_7d"] = u7
        f[f"{prefix}_events_1h"] = e1
        f[f"{prefix}_events_24h"] = e24
        f[f"{prefix}_events_7d"] = e7
        f[f"{prefix}_fraud_share"] = share

    # --- device risk: the latest telemetry known for the device
    device_key = f"device:{event['device_id']}" if event.get("device_id") else None
    if device_key is not None:
        dev = idents[device_key]
        if etype == "device":
            attrs: dict[str, str] = {}
            for name in ("is_emulator", "is_rooted"):
                if name in event:
                    attrs[name] = "1" if event[name] else "0"
            if "loan_apps_installed" in event:
                attrs["loan_apps_installed"] = str(int(event["loan_apps_installed"]))
            dev.set_attrs(attrs)
        f["is_emulator"] = float(dev.attrs.get("is_emulator", "0"))
        f["is_rooted"] = float(dev.attrs.get("is_rooted", "0"))
        f["loan_apps_installed"] = float(dev.attrs.get("loan_apps_installed", "0"))

    if user is None:
        return f
    _user_features(event, etype, kind, ts, user, f)
    # remember which identifiers this user was seen with (for label propagation)
    linked = user["idents"]
    for key in ident_keys(event):
        if key not in linked:
            linked.append(key)
            if len(linked) > 64:
                del linked[0]
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
    f["account_age_days"] = max(0.0, (ts - user["first_ts"]) / 86400.0)

    device = event.get("device_id")
    if device and device not in user["devices"]:
        if user["devices"]:
            last["new_device"] = ts
        user["devices"][device] = ts
        _cap(user["devices"], 32)
    sim = event.get("sim_hash")
    if sim and sim not in user["sims"]:
        user["sims"][sim] = ts
        _cap(user["sims"], 16)
    ip = event.get("ip")
    if ip:
        user["ips"][ip] = ts
        _cap(user["ips"], 32)

    if etype == "device":
        if kind == "sim_change":
            last["sim_change"] = ts
        elif kind == "password_reset":
            last["password_reset"] = ts
        elif kind == "login_failed":
            last["failed_login"] = ts
            user["failed_logins"].append(ts)
            del user["failed_logins"][:-32]

    day = ts - 86400.0
    f["user_devices_count"] = len(user["devices"])
    f["user_sims_count"] = len(user["sims"])
    f["user_ips_24h"] = sum(1 for t in user["ips"].values() if t >= day)
    f["minutes_since_new_device"] = _minutes_since(ts, last.get("new_device"))
    f["minutes_since_sim_change"] = _minutes_since(ts, last.get("sim_change"))
    f["minutes_since_password_reset"] = _minutes_since(ts, last.get("password_reset"))
    f["minutes_since_failed_login"] = _minutes_since(ts, last.get("failed_login"))
    f["failed_logins_24h"] = sum(1 for t in user["failed_logins"] if t >= day)

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
        else:
            f["amount_to_max_ratio"] = f["amount_to_mean_ratio"] = 1.0
        user["amounts"][akey] = [count + 1, total + amount, max(peak, amount)]
    else:
        f["amount_to_max_ratio"] = f["amount_to_mean_ratio"] = 1.0

    # applications: velocity, declared income
    apps = user["apps"]
    if etype == "application":
        income = event.get("declared_monthly_income")
        prev = user["income"]
        if income is not None and prev:
            f["income_change_ratio"] = income / prev
        else:
            f["income_change_ratio"] = 1.0
        if income is not None:
            user["income"] = income
        f["prior_applications"] = user["n_apps"]
        user["n_apps"] += 1
        apps.append([ts, float(amount or 0.0)])
        cutoff = ts - WEEK
        while apps and apps[0][0] < cutoff:
            apps.pop(0)
        del apps[:-64]
    else:
        f["income_change_ratio"] = 1.0
        f["prior_applications"] = user["n_apps"]
    hour = ts - 3600.0
    f["user_apps_1h"] = sum(1 for a in apps if hour <= a[0] <= ts)
    f["user_apps_24h"] = sum(1 for a in apps if day <= a[0] <= ts)
    f["user_apps_7d"] = sum(1 for a in apps if ts - WEEK <= a[0] <= ts)
    recent = [a[1] for a in apps if day <= a[0] <= ts]
    f["user_amount_24h"] = sum(recent)
    f["user_distinct_amounts_24h"] = len(set(recent))

    # money movements
    repay = user["repay"]
    if etype == "transaction":
        status = event.get("status")
        account = event.get("account_hash")
        if kind == "card_bind" and account and account not in user["accounts"]:
            user["accounts"][account] = ts
            _cap(user["accounts"], 16)
            if len(user["accounts"]) > 1:
                last["new_account"] = ts
        elif account and account not in user["accounts"]:
            user["accounts"][account] = ts
            _cap(user["accounts"], 16)
        if account:
            bound = user["accounts"].get(account)
            f["payout_account_is_new"] = 1.0 if bound is not None and ts - bound < 86400.0 else 0.0
        if kind == "repayment":
            dpd = int(event.get("days_past_due") or 0)
            if status == "failed":
                repay[0] += 1
            elif status == "success":
                repay[3] += 1
            if dpd > 0:
                repay[1] += 1
                repay[2] = max(repay[2], dpd)
        elif kind == "disbursement" and status != "failed":
            user["disb"] = [ts, float(amount or 0.0), 0.0]
        elif kind in OUT_KINDS and status != "failed":
            user["outs"].append(ts)
            del user["outs"][:-32]
            if user["disb"] is not None:
                user["disb"][2] += float(amount or 0.0)
    f["minutes_since_new_payout_account"] = _minutes_since(ts, last.get("new_account"))
    f["failed_repayments"] = repay[0]
    f["late_repayments"] = repay[1]
    f["max_days_past_due"] = repay[2]
    f["repaid_loans"] = repay[3]
    f["user_txn_out_1h"] = sum(1 for t in user["outs"] if t >= hour)
    disb = user["disb"]
    if disb is not None:
        f["minutes_since_disbursement"] = _minutes_since(ts, disb[0])
        f["disbursed_amount"] = disb[1]
        f["outflow_share"] = min(disb[2] / disb[1], 5.0) if disb[1] > 0 else 0.0
    else:
        f["minutes_since_disbursement"] = NEVER

    # speed between the places of consecutive events
    geo = event.get("geo")
    if geo is not None:
        prev_geo = user["geo"]
        if prev_geo is not None and ts > prev_geo[2]:
            km = _haversine_km(prev_geo[0], prev_geo[1], geo["lat"], geo["lon"])
            f["geo_speed_kmh"] = min(km / ((ts - prev_geo[2]) / 3600.0), 5000.0)
        user["geo"] = [geo["lat"], geo["lon"], ts]


def event_vector(event: dict[str, Any], features: dict[str, float]) -> dict[str, float]:
    """The numeric vector the models see: the features plus the event's own numbers."""
    x = dict(features)
    amount = event.get("amount")
    x["amount"] = float(amount) if amount is not None else 0.0
    x["log_amount"] = math.log1p(x["amount"])
    if event["event_type"] == "application":
        x["term_days"] = float(event.get("term_days") or 0)
        x["declared_monthly_income"] = float(event.get("declared_monthly_income") or 0.0)
        x["age"] = float(event.get("age") or 0)
        x["contacts_count"] = float(event.get("contacts_count") or 0)
        bureau = event.get("bureau_score")
        x["bureau_score"] = float(bureau) if bureau is not None else 0.0
        kyc = event.get("kyc") or {}
        x["face_match_score"] = float(kyc.get("face_match_score", 1.0))
        x["liveness_fail"] = 0.0 if kyc.get("liveness_pass", True) else 1.0
    return x
