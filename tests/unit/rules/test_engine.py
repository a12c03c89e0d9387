"""The rule engine: loading and validation, versioned rule sets, evaluation, counters."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from riskmon.contract import DEFAULT_CONTRACT_DIR, Contract
from riskmon.core import Core
from riskmon.settings import Settings
from rules.engine import (
    ACTION_OUTCOME,
    HISTORY_DEPTH,
    Action,
    Evaluation,
    Mode,
    Outcome,
    RuleError,
    RuleFailure,
    RuleSet,
    RuleStats,
    Severity,
    load_rule,
    load_rule_files,
    load_rules_dir,
    read_rules_file,
)
from rules.expr import RuleEvalError
from rules.features import KNOWN_FEATURES

KNOWN = frozenset({"failed_logins_24h", "minutes_since_new_device", "zero", "amount_ratio"})


def rule(rule_id: str = "r1", version: int = 1, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "rule_id": rule_id,
        "version": version,
        "applies_to": ["transaction"],
        "when": "event.kind == 'card_bind' && features.minutes_since_new_device < 60.0",
        "enabled": True,
    }
    data.update(fields)
    return data


CARD_BIND = {"kind": "card_bind", "amount": 0.0}
FRESH_DEVICE = {
    "minutes_since_new_device": 5.0,
    "failed_logins_24h": 0,
    "zero": 0,
    "amount_ratio": 2,
}


# --------------------------------------------------------------------------- enums


def test_outcomes_are_ordered_so_the_most_severe_wins() -> None:
    """pass < review < decline; the decision contract's labels come with them."""
    assert Outcome.PASS < Outcome.REVIEW < Outcome.DECLINE
    assert [o.label for o in Outcome] == ["pass", "review", "decline"]
    assert Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL


def test_each_action_maps_to_an_outcome() -> None:
    """none->pass, review->review, decline->decline, reduce_limit->review, freeze->decline."""
    assert dict(ACTION_OUTCOME) == {
        Action.NONE: Outcome.PASS,
        Action.REVIEW: Outcome.REVIEW,
        Action.DECLINE: Outcome.DECLINE,
        Action.REDUCE_LIMIT: Outcome.REVIEW,
        Action.FREEZE: Outcome.DECLINE,
    }


# --------------------------------------------------------------------------- load_rule


def test_load_rule_applies_defaults() -> None:
    """score 0.5, severity medium, action review, mode active when not given."""
    r = load_rule(rule(), KNOWN)
    assert (r.score, r.severity, r.action, r.mode) == (
        0.5,
        Severity.MEDIUM,
        Action.REVIEW,
        Mode.ACTIVE,
    )
    assert r.applies_to == frozenset({"transaction"})
    assert r.outcome is Outcome.REVIEW
    assert r.predicate is not None and r.predicate.event_kinds == {"card_bind"}


def test_load_rule_reads_every_field_and_keeps_the_definition() -> None:
    """All contract fields land on the Rule; the input mapping is kept read-only."""
    data = rule(
        score=0.8,
        severity="high",
        action="freeze",
        mode="shadow",
        reason="payout changed",
        author="risk-team",
        ticket="RISK-12",
    )
    r = load_rule(data, KNOWN)
    assert (r.score, r.severity, r.action, r.mode, r.reason, r.author) == (
        0.8,
        Severity.HIGH,
        Action.FREEZE,
        Mode.SHADOW,
        "payout changed",
        "risk-team",
    )
    assert r.shadow and r.outcome is Outcome.DECLINE
    assert r.definition["ticket"] == "RISK-12"
    with pytest.raises(TypeError):
        r.definition["ticket"] = "x"  # type: ignore[index]


def test_rule_matches_evaluates_one_event() -> None:
    """Rule.matches runs the compiled condition on an event and its features."""
    r = load_rule(rule(), KNOWN)
    assert r.matches(CARD_BIND, FRESH_DEVICE) is True
    assert r.matches({"kind": "payment"}, FRESH_DEVICE) is False
    number = load_rule(rule(when="event.note"), KNOWN)  # a field the contract lacks
    with pytest.raises(RuleEvalError, match="condition gave float"):
        number.matches({**CARD_BIND, "note": 1.5}, FRESH_DEVICE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"when": None}, 'when: null is not of type "string"'),
        ({"version": 0}, "version: 0 is less than the minimum of 1"),
        ({"score": 1.5}, "score: 1.5 is greater than the maximum of 1"),
        ({"action": "ban"}, 'action: "ban" is not one of'),
        ({"applies_to": ["label"]}, 'applies_to/0: "label" is not one of'),
        ({"applies_to": []}, "applies_to: [] has less than 1 item"),
        ({"enabled": "yes"}, 'enabled: "yes" is not of type "boolean"'),
    ],
)
def test_schema_violations_raise_rule_error_naming_the_rule(
    change: dict[str, Any], message: str
) -> None:
    """The contract's rule.schema.json is enforced, the message names rule id and field."""
    with pytest.raises(RuleError) as info:
        load_rule(rule(**change), KNOWN)
    assert str(info.value).startswith("rule 'r1'")
    assert message in str(info.value)


def test_missing_required_field_is_reported() -> None:
    """A rule without 'when' fails validation."""
    data = rule()
    del data["when"]
    with pytest.raises(RuleError, match='"when" is a required property'):
        load_rule(data)


def test_non_mapping_rule_is_rejected() -> None:
    """A list or a string is not a rule."""
    with pytest.raises(RuleError, match="a rule must be a mapping, got list"):
        load_rule([1, 2])  # type: ignore[arg-type]


def test_compile_errors_become_rule_errors() -> None:
    """A bad condition is a RuleError with rule id, version, position and suggestion."""
    with pytest.raises(RuleError) as info:
        load_rule(rule(when="features.failed_login_24h > 3"), KNOWN)
    assert str(info.value) == (
        "rule 'r1' v1: unknown feature 'failed_login_24h' at column 10 "
        "(did you mean 'failed_logins_24h'?)"
    )


def test_features_are_typed_so_a_rule_that_would_fail_on_every_event_is_refused() -> None:
    """Counts are whole numbers and the rest decimals, in every event: ``%`` on a decimal
    feature is a compile error (it would fail on the first event and be reverted), and
    ``%`` on a count works on an event without the identifier (the count is 0)."""
    with pytest.raises(RuleError, match="no operator '%' for double and int"):
        load_rule(rule(when="features.outflow_share % 2 == 1"), KNOWN_FEATURES)
    counted = load_rule(rule(when="features.ip_users_24h % 2 == 0"), KNOWN_FEATURES)
    assert counted.predicate is not None
    from riskmon.features import observe
    from riskmon.state import new_user_state

    event = {"event_id": "e1", "event_type": "device", "kind": "login", "user_id": "u1"}
    features = observe(event, 1_800_000_000.0, new_user_state(1_800_000_000.0), {})
    assert features["ip_users_24h"] == 0 and type(features["ip_users_24h"]) is int
    assert counted.predicate.evaluate({"event": event, "features": features}) is True


def test_condition_must_be_boolean() -> None:
    """A condition whose type is known not to be bool is refused."""
    with pytest.raises(RuleError, match="must be true or false, this one gives a int"):
        load_rule(rule(when="features.failed_logins_24h + 1 > 0 ? 1 : 2"), KNOWN)


def test_retired_rule_is_not_compiled() -> None:
    """enabled: false only needs a valid shape; its condition is never run."""
    r = load_rule(rule(enabled=False, when="this is not )( an expression"), KNOWN)
    assert r.predicate is None
    assert r.matches(CARD_BIND, FRESH_DEVICE) is False


def test_schema_can_be_passed_in() -> None:
    """A schema dict given by the caller replaces the contract file."""
    schema = json.loads((Path(Settings().contract_dir) / "rule.schema.json").read_text())
    schema["properties"]["rule_id"]["pattern"] = "^[a-z_0-9]+$"
    with pytest.raises(RuleError, match="does not match"):
        load_rule(rule(rule_id="Bad Id"), schema=schema)
    assert load_rule(rule(), schema=schema).rule_id == "r1"


# --------------------------------------------------------------------------- load_rules_dir


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


RULE_YAML = """
  - rule_id: {rid}
    version: {version}
    applies_to: [device]
    when: "{when}"
    enabled: true
"""


def test_rules_dir_reads_lists_and_rules_mappings(tmp_path: Path) -> None:
    """A file is a list of rules or a mapping with rules:; files are read in name order."""
    write(tmp_path, "b.yaml", "rules:" + RULE_YAML.format(rid="b1", version=1, when="true"))
    write(tmp_path, "a.yaml", RULE_YAML.format(rid="a1", version=2, when="false"))
    write(tmp_path, "empty.yaml", "")
    write(tmp_path, "ignored.txt", "not yaml: [")
    dicts = load_rules_dir(tmp_path)
    assert [(d["rule_id"], d["version"]) for d in dicts] == [("a1", 2), ("b1", 1)]


def test_rules_dir_error_names_file_and_rule(tmp_path: Path) -> None:
    """An invalid rule's message starts with its file name, then its id."""
    write(tmp_path, "a.yaml", RULE_YAML.format(rid="ok", version=1, when="true"))
    write(tmp_path, "b.yaml", RULE_YAML.format(rid="broken", version=3, when="'x' < 1"))
    with pytest.raises(RuleError) as info:
        load_rules_dir(tmp_path)
    assert str(info.value).startswith("b.yaml: rule 'broken' v3: ")
    assert "cannot compare string < int" in str(info.value)


def test_unquoted_yaml_boolean_condition_is_reported(tmp_path: Path) -> None:
    """`when: true` in YAML is a boolean, not an expression: the message says so."""
    write(
        tmp_path,
        "a.yaml",
        RULE_YAML.replace('"{when}"', "{when}").format(rid="t", version=1, when="true"),
    )
    with pytest.raises(
        RuleError, match=re.escape("a.yaml: rule 't' v1: when: true is not of type \"string\"")
    ):
        load_rules_dir(tmp_path)


def test_rules_dir_checks_features_when_given(tmp_path: Path) -> None:
    """With known_features, a misspelt feature fails the load."""
    write(tmp_path, "a.yaml", RULE_YAML.format(rid="f", version=1, when="features.nope > 1"))
    assert load_rules_dir(tmp_path)
    with pytest.raises(RuleError, match=re.escape("a.yaml: rule 'f' v1: unknown feature 'nope'")):
        load_rules_dir(tmp_path, KNOWN)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [", "a.yaml: invalid YAML"),
        ("just a string", "a.yaml: expected a list of rules or a mapping with 'rules:'"),
        ("- 1\n", "a.yaml: rule #1 is a int, not a mapping"),
    ],
)
def test_rules_dir_bad_files(tmp_path: Path, text: str, message: str) -> None:
    """YAML and layout errors name the file."""
    write(tmp_path, "a.yaml", text)
    with pytest.raises(RuleError, match=message):
        load_rules_dir(tmp_path)


def test_rules_dir_rejects_the_same_version_twice(tmp_path: Path) -> None:
    """One (rule_id, version) defined in two files is an error naming both."""
    write(tmp_path, "a.yaml", RULE_YAML.format(rid="dup", version=1, when="true"))
    write(tmp_path, "b.yaml", RULE_YAML.format(rid="dup", version=1, when="false"))
    with pytest.raises(
        RuleError, match=re.escape("b.yaml: rule 'dup' v1 is also defined in a.yaml")
    ):
        load_rules_dir(tmp_path)


def test_rules_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="not a directory"):
        load_rules_dir(tmp_path / "nowhere")


# --------------------------------------------------------------------------- RuleSet changes


def test_from_dicts_keeps_the_newest_version_and_its_history() -> None:
    """Several versions of an id: the newest is in force, older ones are history."""
    rs = RuleSet.from_dicts(
        [rule(version=3, score=0.3), rule(version=1, score=0.1), rule(version=2, score=0.2)],
        KNOWN,
    )
    current = rs.get("r1")
    assert current is not None and current.version == 3 and current.score == 0.3
    assert [r.version for r in rs.history("r1")] == [1, 2, 3]
    assert rs.versions() == {"r1": 3}
    assert len(rs) == 1 and "r1" in rs


def test_from_dicts_rejects_duplicate_versions() -> None:
    """Two definitions of one version are ambiguous."""
    with pytest.raises(RuleError, match="rule 'r1' v1 is given twice"):
        RuleSet.from_dicts([rule(), rule(score=0.9)], KNOWN)


def test_from_dicts_raises_on_any_invalid_rule() -> None:
    """Startup is all or nothing."""
    with pytest.raises(RuleError, match="rule 'bad' v1"):
        RuleSet.from_dicts([rule(), rule("bad", when="features.nope > 1")], KNOWN)


def test_apply_adds_then_updates_a_rule() -> None:
    """A new id is added; a newer version replaces it; the old snapshot is unchanged."""
    empty = RuleSet(KNOWN)
    one, added = empty.apply(rule(score=0.4))
    two, updated = one.apply(rule(version=2, score=0.9))
    assert str(updated) == "updated r1 v2: replaces version 1"
    assert (added.kind, added.version, added.previous) == ("added", 1, None)
    assert (updated.kind, updated.version, updated.previous) == ("updated", 2, 1)
    assert updated.reason == "replaces version 1"
    assert len(empty) == 0
    assert one.evaluate("transaction", CARD_BIND, FRESH_DEVICE).score == 0.4
    assert two.evaluate("transaction", CARD_BIND, FRESH_DEVICE).score == 0.9


@pytest.mark.parametrize("version", [1, 2])
def test_apply_ignores_older_or_equal_versions(version: int) -> None:
    """A stale version leaves the snapshot as it is and says why."""
    rs = RuleSet.from_dicts([rule(version=2)], KNOWN)
    same, change = rs.apply(rule(version=version, when="true"))
    assert same is rs
    assert (change.kind, change.version, change.previous) == ("stale", version, 2)
    assert change.reason == f"version {version} is not newer than version 2"


def test_stale_rules_are_not_compiled() -> None:
    """An old, broken definition arriving late is ignored, not an error."""
    rs = RuleSet.from_dicts([rule(version=2)], KNOWN)
    assert rs.apply(rule(version=1, when="broken ("))[1].kind == "stale"


def test_apply_retires_and_revives() -> None:
    """enabled: false takes the rule out of evaluation; a newer enabled version returns it."""
    rs = RuleSet.from_dicts([rule()], KNOWN)
    retired, change = rs.apply(rule(version=2, enabled=False))
    assert change.kind == "retired"
    assert "r1" not in retired and len(retired) == 0
    assert retired.get("r1") is not None
    assert retired.evaluate("transaction", CARD_BIND, FRESH_DEVICE).hits == ()
    assert retired.apply(rule(version=1))[1].kind == "stale"
    revived, change = retired.apply(rule(version=3))
    assert (change.kind, change.reason) == ("added", "enabled again")
    assert revived.evaluate("transaction", CARD_BIND, FRESH_DEVICE).rule_ids == ["r1"]


def test_apply_of_a_broken_rule_raises_and_the_caller_keeps_the_old_set() -> None:
    """Compile failure raises RuleError; the current snapshot is untouched."""
    rs = RuleSet.from_dicts([rule()], KNOWN)
    with pytest.raises(RuleError, match="rule 'r1' v2"):
        rs.apply(rule(version=2, when="features.minutes_since_new_device <"))
    assert rs.versions() == {"r1": 1}
    assert rs.evaluate("transaction", CARD_BIND, FRESH_DEVICE).rule_ids == ["r1"]


def test_apply_uses_the_rule_sets_feature_catalogue() -> None:
    """Rules arriving later are checked against the same known features."""
    with pytest.raises(RuleError, match="unknown feature 'nope'"):
        RuleSet(KNOWN).apply(rule(when="features.nope > 1"))


def test_revert_goes_back_one_version() -> None:
    """The previous compiled version is put back in force."""
    rs = RuleSet.from_dicts([rule(score=0.1)], KNOWN)
    rs, _ = rs.apply(rule(version=2, score=0.2))
    back = rs.revert("r1")
    current = back.get("r1")
    assert current is not None and (current.version, current.score) == (1, 0.1)
    assert back.evaluate("transaction", CARD_BIND, FRESH_DEVICE).score == 0.1


def test_revert_without_history_removes_the_rule() -> None:
    """A rule with a single version disappears."""
    rs = RuleSet.from_dicts([rule()], KNOWN).revert("r1")
    assert rs.get("r1") is None and len(rs) == 0
    assert rs.evaluate("transaction", CARD_BIND, FRESH_DEVICE).evaluated == 0


def test_reverted_version_cannot_come_back_with_the_same_number() -> None:
    """The broken version stays seen; only a higher version is applied."""
    rs = RuleSet.from_dicts([rule(version=4)], KNOWN).revert("r1")
    assert rs.apply(rule(version=4))[1].kind == "stale"
    assert rs.apply(rule(version=5))[1].kind == "added"


def test_revert_with_a_version_acts_once() -> None:
    """Several failures of one version in a batch revert it once, not further."""
    rs = RuleSet.from_dicts([rule(version=1), rule(version=2)], KNOWN)
    once = rs.revert("r1", version=2)
    twice = once.revert("r1", version=2)
    assert twice is once
    assert [r.version for r in once.history("r1")] == [1]
    assert rs.revert("unknown") is rs


def test_history_keeps_the_last_five_versions() -> None:
    """Only HISTORY_DEPTH compiled versions are kept per id."""
    rs = RuleSet(KNOWN)
    for v in range(1, 9):
        rs, _ = rs.apply(rule(version=v))
    assert HISTORY_DEPTH == 5
    assert [r.version for r in rs.history("r1")] == [4, 5, 6, 7, 8]
    for _ in range(4):
        rs = rs.revert("r1")
    current = rs.get("r1")
    assert current is not None and current.version == 4
    assert rs.revert("r1").get("r1") is None


# --------------------------------------------------------------------------- evaluation


def rules_for_evaluation() -> RuleSet:
    return RuleSet.from_dicts(
        [
            rule("bind_fresh", score=0.6, action="review", reason="bind from fresh device"),
            rule(
                "bind_freeze",
                when="event.kind == 'card_bind' && features.failed_logins_24h >= 3",
                score=0.9,
                action="freeze",
                severity="critical",
                reason="bind after failed logins",
            ),
            rule(
                "any_txn",
                when="features.minutes_since_new_device < 10.0",
                score=0.2,
                action="none",
                reason="any fresh device",
            ),
            rule(
                "shadow_bind",
                when="event.kind in ['card_bind', 'withdrawal']",
                mode="shadow",
                action="decline",
                score=0.99,
            ),
            rule("device_only", applies_to=["device"], when="true"),
            rule(
                "divides",
                when="event.kind == 'withdrawal' && features.amount_ratio / features.zero > 1",
            ),
        ],
        KNOWN,
    )


def test_evaluate_separates_active_and_shadow_hits() -> None:
    """Shadow hits are reported but do not change outcome or score."""
    result = rules_for_evaluation().evaluate("transaction", CARD_BIND, FRESH_DEVICE)
    assert result.rule_ids == ["any_txn", "bind_fresh"]
    assert [h.rule.rule_id for h in result.shadow_hits] == ["shadow_bind"]
    assert [(h.rule_id, h.version) for h in result.hits] == [("any_txn", 1), ("bind_fresh", 1)]
    assert result.outcome is Outcome.REVIEW
    assert result.errors == ()


def test_outcome_is_the_most_severe_and_score_is_noisy_or() -> None:
    """max over outcomes; 1 - prod(1 - score) over active hits; reasons by score."""
    features = {**FRESH_DEVICE, "failed_logins_24h": 4}
    result = rules_for_evaluation().evaluate("transaction", CARD_BIND, features)
    assert result.rule_ids == ["any_txn", "bind_freeze", "bind_fresh"]
    assert result.outcome is Outcome.DECLINE
    assert result.severity is Severity.CRITICAL
    assert math.isclose(result.score, 1 - (1 - 0.2) * (1 - 0.9) * (1 - 0.6))
    assert result.reasons == [
        {"code": "rule:bind_freeze", "detail": "bind after failed logins", "value": 1},
        {"code": "rule:bind_fresh", "detail": "bind from fresh device", "value": 1},
        {"code": "rule:any_txn", "detail": "any fresh device", "value": 1},
    ]


def test_no_hit_means_pass_with_score_zero() -> None:
    """An empty evaluation passes."""
    result = Evaluation()
    assert (result.outcome, result.score, result.reasons, result.severity) == (
        Outcome.PASS,
        0.0,
        [],
        None,
    )


def test_index_runs_only_rules_for_the_event_type_and_kind() -> None:
    """Rules apply by event type; a rule fixing event.kind runs only on that kind."""
    rs = rules_for_evaluation()
    assert [r.rule_id for r in rs.rules_for("transaction", "card_bind")] == [
        "any_txn",
        "bind_freeze",
        "bind_fresh",
        "shadow_bind",
    ]
    assert [r.rule_id for r in rs.rules_for("transaction", "repayment")] == ["any_txn"]
    assert [r.rule_id for r in rs.rules_for("transaction")] == ["any_txn"]
    assert [r.rule_id for r in rs.rules_for("device")] == ["device_only"]
    assert rs.rules_for("label") == ()
    assert rs.evaluate("transaction", {"kind": "repayment"}, FRESH_DEVICE).evaluated == 1
    assert rs.evaluate("device", {"kind": "login"}, {}).rule_ids == ["device_only"]
    assert rs.evaluate("label", {}, {}).evaluated == 0


def test_events_without_a_string_kind_use_the_generic_rules() -> None:
    """An application (no kind) or a malformed kind meets only unguarded rules."""
    rs = rules_for_evaluation()
    assert rs.evaluate("transaction", {"amount": 1.0}, FRESH_DEVICE).rule_ids == ["any_txn"]
    assert rs.evaluate("transaction", {"kind": ["x"]}, FRESH_DEVICE).rule_ids == ["any_txn"]


def test_a_failing_rule_is_reported_and_the_others_still_run() -> None:
    """An exception in one rule becomes an entry in errors; the event is still decided."""
    rs = rules_for_evaluation()
    result = rs.evaluate("transaction", {"kind": "withdrawal", "amount": 5}, FRESH_DEVICE)
    assert result.errors == (RuleFailure("divides", "division by zero at column 53"),)
    [(rule_id, message)] = result.errors
    assert rule_id == "divides" and message.startswith("division by zero")
    assert result.rule_ids == ["any_txn"]
    assert [h.rule.rule_id for h in result.shadow_hits] == ["shadow_bind"]


def test_the_shell_can_revert_a_failing_version() -> None:
    """evaluate -> errors -> revert(rule_id, version): the prior version takes over."""
    rs = RuleSet.from_dicts([rule("x", when="features.zero == 0")], KNOWN)
    rs, _ = rs.apply(rule("x", version=2, when="1 / features.zero > 0"))
    [(rule_id, _)] = rs.evaluate("transaction", CARD_BIND, FRESH_DEVICE).errors
    failed = rs.get(rule_id)
    assert failed is not None and failed.version == 2
    rs = rs.revert(rule_id, failed.version)
    assert rs.evaluate("transaction", CARD_BIND, FRESH_DEVICE).rule_ids == ["x"]


def test_non_boolean_result_at_run_time_is_an_error() -> None:
    """A condition of unknown type that yields a number is an error, not a hit."""
    rs = RuleSet.from_dicts([rule("n", when="event.note")], KNOWN)
    result = rs.evaluate("transaction", {"amount": 1.0, "note": 1.0}, {})
    assert result.errors == (RuleFailure("n", "condition gave float, expected bool"),)
    assert result.hits == ()


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("event.amount > 'abc'", "cannot compare num > string"),
        ("event.amount", "this one gives a number"),
        ("event.kind + 1 > 2", "no operator '+' for string and int"),
        ("event.term_days % 7.0 == 0.0", "no operator '%' for int and double"),
    ],
)
def test_a_condition_on_contract_fields_of_types_that_never_fit_is_refused(
    when: str, message: str
) -> None:
    """The contract says what type each event field has: a condition that compares or
    adds values that never go together is refused when it is loaded (``rules check``,
    the rules topic), not reverted at the first event it meets."""
    applies_to = ["application"] if "term_days" in when else ["transaction"]
    with pytest.raises(RuleError, match=re.escape(message)):
        load_rule(rule(when=when, applies_to=applies_to), KNOWN)


@pytest.mark.parametrize(
    ("when", "amount", "hit"),
    [
        ("event.amount % 1000 == 0", 5000, True),  # a round amount, as a whole number
        ("event.amount % 1000 == 0", 5500, False),
        ("event.amount * 1.5 > 6000", 5000, True),
        ("event.amount == 5000", 5000.0, True),
        ("-event.amount < 0 && abs(event.amount) > 1", 5000, True),
    ],
)
def test_a_contract_number_takes_what_ints_and_doubles_take(
    when: str, amount: float, hit: bool
) -> None:
    """A JSON number is an int or a double as the event has it: a condition taking
    either (``%`` on a whole amount, arithmetic with doubles) loads and runs as before."""
    rs = RuleSet.from_dicts([rule("n", when=when)], KNOWN)
    result = rs.evaluate("transaction", {"amount": amount}, {})
    assert result.errors == () and bool(result.hits) is hit


def test_a_rule_file_with_yaml_aliases_is_refused(tmp_path: Path) -> None:
    """Aliases repeat what an anchor marked: nine lines of them stand for a billion
    values (and gigabytes once the rule is written as JSON), so a rule file may not
    hold any; the error names the place."""
    lines = ["- rule_id: bomb", "  version: 1", "  applies_to: [device]", "  when: 'true'"]
    lines += ["  enabled: true", "  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RuleError, match=r"bomb.yaml: invalid YAML: aliases \(\*name\) are not"):
        load_rules_dir(tmp_path)


def test_a_version_written_as_a_float_is_refused() -> None:
    """``version: 2.0`` passes JSON Schema's ``integer`` but would not compare as the
    version 2 already on the rules topic: it is refused, so no rule slips past the
    publish check and is then ignored by the workers as stale."""
    with pytest.raises(RuleError, match=r"version: 2.0 is not an integer \(write 2\)"):
        load_rule(rule(version=2.0), KNOWN)
    rs = RuleSet.from_dicts([rule(version=1)], KNOWN)
    with pytest.raises(RuleError, match="not an integer"):
        rs.apply(rule(version=2.0))
    assert rs.apply(rule(version=2))[1].kind == "updated"


def test_rules_are_checked_against_the_contract_they_are_given(tmp_path: Path) -> None:
    """A deployment's own contract (``contract_dir``) types the conditions and checks the
    rule schema, for the rules loaded at start and for each one the topic brings later;
    the contract shipped with the package is only the default."""
    own = tmp_path / "contract"
    shutil.copytree(DEFAULT_CONTRACT_DIR, own)
    schema_file = own / "transaction.schema.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    schema["properties"]["kind"] = {"type": "integer"}  # this deployment codes kinds
    schema_file.write_text(json.dumps(schema), encoding="utf-8")
    contract = Contract.load(own)
    coded = rule(when="event.kind >= 3")
    with pytest.raises(RuleError, match="cannot compare string >= int"):
        load_rule(coded, KNOWN)  # the default contract: kind is a string
    assert load_rule(coded, KNOWN, contract=contract).rule_id == "r1"
    rs = RuleSet.from_dicts([], KNOWN, contract=contract)
    rs, change = rs.apply(coded)
    assert change.kind == "added"
    assert rs.evaluate("transaction", {"kind": 3}, {}).hits
    with pytest.raises(RuleError, match="cannot compare int > string"):
        rs.apply(rule("r2", when="event.kind > 'card_bind'"))


def test_the_core_checks_its_rules_against_the_settings_contract(tmp_path: Path) -> None:
    """``Core.create`` loads the rule files against ``settings.contract_dir``: a rule that
    only that contract's field types allow loads, and later rules are checked the same."""
    own = tmp_path / "contract"
    shutil.copytree(DEFAULT_CONTRACT_DIR, own)
    schema_file = own / "transaction.schema.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    schema["properties"]["kind"] = {"type": "integer"}
    schema_file.write_text(json.dumps(schema), encoding="utf-8")
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "coded.yaml").write_text(
        "- rule_id: coded\n  version: 1\n  applies_to: [transaction]\n"
        "  when: event.kind >= 3\n  enabled: true\n",
        encoding="utf-8",
    )
    settings = Settings(contract_dir=str(own))
    core = Core.create(settings, rules_dir=rules_dir, deterministic=True)
    assert core.rules.get("coded") is not None
    with pytest.raises(RuleError, match="cannot compare int > string"):
        core.apply_rule(rule("r2", when="event.kind > 'card_bind'"))
    with pytest.raises(RuleError, match="cannot compare string >= int"):
        Core.create(Settings(), rules_dir=rules_dir, deterministic=True)


@pytest.mark.parametrize(
    "when",
    [
        "event.amount % 100 == 0",
        "event.amount % 1000 == 600",
        "event.amount / 1000 > 2.5",
        "event.amount / 1000 == 2.6",
        "event.amount / 3 > 866",
        "1000 / event.amount < 0.4",
        "event.amount % 0 == 0",  # a remainder by zero is no number: never equal
        "event.amount % 1000 % 7 == 5",  # such a result is a contract number again
        "event.amount / 100 % 2 == 0",
    ],
)
def test_how_a_producer_writes_a_contract_number_never_changes_a_rule(when: str) -> None:
    """``2600`` and ``2600.0`` are the same amount: a rule's quotient or remainder of a
    contract number is a double's either way, so an event cannot slip past a rule, or
    make it fail (and be reverted for everyone), by writing its amount as the other."""
    rs = RuleSet.from_dicts([rule("n", when=when)], KNOWN)
    as_int = rs.evaluate("transaction", {"amount": 2600}, {})
    as_double = rs.evaluate("transaction", {"amount": 2600.0}, {})
    assert as_int.errors == () and as_double.errors == ()
    assert bool(as_int.hits) is bool(as_double.hits)


def test_a_field_the_types_hold_differently_is_checked_only_when_run() -> None:
    """Over several event types a field is typed only when all of them have it alike:
    ``amount`` is missing from device events, so a condition on it is left to run."""
    rs = RuleSet.from_dicts(
        [rule("both", applies_to=["transaction", "device"], when="event.amount > 'abc'")], KNOWN
    )
    assert rs.evaluate("transaction", {"amount": 1.0}, {}).errors


def test_missing_optional_field_does_not_fire_or_fail() -> None:
    """null < x is false: rules on optional event fields stay silent when absent."""
    rs = RuleSet.from_dicts([rule("age", applies_to=["application"], when="event.age < 18")], KNOWN)
    result = rs.evaluate("application", {"amount": 1.0}, {})
    assert (result.hits, result.errors) == ((), ())


def test_ruleset_reading_helpers() -> None:
    """rules (enabled, by id), iteration, membership, repr."""
    rs, _ = rules_for_evaluation().apply(rule("any_txn", version=2, enabled=False))
    ids = [r.rule_id for r in rs.rules]
    assert ids == sorted(ids) and "any_txn" not in ids
    assert [r.rule_id for r in rs] == ids
    assert "bind_fresh" in rs and "any_txn" not in rs and 3 not in rs
    assert repr(rs) == f"RuleSet({len(ids)} rules)"
    assert rs.known_features == KNOWN


# --------------------------------------------------------------------------- counters


def test_rule_stats_count_hits_by_version_and_mode_and_errors() -> None:
    """Hits keyed by (rule_id, version, mode), errors by rule_id, outcomes by label."""
    rs = rules_for_evaluation()
    stats = RuleStats()
    stats.record(rs.evaluate("transaction", CARD_BIND, FRESH_DEVICE))
    stats.record(rs.evaluate("transaction", {"kind": "withdrawal", "amount": 5}, FRESH_DEVICE))
    stats.record(rs.evaluate("device", {"kind": "login"}, {}))
    assert stats.events == 3
    assert stats.hits == {
        ("any_txn", 1, "active"): 2,
        ("bind_fresh", 1, "active"): 1,
        ("shadow_bind", 1, "shadow"): 2,
        ("device_only", 1, "active"): 1,
    }
    assert stats.errors == {"divides": 1}
    assert stats.outcomes == {"review": 2, "pass": 1}
    snapshot = stats.snapshot()
    assert snapshot["events"] == 3 and snapshot["evaluated"] == 4 + 3 + 1
    json.dumps({k: str(v) for k, v in snapshot.items()})


def test_a_rule_failing_on_an_event_never_quotes_the_events_values() -> None:
    """A condition that fails on an unhashed phone number in ``phone_hash`` reports the
    kind of failure and where, not the number: the message goes to logs, risk.ops and
    the dead-letter topic."""
    rs = RuleSet.from_dicts(
        [
            rule("to_int", applies_to=["application"], when="int(event.phone_hash) > 5"),
            rule("to_double", applies_to=["application"], when="double(event.id_hash) > 5.0"),
        ],
        KNOWN,
    )
    event = {"phone_hash": "13812345678x", "id_hash": "110101199003071234y"}
    errors = rs.evaluate("application", event, {}).errors
    assert {e.rule_id for e in errors} == {"to_int", "to_double"}
    for failure in errors:
        assert "13812345678" not in failure.message and "1101011990" not in failure.message
        assert "cannot convert a string of" in failure.message


def test_a_rule_file_is_read_as_json_as_the_rules_topic_carries_it(tmp_path: Path) -> None:
    """An unquoted date in a rule file (``reason: 2024-05-01``) is its text, as when the
    rule is published (JSON): ``rules check`` and a worker's rule files take it as the
    rules topic would, where it used to stop them with a bare ValueError; a value JSON
    cannot hold (a YAML set) is a RuleError naming the file."""
    dated = tmp_path / "dated.yaml"
    dated.write_text(
        "- rule_id: dated\n  version: 1\n  applies_to: [device]\n"
        "  when: \"event.kind == 'login'\"\n  enabled: true\n  reason: 2024-05-01\n"
    )
    [data] = read_rules_file(dated)
    assert data["reason"] == "2024-05-01"
    [(_, loaded)] = load_rule_files([dated], KNOWN_FEATURES)
    assert loaded["reason"] == "2024-05-01"
    odd = tmp_path / "odd.yaml"
    odd.write_text(
        "- rule_id: odd\n  version: 1\n  applies_to: [device]\n"
        "  when: \"event.kind == 'login'\"\n  enabled: true\n  tags: !!set {a: null}\n"
    )
    with pytest.raises(RuleError, match=r"odd\.yaml: a value JSON cannot hold"):
        read_rules_file(odd)


def test_a_comment_that_hides_a_condition_is_refused(tmp_path: Path) -> None:
    """YAML's folded style (``>-``) joins a condition's lines into one, and a ``//``
    comment runs to the end of that line: ``event.kind == 'login' // logins only`` then
    ``&& features.failed_logins_24h >= 3`` would compile to the login test alone, a
    decline rule firing on every login. A comment holding what looks like more of the
    condition is refused; a plain note stays allowed."""
    folded = tmp_path / "folded.yaml"
    folded.write_text(
        "rules:\n  - rule_id: ato_login\n    version: 1\n    applies_to: [device]\n"
        "    when: >-\n      event.kind == 'login'   // logins only\n"
        "      && features.failed_logins_24h >= 3\n    action: decline\n    enabled: true\n"
    )
    with pytest.raises(RuleError, match="this comment hides what looks like more"):
        load_rule_files([folded], KNOWN_FEATURES)
    noted = load_rule(rule(when="event.kind == 'login' // logins only"), KNOWN)
    assert noted.predicate is not None


def test_a_condition_on_an_identifier_its_events_never_carry_is_noted_not_refused() -> None:
    """Applications carry no Wi-Fi network or SIM: a rule on applications that reads
    ``features.wifi_users_24h`` gets a note saying so (it is always 0 there), and still
    loads, as its other branches may carry it (a rule in force keeps working); the same
    feature on device events, which carry it, gets no note."""
    from rules.engine import rule_notes

    bad = rule(
        applies_to=["application"],
        when="features.wifi_users_24h >= 4 || features.ip_users_1h >= 4",
    )
    assert rule_notes(bad) == [
        "features.wifi_users_24h is 0 on every application event (they carry no Wi-Fi network)"
    ]
    assert load_rule(bad, KNOWN_FEATURES).rule_id == "r1"
    assert rule_notes(rule(applies_to=["application", "device"], when=bad["when"])) == []


def test_the_identifiers_of_each_event_type_are_those_the_features_count() -> None:
    """The rule engine's list of the identifiers each event type carries is the feature
    engine's."""
    from riskmon.features import IDENT_FIELDS
    from rules.features import IDENTIFIERS_BY_TYPE

    assert {t: frozenset(k for _, k in f) for t, f in IDENT_FIELDS.items()} == IDENTIFIERS_BY_TYPE


def test_a_rule_file_nested_too_deep_is_refused(tmp_path: Path) -> None:
    """A value nested a few hundred levels deep (800 bytes of brackets) exhausted
    Python's stack in the YAML reader: `riskmon rules check` and a starting worker
    crashed with a RecursionError. It is an error naming the file and the place; the
    limit, MAX_RULES_FILE_DEPTH, leaves room for any rule."""
    rule = RULE_YAML.format(rid="deep", version=1, when="true")
    write(tmp_path, "deep.yaml", rule + "    note: " + "[" * 400 + "]" * 400 + "\n")
    with pytest.raises(RuleError, match=r"deep.yaml: invalid YAML: .*nested deeper than \d+"):
        load_rules_dir(tmp_path)
    write(tmp_path, "deep.yaml", rule + "    note: " + "[" * 8 + "]" * 8 + "\n")
    assert load_rules_dir(tmp_path)[0]["note"] == [[[[[[[[]]]]]]]]


def test_a_rule_file_with_a_key_twice_in_one_rule_is_refused(tmp_path: Path) -> None:
    """YAML lets a later key replace an earlier one silently: a reviewer reading the
    first ``when`` and ``action`` of a rule saw a narrow review, and the worker ran the
    second pair, freezing every account it saw. A key given twice in one mapping is an
    error naming the file, the key and the line."""
    text = (
        RULE_YAML.format(rid="twice", version=1, when="features.is_rooted == 1")
        + "    action: review\n"
        + '    when: "true"\n'
        + "    action: freeze\n"
    )
    write(tmp_path, "twice.yaml", text)
    with pytest.raises(RuleError, match=r"twice.yaml: invalid YAML: .*'when' is given twice"):
        load_rules_dir(tmp_path)
    write(tmp_path, "twice.yaml", RULE_YAML.format(rid="once", version=1, when="true"))
    assert load_rules_dir(tmp_path)[0]["when"] == "true"
