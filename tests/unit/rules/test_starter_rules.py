"""The starter rule set in rules/lending: it loads, and it tells fraud from look-alikes.

Every scenario is a hand-made event (valid against the contract schema) and a feature
dict built from an ordinary, established user. Fraud scenarios must hit exactly the
rules listed; honest look-alikes must never get more than a review.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema_rs
import pytest

from riskmon.settings import Settings
from rules.engine import (
    STARTER_RULES_DIR,
    Mode,
    Outcome,
    RuleSet,
    load_rules_dir,
    load_starter_rules,
)
from rules.expr import compile_expr
from rules.features import KNOWN_FEATURES, LINK_IDENTIFIERS, NEVER_MINUTES

CONTRACT = Path(Settings().contract_dir)
RULE_FIELDS = {
    "rule_id",
    "version",
    "applies_to",
    "when",
    "score",
    "severity",
    "action",
    "mode",
    "reason",
    "enabled",
    "author",
}
EXPECTED_FILES = {
    "device_farm.yaml",
    "account_takeover.yaml",
    "multi_lending.yaml",
    "bust_out.yaml",
    "hygiene.yaml",
}


def _schema(name: str) -> dict[str, Any]:
    return json.loads((CONTRACT / f"{name}.schema.json").read_text(encoding="utf-8"))


EVENT_VALIDATORS = {
    t: jsonschema_rs.validator_for(_schema(t)) for t in ("application", "device", "transaction")
}


def features(**overrides: float) -> dict[str, float]:
    """An established user with one device, no alarms; then the scenario's changes."""
    base: dict[str, float] = {name: 0.0 for name in KNOWN_FEATURES}
    base.update(
        account_age_days=420,
        user_devices_count=1,
        user_sims_count=1,
        user_ips_24h=1,
        amount_to_max_ratio=1.0,
        amount_to_mean_ratio=1.0,
        income_change_ratio=1.0,
        repaid_loans=2,
        prior_applications=3,
        user_apps_1h=1,
        user_apps_24h=1,
        user_apps_7d=1,
        user_distinct_amounts_24h=1,
        loan_apps_installed=2,
    )
    for name in KNOWN_FEATURES:
        if name.startswith("minutes_since_"):
            base[name] = NEVER_MINUTES
    for ident in LINK_IDENTIFIERS:
        for window in ("1h", "24h", "7d"):
            base[f"{ident}_users_{window}"] = 1
            base[f"{ident}_events_{window}"] = 3
    unknown = set(overrides) - KNOWN_FEATURES
    assert not unknown, f"not in the catalogue: {unknown}"
    base.update(overrides)
    return base


def application(**fields: Any) -> dict[str, Any]:
    event = {
        "event_id": "app-1",
        "event_type": "application",
        "ts": "2026-11-28T09:03:41.006Z",
        "user_id": "u1",
        "application_id": "a-1",
        "device_id": "d-1",
        "ip": "36.112.4.9",
        "amount": 3000.0,
        "term_days": 30,
        "product": "cash_loan",
        "declared_monthly_income": 6000.0,
        "age": 28,
        "kyc": {"face_match_score": 0.95, "liveness_pass": True, "ocr_ok": True},
    }
    event.update(fields)
    return event


def device(kind: str, **fields: Any) -> dict[str, Any]:
    event = {
        "event_id": "dev-1",
        "event_type": "device",
        "ts": "2026-11-28T09:00:02.120Z",
        "user_id": "u1",
        "device_id": "d-1",
        "kind": kind,
        "ip": "36.112.4.9",
        "os": "android",
        "is_emulator": False,
        "is_rooted": False,
    }
    event.update(fields)
    return event


def transaction(kind: str, **fields: Any) -> dict[str, Any]:
    event = {
        "event_id": "txn-1",
        "event_type": "transaction",
        "ts": "2026-11-28T09:20:15.440Z",
        "user_id": "u1",
        "txn_id": "t-1",
        "kind": kind,
        "amount": 0.0 if kind == "card_bind" else 3000.0,
        "currency": "CNY",
        "status": "success",
        "account_hash": "c-1",
    }
    event.update(fields)
    return event


class Case(NamedTuple):
    name: str
    event: dict[str, Any]
    features: dict[str, float]
    hits: frozenset[str] = frozenset()
    shadow: frozenset[str] = frozenset()
    outcome: Outcome = Outcome.PASS


def case(
    name: str,
    event: dict[str, Any],
    feats: dict[str, float],
    hits: set[str] | None = None,
    shadow: set[str] | None = None,
    outcome: Outcome = Outcome.PASS,
) -> Case:
    return Case(name, event, feats, frozenset(hits or ()), frozenset(shadow or ()), outcome)


SIM_SWAP = {
    "failed_logins_24h": 6,
    "minutes_since_failed_login": 20,
    "minutes_since_sim_change": 45,
}
PASSWORD_RESET = {"minutes_since_password_reset": 30}

FRAUD = [
    # device farms
    case(
        "farm: fresh accounts on one emulator",
        application(),
        features(
            account_age_days=0,
            device_users_24h=6,
            device_users_7d=9,
            is_emulator=1,
            wifi_users_1h=6,
            wifi_users_24h=6,
            ip_users_1h=6,
        ),
        {
            "farm_fresh_accounts_shared_device",
            "farm_device_many_identities",
            "farm_one_network_shared_devices",
        },
        outcome=Outcome.DECLINE,
    ),
    case(
        "farm: rack of real phones on one network",
        application(),
        features(
            account_age_days=1,
            device_users_24h=4,
            device_users_7d=4,
            ip_users_1h=8,
            ip_users_24h=20,
        ),
        {
            "farm_fresh_accounts_shared_device",
            "farm_device_many_identities",
            "farm_one_network_shared_devices",
        },
        outcome=Outcome.DECLINE,
    ),
    case(
        "farm: emulator applying in bursts to a shared account",
        application(),
        features(is_emulator=1, user_apps_24h=4, user_apps_7d=4, account_users_7d=3),
        {"farm_emulator_burst", "bo_application_to_shared_account"},
        outcome=Outcome.DECLINE,
    ),
    case(
        "farm: device used by known fraudsters",
        application(),
        features(device_users_7d=3, device_fraud_share=0.67, account_age_days=30),
        {"farm_device_linked_to_fraud"},
        outcome=Outcome.DECLINE,
    ),
    case(
        "farm: emulator install with many users, before any application",
        device("install", is_emulator=True),
        features(is_emulator=1, device_users_24h=5),
        {"farm_emulator_many_users"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "farm: two-day-old thin-file identity on a rooted phone",
        application(contacts_count=45, kyc={"face_match_score": 0.86, "liveness_pass": True}),
        features(account_age_days=2, repaid_loans=0, prior_applications=0, is_rooted=1),
        {"farm_thin_file_new_account"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "farm: cash-out in pieces to the farm's collector account",
        transaction("transfer_out", amount=900.0),
        features(
            account_users_7d=3,
            outflow_share=0.5,
            minutes_since_disbursement=150,
            user_txn_out_1h=1,
        ),
        {"bo_cashout_to_shared_account"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "farm: a burst of applications by several accounts on one device (shadow only)",
        application(),
        features(device_apps_24h=5, device_users_24h=4),
        shadow={"farm_device_application_burst"},
    ),
    case(
        "multi-lending: one id number probing amounts across accounts (shadow only)",
        application(),
        features(idnum_apps_24h=3, idnum_distinct_amounts_24h=3, idnum_users_7d=1),
        shadow={"ml_id_amount_probing"},
    ),
    case(
        "farm: id number reused (shadow only)",
        application(),
        features(idnum_users_7d=2),
        shadow={"farm_identity_reuse"},
    ),
    # account takeover through a SIM swap
    case(
        "ato/sim: login on a new device after failed logins",
        device("login"),
        features(**SIM_SWAP, minutes_since_new_device=2, user_devices_count=2),
        {"ato_takeover_login"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "ato/sim: new payout account",
        transaction("card_bind"),
        features(
            **SIM_SWAP,
            minutes_since_new_device=15,
            minutes_since_new_payout_account=0,
            payout_account_is_new=1,
        ),
        {"ato_card_bind_after_reset", "ato_card_bind_takeover"},
        outcome=Outcome.DECLINE,
    ),
    case(
        "ato/sim: loan paid to the new account",
        transaction("disbursement", loan_id="a-9"),
        features(
            **SIM_SWAP,
            minutes_since_new_device=60,
            minutes_since_new_payout_account=40,
            payout_account_is_new=1,
        ),
        {"ato_disbursement_to_new_account"},
        outcome=Outcome.DECLINE,
    ),
    case(
        "ato/sim: cash-out",
        transaction("withdrawal"),
        features(
            **SIM_SWAP,
            minutes_since_new_device=80,
            minutes_since_new_payout_account=70,
            minutes_since_disbursement=10,
            payout_account_is_new=1,
            outflow_share=0.9,
            user_txn_out_1h=1,
        ),
        {"ato_cashout_after_takeover"},
        outcome=Outcome.DECLINE,
    ),
    # account takeover through a password reset, no failed logins
    case(
        "ato/reset: new payout account",
        transaction("card_bind"),
        features(
            **PASSWORD_RESET,
            minutes_since_new_device=20,
            minutes_since_new_payout_account=0,
            payout_account_is_new=1,
        ),
        {"ato_card_bind_after_reset"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "ato/reset: application for a larger amount (shadow only)",
        application(amount=9000.0),
        features(
            minutes_since_password_reset=60,
            minutes_since_new_device=50,
            amount_to_max_ratio=2.5,
        ),
        shadow={"ato_application_after_reset"},
    ),
    case(
        "ato/reset: loan paid to the new account",
        transaction("disbursement"),
        features(
            minutes_since_password_reset=120,
            minutes_since_new_device=110,
            minutes_since_new_payout_account=100,
            payout_account_is_new=1,
        ),
        {"ato_disbursement_to_new_account"},
        outcome=Outcome.DECLINE,
    ),
    case(
        "ato/reset: transfer out",
        transaction("transfer_out"),
        features(
            minutes_since_password_reset=150,
            minutes_since_new_device=140,
            minutes_since_new_payout_account=130,
            minutes_since_disbursement=20,
            payout_account_is_new=1,
        ),
        {"ato_cashout_after_takeover"},
        outcome=Outcome.DECLINE,
    ),
    case(
        "ato: login from a new device across the country in minutes",
        device("login"),
        features(geo_speed_kmh=1500, minutes_since_new_device=0),
        {"ato_impossible_travel_login"},
        outcome=Outcome.REVIEW,
    ),
    # multi-lending
    case(
        "multi-lending: stacker with inflated income",
        application(declared_monthly_income=30000.0),
        features(
            user_apps_1h=2,
            user_apps_24h=5,
            user_apps_7d=8,
            user_distinct_amounts_24h=4,
            loan_apps_installed=23,
            late_repayments=2,
            income_change_ratio=3.2,
        ),
        {
            "ml_application_burst",
            "ml_burst_with_loan_apps",
            "ml_heavy_stacking",
            "ml_inflated_income",
            "ml_inflated_income_stacker",
            "ml_step_up_with_loan_apps",
        },
        outcome=Outcome.DECLINE,
    ),
    case(
        "multi-lending: probing the approval limit",
        application(),
        features(user_apps_24h=4, user_apps_7d=4, user_distinct_amounts_24h=3),
        {"ml_application_burst"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "multi-lending: amount of 40 months of income",
        application(amount=200000.0, declared_monthly_income=5000),
        features(loan_apps_installed=12),
        {"ml_amount_vs_income"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "multi-lending: another loan hours after the last payout",
        application(amount=2300.0, product="consumer_installment", term_days=180),
        features(
            minutes_since_disbursement=300,
            user_apps_24h=2,
            user_apps_7d=2,
            user_distinct_amounts_24h=2,
            amount_to_max_ratio=0.1,
            repaid_loans=0,
        ),
        {"ml_reapply_after_payout"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "multi-lending: larger amount and higher income, many lending apps",
        application(amount=9000.0, declared_monthly_income=9000.0),
        features(
            loan_apps_installed=8,
            amount_to_max_ratio=3.5,
            income_change_ratio=1.3,
            repaid_loans=0,
            user_apps_7d=2,
        ),
        {"ml_step_up_with_loan_apps"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "multi-lending: business loan from a phone full of lending apps",
        application(amount=24000.0, product="micro_business", term_days=180),
        features(loan_apps_installed=9, repaid_loans=0, prior_applications=0),
        {"ml_business_loan_many_loan_apps"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "multi-lending: rooted device full of lending apps (shadow only)",
        device("fingerprint", is_rooted=True, loan_apps_installed=30),
        features(loan_apps_installed=30, is_rooted=1),
        shadow={"ml_loan_apps_rooted_device"},
    ),
    # bust-out via mule accounts
    case(
        "bust-out: large application after a small repaid loan",
        application(amount=20000.0),
        features(
            repaid_loans=1,
            amount_to_max_ratio=10,
            account_users_7d=4,
            account_age_days=75,
        ),
        {"bo_large_loan_shared_account", "bo_application_to_shared_account"},
        shadow={"bo_clean_history_jump"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "bust-out: large loan paid to a shared account",
        transaction("disbursement", amount=20000.0),
        features(repaid_loans=1, amount_to_max_ratio=10, account_users_7d=4),
        {"bo_disbursement_to_shared_account"},
        outcome=Outcome.DECLINE,
    ),
    case(
        "bust-out: moved out at once",
        transaction("withdrawal", amount=19600.0),
        features(
            account_users_7d=4,
            outflow_share=0.98,
            minutes_since_disbursement=15,
            user_txn_out_1h=1,
        ),
        {"bo_cashout_shared_account", "bo_cashout_to_shared_account"},
        outcome=Outcome.DECLINE,
    ),
    case(
        "bust-out: account of known fraudsters",
        transaction("transfer_out"),
        features(
            account_users_7d=3,
            account_fraud_share=0.5,
            outflow_share=0.5,
            minutes_since_disbursement=2000,
        ),
        {"bo_account_linked_to_fraud", "bo_cashout_to_shared_account"},
        outcome=Outcome.DECLINE,
    ),
    case(
        "bust-out: ring's payout account bound by one more borrower",
        transaction("card_bind", account_hash="c-mule"),
        features(
            account_users_24h=2,
            account_users_7d=2,
            minutes_since_new_payout_account=0,
            payout_account_is_new=1,
        ),
        {"bo_card_bind_shared_account"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "bust-out: five times the groomed loan, days after replacing the payout account",
        application(amount=8000.0),
        features(repaid_loans=1, amount_to_max_ratio=5.3, minutes_since_new_payout_account=2500),
        {"bo_application_after_account_change"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "bust-out: that loan paid to the replacement account",
        transaction("disbursement", amount=8000.0),
        features(repaid_loans=1, amount_to_max_ratio=5.3, minutes_since_new_payout_account=2510),
        {"bo_disbursement_after_account_change"},
        outcome=Outcome.DECLINE,
    ),
    case(
        "bust-out: payout split out through a new account",
        transaction("withdrawal", amount=900.0),
        features(
            outflow_share=1.0,
            minutes_since_disbursement=40,
            user_txn_out_1h=4,
            payout_account_is_new=1,
            minutes_since_new_payout_account=300,
        ),
        {"bo_fast_full_outflow"},
        outcome=Outcome.REVIEW,
    ),
    # hygiene
    case(
        "hygiene: minor", application(age=17), features(), {"hy_underage"}, outcome=Outcome.DECLINE
    ),
    case(
        "hygiene: liveness failed",
        application(kyc={"face_match_score": 0.9, "liveness_pass": False}),
        features(),
        {"hy_liveness_failed"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "hygiene: face does not match",
        application(kyc={"face_match_score": 0.3, "liveness_pass": True}),
        features(),
        {"hy_face_mismatch"},
        outcome=Outcome.REVIEW,
    ),
    case(
        "hygiene: impossible travel on a payment",
        transaction("payment"),
        features(geo_speed_kmh=2000, user_ips_24h=4),
        {"hy_impossible_travel"},
        outcome=Outcome.REVIEW,
    ),
]

NEW_PHONE = {"minutes_since_new_device": 30, "user_devices_count": 2}

HONEST = [
    case(
        "family: new member on the shared phone",
        application(),
        features(device_users_7d=3, device_users_24h=2, account_age_days=1, repaid_loans=0),
    ),
    case(
        "family: long-time member on the shared phone",
        application(),
        features(device_users_7d=3, device_users_24h=3, account_age_days=500),
    ),
    case(
        "students: campus network, each on their own phone",
        application(amount=1500.0),
        features(
            account_age_days=1,
            repaid_loans=0,
            ip_users_1h=40,
            ip_users_24h=300,
            ip_events_1h=200,
            wifi_users_1h=25,
            wifi_users_24h=250,
        ),
    ),
    case(
        "new phone: first login",
        device("login"),
        features(minutes_since_new_device=0, user_devices_count=2),
    ),
    case(
        "new phone: new card",
        transaction("card_bind"),
        features(**NEW_PHONE, minutes_since_new_payout_account=0, payout_account_is_new=1),
    ),
    case(
        "new phone: loan paid to the new card",
        transaction("disbursement"),
        features(**NEW_PHONE, minutes_since_new_payout_account=60, payout_account_is_new=1),
    ),
    case(
        "new phone: money withdrawn right away",
        transaction("withdrawal"),
        features(
            **NEW_PHONE,
            minutes_since_new_payout_account=70,
            minutes_since_disbursement=5,
            payout_account_is_new=1,
            outflow_share=1.0,
            user_txn_out_1h=1,
        ),
    ),
    case(
        "tester: emulator install",
        device("install", is_emulator=True),
        features(is_emulator=1, device_users_24h=3),
    ),
    case(
        "tester: test accounts applying from one emulator",
        application(amount=100.0),
        features(
            is_emulator=1, device_users_24h=3, device_users_7d=6, account_age_days=3, repaid_loans=0
        ),
    ),
    case(
        "regular: larger loan after repaying three",
        application(amount=7500.0),
        features(repaid_loans=3, amount_to_max_ratio=2.5),
    ),
    case(
        "regular: withdraws the whole loan at once",
        transaction("withdrawal"),
        features(outflow_share=1.0, minutes_since_disbursement=3, user_txn_out_1h=1),
    ),
    case(
        "regular: many lending apps, one application",
        application(),
        features(loan_apps_installed=18),
    ),
    case(
        "regular: got a raise",
        application(declared_monthly_income=15000.0),
        features(income_change_ratio=2.5),
    ),
    case(
        "regular: flew to another city, same phone",
        device("login"),
        features(geo_speed_kmh=900),
    ),
    case(
        "family: new member with no credit record on the shared phone",
        application(contacts_count=260, bureau_score=None),
        features(device_users_7d=3, device_users_24h=2, account_age_days=1, repaid_loans=0),
    ),
    case(
        "students: new account, no credit record, own phone on the campus network",
        application(amount=1500.0, contacts_count=180, bureau_score=None),
        features(account_age_days=1, repaid_loans=0, ip_users_1h=40, ip_users_24h=300),
    ),
    case(
        "regular: retries a smaller amount the same day after a decline",
        application(amount=1800.0),
        features(
            user_apps_24h=2, user_apps_7d=2, user_distinct_amounts_24h=2, amount_to_max_ratio=0.6
        ),
    ),
    case(
        "regular: next loan a week after repaying the last one",
        application(amount=4000.0),
        features(repaid_loans=3, minutes_since_disbursement=12000, user_apps_7d=1),
    ),
    case(
        "regular: micro-business loan from a phone with a few lending apps",
        application(amount=20000.0, product="micro_business", term_days=180),
        features(loan_apps_installed=3),
    ),
    case(
        "regular: pays a merchant that many borrowers pay",
        transaction("payment", amount=300.0, account_hash="merchant-1"),
        features(account_users_7d=200, minutes_since_disbursement=600, outflow_share=0.1),
    ),
    case(
        "regular: no kyc block and no age on the application",
        application(kyc=None, age=None),
        features(),
    ),
]


@pytest.fixture(scope="module")
def starter() -> RuleSet:
    return load_starter_rules()


def _event_ok(event: dict[str, Any]) -> dict[str, Any]:
    clean = {k: v for k, v in event.items() if v is not None}
    EVENT_VALIDATORS[clean["event_type"]].validate(clean)
    return clean


def test_starter_files_are_the_five_patterns() -> None:
    """The set is split by pattern, one YAML file each."""
    assert {p.name for p in STARTER_RULES_DIR.glob("*.yaml")} == EXPECTED_FILES


def test_every_rule_validates_and_compiles_against_the_catalogue() -> None:
    """Each rule has every field, a version, author risk-team, and compiles strictly."""
    dicts = load_rules_dir(STARTER_RULES_DIR, KNOWN_FEATURES)
    assert len(dicts) >= 25
    validator = jsonschema_rs.validator_for(_schema("rule"))
    for data in dicts:
        validator.validate(data)
        assert set(data) == RULE_FIELDS, data["rule_id"]
        assert data["version"] >= 1 and data["author"] == "risk-team" and data["enabled"]
        compiled = compile_expr(data["when"], known_features=KNOWN_FEATURES, name=data["rule_id"])
        assert compiled.result_type in ("bool", "dyn")
    assert len({d["rule_id"] for d in dicts}) == len(dicts)


def test_rules_read_only_contract_fields_of_their_event_types(starter: RuleSet) -> None:
    """``event.<field>`` names exist in the schema of every type the rule applies to."""
    for rule in starter:
        assert rule.predicate is not None
        for event_type in rule.applies_to:
            known = set(_schema(event_type)["properties"])
            missing = rule.predicate.event_fields - known
            assert not missing, f"{rule.rule_id} reads {missing} absent from {event_type}"


def test_shadow_rules_exist_and_each_file_has_active_rules(starter: RuleSet) -> None:
    """At least one rule runs in shadow mode; most are active."""
    modes = [r.mode for r in starter]
    assert Mode.SHADOW in modes
    assert modes.count(Mode.ACTIVE) > len(modes) / 2


def test_application_events_meet_twenty_to_thirty_rules(starter: RuleSet) -> None:
    """The load the bench measures: twenty to thirty rules per application."""
    assert 20 <= len(starter.rules_for("application")) <= 30


@pytest.mark.parametrize("scenario", FRAUD, ids=[c.name for c in FRAUD])
def test_fraud_pattern_hits_expected_rules(starter: RuleSet, scenario: Case) -> None:
    """Exactly the listed rules fire (active and shadow), with the listed outcome."""
    event = _event_ok(scenario.event)
    result = starter.evaluate(event["event_type"], event, scenario.features)
    assert result.errors == ()
    assert {h.rule.rule_id for h in result.hits} == scenario.hits
    assert {h.rule.rule_id for h in result.shadow_hits} == scenario.shadow
    assert result.outcome == scenario.outcome


@pytest.mark.parametrize("scenario", HONEST, ids=[c.name for c in HONEST])
def test_honest_look_alike_gets_at_most_a_review(starter: RuleSet, scenario: Case) -> None:
    """Look-alikes are never declined or frozen; most hit nothing at all."""
    event = _event_ok(scenario.event)
    result = starter.evaluate(event["event_type"], event, scenario.features)
    assert result.errors == ()
    assert result.outcome <= Outcome.REVIEW, result.rule_ids
    if scenario.name != "tester: test accounts applying from one emulator":
        assert result.hits == (), result.rule_ids


def test_takeover_is_stopped_before_the_cash_out(starter: RuleSet) -> None:
    """In both takeover sequences an event before the withdrawal already declines."""
    for prefix in ("ato/sim:", "ato/reset:"):
        steps = [c for c in FRAUD if c.name.startswith(prefix)]
        cash_out = next(i for i, c in enumerate(steps) if c.event.get("kind") in _CASH_OUT)
        before = [
            starter.evaluate(c.event["event_type"], c.event, c.features).outcome
            for c in steps[:cash_out]
        ]
        assert Outcome.DECLINE in before, prefix


_CASH_OUT = ("withdrawal", "transfer_out")


def test_every_starter_rule_is_exercised_by_a_scenario(starter: RuleSet) -> None:
    """No dead rules: each one fires in at least one fraud scenario."""
    fired = set().union(*(c.hits | c.shadow for c in FRAUD))
    assert fired == {r.rule_id for r in starter}
