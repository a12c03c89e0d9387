"""Every simulated event honours the contract; the truth file lines up with the events."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from riskmon.sim.clock import parse_ts
from riskmon.sim.config import SimConfig
from riskmon.sim.generator import EVENT_PREFIX
from riskmon.sim.patterns import FRAUD_PATTERNS, LOOKALIKE_PATTERNS

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX = re.compile(r"^[0-9a-f]{32}$")
TRUTH_KEYS = [
    "event_id",
    "ts",
    "user_id",
    "event_type",
    "is_fraud",
    "pattern",
    "incident",
    "step",
    "money_out",
]


def test_every_event_validates_against_its_contract_schema(
    default_run: Any, validators: Any
) -> None:
    events, _ = default_run
    invalid = [e for e in events if not validators[e["event_type"]].is_valid(e)]
    assert invalid == []
    assert set(Counter(e["event_type"] for e in events)) == set(validators)


def test_event_ids_are_unique_and_typed_and_ts_is_rfc3339_millis_utc(default_run: Any) -> None:
    events, _ = default_run
    assert len({e["event_id"] for e in events}) == len(events)
    for e in events:
        assert e["event_id"].startswith(EVENT_PREFIX[e["event_type"]] + "-")
        assert TS.match(e["ts"]), e["ts"]


def test_events_are_ordered_by_ts_and_activity_stays_in_the_window(default_run: Any) -> None:
    events, _ = default_run
    cfg = SimConfig(seed=11, users=800, days=30)
    times = [parse_ts(e["ts"]) for e in events]
    assert times == sorted(times)
    for e, t in zip(events, times, strict=True):
        if e["event_type"] == "label":
            assert cfg.start_ms <= t < cfg.label_end_ms
        else:
            assert cfg.start_ms <= t < cfg.end_ms


def test_personal_identifiers_are_opaque_hex(default_run: Any) -> None:
    events, _ = default_run
    for e in events:
        for key in ("phone_hash", "id_hash", "bank_card_hash", "account_hash"):
            if key in e:
                assert HEX.match(e[key]), (key, e[key])


def test_only_device_telemetry_before_login_has_an_empty_user_id(default_run: Any) -> None:
    """Installs (and a farm's SIM swaps) happen before anyone logs in."""
    events, _ = default_run
    anonymous = Counter((e["event_type"], e.get("kind")) for e in events if e["user_id"] == "")
    assert ("device", "install") in anonymous
    assert set(anonymous) <= {("device", "install"), ("device", "sim_change")}


def test_truth_has_one_row_per_non_label_event_in_the_same_order(default_run: Any) -> None:
    events, truth = default_run
    non_label = [e for e in events if e["event_type"] != "label"]
    assert [r["event_id"] for r in truth] == [e["event_id"] for e in non_label]
    for row, ev in zip(truth, non_label, strict=True):
        assert list(row) == TRUTH_KEYS
        assert (row["ts"], row["user_id"], row["event_type"]) == (
            ev["ts"],
            ev["user_id"],
            ev["event_type"],
        )
        assert row["pattern"] in ("honest", *FRAUD_PATTERNS, *LOOKALIKE_PATTERNS)


def test_money_out_is_the_amount_of_successful_withdrawals_and_transfers_only(
    default_run: Any,
) -> None:
    events, truth = default_run
    rows = {r["event_id"]: r for r in truth}
    for e in events:
        if e["event_type"] == "label":
            continue
        cash_out = e.get("kind") in ("withdrawal", "transfer_out") and e["status"] == "success"
        assert rows[e["event_id"]]["money_out"] == (e["amount"] if cash_out else 0.0)


def test_honest_and_lookalike_rows_are_never_fraud(default_run: Any) -> None:
    _, truth = default_run
    for row in truth:
        if row["pattern"] == "honest" or row["pattern"].startswith("lookalike_"):
            assert row["is_fraud"] is False
        if row["step"] == "cash_out":
            assert row["is_fraud"] is True


def test_labels_come_after_the_events_they_label(default_run: Any) -> None:
    events, _ = default_run
    first_seen: dict[str, str] = {}
    labels = []
    for e in events:
        if e["event_type"] == "label":
            labels.append(e)
            continue
        for key in ("application_id", "txn_id", "user_id"):
            if e.get(key) and (key != "application_id" or e["event_type"] == "application"):
                first_seen.setdefault(e[key], e["ts"])
    assert labels
    for label in labels:
        assert label["target_id"] in first_seen, label
        assert first_seen[label["target_id"]] < label["ts"]
    kinds = Counter((lb["label"], lb["target_type"]) for lb in labels)
    assert {k for k, _ in kinds} >= {"fraud", "default", "repaid"}
    assert {t for _, t in kinds} == {"application", "transaction", "user"}
