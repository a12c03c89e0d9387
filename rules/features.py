"""The feature catalogue: every name a rule may read as ``features.<name>``.

The feature engine computes all of them for every event, as numbers; 0 when unknown
unless the description says otherwise. Rules are compiled against ``KNOWN_FEATURES``, so
a misspelt name is a compile error.

>>> len(KNOWN_FEATURES) == len(FEATURE_DOCS)
True
>>> "device_users_24h" in KNOWN_FEATURES, "sim_fraud_share" in KNOWN_FEATURES
(True, True)
>>> FEATURE_DOCS["minutes_since_sim_change"]
'minutes since the last SIM change on the account (1e6 when never)'
"""

from __future__ import annotations

from collections.abc import Iterable

NEVER_MINUTES = 1e6
"""Value of a ``minutes_since_*`` feature when the thing never happened."""

LINK_IDENTIFIERS: dict[str, str] = {
    "device": "device",
    "ip": "IP address",
    "wifi": "Wi-Fi network",
    "sim": "SIM card",
    "account": "payout account",
    "phone": "phone number",
    "idnum": "national id number",
}

#: the identifiers each event type carries (the contract's fields behind them:
#: ``riskmon.features.IDENT_FIELDS``): an identifier's features are 0 on the others
IDENTIFIERS_BY_TYPE: dict[str, frozenset[str]] = {
    "application": frozenset({"device", "ip", "account", "phone", "idnum"}),
    "device": frozenset({"device", "ip", "wifi", "sim"}),
    "transaction": frozenset({"device", "ip", "account"}),
}


_USER_HISTORY: dict[str, str] = {
    "account_age_days": "days since the user's account was created",
    "user_devices_count": "distinct devices the user has used",
    "user_sims_count": "distinct SIM cards the user has used",
    "user_ips_24h": "distinct IP addresses the user came from in 24 h",
    "minutes_since_new_device": (
        "minutes since the user first used a device new to them (1e6 when never)"
    ),
    "minutes_since_sim_change": "minutes since the last SIM change on the account (1e6 when never)",
    "minutes_since_password_reset": "minutes since the last password reset (1e6 when never)",
    "minutes_since_failed_login": "minutes since the last failed login (1e6 when never)",
    "minutes_since_new_payout_account": (
        "minutes since money last went to an account new to the user beside one it had "
        "(bound, paid out or sent; 1e6 when never)"
    ),
    "failed_logins_24h": "failed logins in 24 h",
    "amount_to_max_ratio": (
        "amount / largest prior amount of the same event kind (1 when no history)"
    ),
    "amount_to_mean_ratio": "amount / mean prior amount of the same event kind (1 when no history)",
    "income_change_ratio": "declared income / previously declared income (1 when none)",
    "failed_repayments": "repayments that failed",
    "late_repayments": "repayments made past due",
    "max_days_past_due": "most days past due on any repayment",
    "repaid_loans": "loans repaid in full",
    "prior_applications": "loan applications before this one",
    "payout_account_is_new": (
        "1 if this transaction's account was first bound by the user < 24 h ago"
    ),
    "outflow_share": (
        "share of the last disbursement already moved out, including this event (each "
        "transaction once; a failed one taken back)"
    ),
    "minutes_since_disbursement": "minutes since the last disbursement (1e6 when never)",
    "disbursed_amount": "amount of the last disbursement",
}

_LINK_WINDOWS: dict[str, str] = {"1h": "1 h", "24h": "24 h", "7d": "7 days"}


def _link_docs() -> dict[str, str]:
    docs: dict[str, str] = {}
    for ident, what in LINK_IDENTIFIERS.items():
        for suffix, window in _LINK_WINDOWS.items():
            docs[f"{ident}_users_{suffix}"] = f"distinct users on this {what} in {window}"
        for suffix, window in _LINK_WINDOWS.items():
            docs[f"{ident}_events_{suffix}"] = f"events from this {what} in {window}"
        docs[f"{ident}_fraud_share"] = (
            f"share of users linked to this {what} with a confirmed fraud label (labels "
            "of the event's time or before)"
        )
    return docs


_VELOCITY: dict[str, str] = {
    "user_apps_1h": "loan applications by the user in 1 h",
    "user_apps_24h": "loan applications by the user in 24 h",
    "user_apps_7d": "loan applications by the user in 7 days",
    "user_amount_24h": "total amount applied for by the user in 24 h",
    "user_distinct_amounts_24h": "distinct amounts applied for by the user in 24 h",
    "user_txn_out_1h": "withdrawals and transfer_outs by the user in 1 h",
    "geo_speed_kmh": (
        "speed implied by the distance from the user's previous located event (0 under 5 km; "
        "at least a minute between them)"
    ),
}

#: identifiers loan applications carry, for the velocity of applications per identifier
APPLICATION_IDENTIFIERS = ("device", "ip", "account", "phone", "idnum")


def _ident_velocity_docs() -> dict[str, str]:
    docs: dict[str, str] = {}
    for ident in APPLICATION_IDENTIFIERS:
        what = LINK_IDENTIFIERS[ident]
        docs[f"{ident}_apps_1h"] = f"loan applications carrying this {what} in 1 h (all users)"
        docs[f"{ident}_apps_24h"] = f"loan applications carrying this {what} in 24 h (all users)"
        docs[f"{ident}_app_amount_24h"] = (
            f"total amount of the loan applications carrying this {what} in 24 h"
        )
        docs[f"{ident}_distinct_amounts_24h"] = (
            f"distinct amounts applied for with this {what} in 24 h"
        )
    return docs


_DEVICE: dict[str, str] = {
    "is_emulator": "1 if the device is an emulator",
    "is_rooted": "1 if the device is rooted",
    "loan_apps_installed": "lending apps seen on the device",
}

FEATURE_DOCS: dict[str, str] = {
    **_USER_HISTORY,
    **_link_docs(),
    **_VELOCITY,
    **_ident_velocity_docs(),
    **_DEVICE,
}
"""Feature name -> one-line description."""

KNOWN_FEATURES: frozenset[str] = frozenset(FEATURE_DOCS)

#: link and velocity feature -> the identifier kind it counts on
_IDENTIFIER_OF: dict[str, str] = {
    name: kind
    for kind in LINK_IDENTIFIERS
    for name in (*_link_docs(), *_ident_velocity_docs())
    if name.startswith(kind + "_")
}


def identifier_of(feature: str) -> str | None:
    """The identifier kind a link or velocity feature counts on, else ``None``.

    >>> identifier_of("wifi_users_24h"), identifier_of("idnum_apps_1h")
    ('wifi', 'idnum')
    >>> identifier_of("user_apps_1h") is None, identifier_of("account_age_days") is None
    (True, True)
    """
    return _IDENTIFIER_OF.get(feature)


def never_carried(features: Iterable[str], event_types: Iterable[str]) -> list[str]:
    """The identifier features (of ``features``) that no event of ``event_types`` carries
    the identifier of: always 0 on them.

    >>> never_carried(["wifi_users_24h", "ip_users_1h"], ["application"])
    ['wifi_users_24h']
    >>> never_carried(["wifi_users_24h"], ["application", "device"])
    []
    """
    carried = set().union(*(IDENTIFIERS_BY_TYPE.get(t, ()) for t in event_types))
    return sorted(f for f in features if (k := identifier_of(f)) is not None and k not in carried)


#: the features that count things: whole numbers in every event (the feature engine's
#: ``riskmon.features.WHOLE_FEATURES``)
WHOLE_FEATURES: frozenset[str] = frozenset(
    {
        "user_devices_count",
        "user_sims_count",
        "user_ips_24h",
        "failed_logins_24h",
        "failed_repayments",
        "late_repayments",
        "max_days_past_due",
        "repaid_loans",
        "prior_applications",
        "user_apps_1h",
        "user_apps_24h",
        "user_apps_7d",
        "user_distinct_amounts_24h",
        "user_txn_out_1h",
        *(
            name
            for name in FEATURE_DOCS
            if name.endswith(
                (
                    "_users_1h",
                    "_users_24h",
                    "_users_7d",
                    "_events_1h",
                    "_events_24h",
                    "_events_7d",
                    "_apps_1h",
                    "_apps_24h",
                    "_distinct_amounts_24h",
                )
            )
        ),
    }
)
FEATURE_TYPES: dict[str, str] = {
    name: "int" if name in WHOLE_FEATURES else "double" for name in FEATURE_DOCS
}
"""Feature name -> its type in a rule: ``int`` for a count, ``double`` otherwise, so
that ``features.outflow_share % 2`` is a compile error rather than a rule reverted on
its first event. ``/`` between two counts divides whole numbers (``3 / 4`` is 0), as in
CEL: ``double(features.a) / features.b`` is the ratio.

>>> FEATURE_TYPES["device_users_24h"], FEATURE_TYPES["device_fraud_share"]
('int', 'double')
"""
