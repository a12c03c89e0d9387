"""Differential test: our compiler agrees with the reference ``cel`` library.

Every expression is evaluated against every activation by both. Results must be equal
in value and type (an int is not a double, a bool is not an int), and when one side
fails the other must fail too. The expressions stay inside the common ground: no
missing fields, no ``null`` in ordering comparisons, no int/double arithmetic mix
(the documented differences), and no NaN in ordering comparisons (the reference
raises there, the CEL specification says false, as we do).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from rules.expr import RuleEvalError, compile_expr

cel = pytest.importorskip("cel")
stdlib = pytest.importorskip("cel.stdlib")

ACTIVATIONS: list[dict[str, Any]] = [
    {
        "event": {
            "kind": "login",
            "amount": 8000.0,
            "term_days": 90,
            "product": "cash_loan",
            "declared_monthly_income": 9500.0,
            "age": 31,
            "channel": "organic",
            "ip": "36.112.4.9",
            "bureau_score": None,
            "tags": ["a", "b"],
            "kyc": {"face_match_score": 0.962, "liveness_pass": True, "ocr_ok": True},
        },
        "features": {
            "failed_logins_24h": 5,
            "minutes_since_new_device": 12.5,
            "device_users_24h": 3,
            "is_emulator": 0,
            "amount_to_max_ratio": 2.5,
            "zero": 0,
            "fzero": 0.0,
        },
    },
    {
        "event": {
            "kind": "card_bind",
            "amount": 500.0,
            "term_days": 7,
            "product": "mortgage",
            "declared_monthly_income": 0.0,
            "age": 17,
            "channel": "ad_wechat",
            "ip": "10.0.0.1",
            "bureau_score": 600.5,
            "tags": [],
            "kyc": {"face_match_score": 0.31, "liveness_pass": False, "ocr_ok": True},
        },
        "features": {
            "failed_logins_24h": 0,
            "minutes_since_new_device": 1000000.0,
            "device_users_24h": 9,
            "is_emulator": 1,
            "amount_to_max_ratio": 1.0,
            "zero": 0,
            "fzero": 0.0,
        },
    },
    {
        "event": {
            "kind": "withdrawal",
            "amount": 125000.75,
            "term_days": 365,
            "product": "micro_business",
            "declared_monthly_income": 20000.0,
            "age": 65,
            "channel": "",
            "ip": "192.168.1.20",
            "bureau_score": 720.0,
            "tags": ["vip", "a", "b", "c"],
            "kyc": {"face_match_score": 1.0, "liveness_pass": True, "ocr_ok": False},
        },
        "features": {
            "failed_logins_24h": 12,
            "minutes_since_new_device": 59.99,
            "device_users_24h": 1,
            "is_emulator": 0,
            "amount_to_max_ratio": 15.625,
            "zero": 0,
            "fzero": 0.0,
        },
    },
]

EXPRESSIONS = [
    # literals and arithmetic
    "1 + 2 * 3",
    "(1 + 2) * 3",
    "7 / 2",
    "-7 / 2",
    "-7 % 3",
    "7 % -3",
    "10 / 3 * 3",
    "1 - 2 - 3",
    "7.0 / 2.0",
    "0.1 + 0.2",
    "1.5e3 == 1500",
    "0x1F + 1",
    "--5",
    "-(2 * -3)",
    "'ab' + \"cd\"",
    "'a\\'b' + \"\\x41\\u00e9\\n\"",
    "r'a\\d' + 'x'",
    "[1, 2] + [3]",
    # comparisons
    "1 < 2.0",
    "1 == 1.0",
    "1 != 1.0",
    "true == 1",
    "0 == false",
    "null == null",
    "null == 0",
    "'B' < 'a'",
    "'ab' < 'abc'",
    "false < true",
    "1 < 2 == true",
    "!true == false",
    "[1, 2] == [1.0, 2.0]",
    "[[1]] == [[1]]",
    # logic and ternary
    "true || false && false",
    "true ? 1 : false ? 2 : 3",
    "event.age >= 18 ? 'adult' : 'minor'",
    # event and features
    "event.kind == 'login' && features.failed_logins_24h >= 3",
    "event.kind in ['withdrawal', 'transfer_out'] || features.device_users_24h > 4",
    "features.minutes_since_new_device < 60.0 && features.is_emulator == 0",
    "features.amount_to_max_ratio * 2.0 > 10.0",
    "event.amount / event.declared_monthly_income > 0.5",
    "event.term_days * 2 - event.age",
    "event.kyc.liveness_pass == false || event.kyc.face_match_score < 0.5",
    "event['kyc']['ocr_ok'] && event.kyc['liveness_pass']",
    "event.bureau_score == null",
    "event.bureau_score != null && event.bureau_score > 650.0",
    "event.tags == ['a', 'b']",
    "'a' in event.tags",
    "'kind' in event",
    "'nope' in event.kyc",
    "size(event.tags) >= 2",
    "size(event.channel) == 0",
    "event.kind.size() > 5",
    "has(event.kyc.ocr_ok)",
    "has(event.kyc.selfie)",
    "has(event.channel) && event.channel.startsWith('ad_')",
    "event.ip.startsWith('192.168.') || event.ip.endsWith('.1')",
    "event.product.contains('loan')",
    "event.ip.matches('^10\\\\.') || event.channel.matches('wechat$')",
    "event.kind.matches('^(login|card_bind)$')",
    # conversions
    "int(event.amount) > 5000",
    "int(-3.9) == -3",
    "int('42') + event.age",
    "double(event.term_days) / 7.0",
    "string(event.age) + '/' + event.kind",
    "string(event.amount)",
    "min(event.age, 30)",
    "max(features.failed_logins_24h, event.age, 20)",
    # runtime errors, and errors absorbed by && / ||
    "1 / features.zero > 0",
    "features.zero % features.zero",
    "event.kind < features.zero",
    "features.zero == 0 || event.kind > 1",
    "event.kind > 1 || features.zero == 0",
    "event.kind > 1 && features.zero == 1",
    "event.kind > 1 && features.zero == 0",
    "event.tags[3] == 'c'",
    "event.amount + double(features.failed_logins_24h) > 0.0",
]


def _reference(expr: str, activation: dict[str, Any]) -> tuple[str, Any]:
    context = cel.Context(variables=activation)
    stdlib.add_stdlib_to_context(context, ["core"])
    try:
        return "ok", cel.evaluate(expr, context)
    except Exception:
        return "error", None


def _ours(expr: str, activation: dict[str, Any]) -> tuple[str, Any]:
    compiled = compile_expr(expr)
    try:
        return "ok", compiled.evaluate(activation)
    except RuleEvalError:
        return "error", None


def _typed(value: Any) -> Any:
    """A form in which 1, 1.0 and True differ and NaN equals NaN."""
    if isinstance(value, float) and math.isnan(value):
        return ("double", "nan")
    if isinstance(value, list | tuple):
        return ("list", tuple(_typed(v) for v in value))
    if isinstance(value, dict):
        return ("map", tuple(sorted((k, _typed(v)) for k, v in value.items())))
    return (type(value).__name__, value)


def test_expressions_cover_enough_ground() -> None:
    """The differential suite is broad: about sixty expressions, several activations."""
    assert len(EXPRESSIONS) >= 60
    assert len(set(EXPRESSIONS)) == len(EXPRESSIONS)
    assert len(ACTIVATIONS) >= 3


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_same_result_as_cel(expr: str) -> None:
    """Our value (with its type) or our failure matches cel's for every activation."""
    for i, activation in enumerate(ACTIVATIONS):
        ours = _ours(expr, activation)
        ref = _reference(expr, activation)
        assert ours[0] == ref[0], f"activation {i}: ours={ours} cel={ref}"
        assert _typed(ours[1]) == _typed(ref[1]), f"activation {i}: ours={ours} cel={ref}"


def test_some_expressions_fail_and_some_absorb_errors() -> None:
    """The suite exercises both outcomes: runtime failures and absorbed failures."""
    outcomes = {
        expr: _ours(expr, ACTIVATIONS[0])[0]
        for expr in ("1 / features.zero > 0", "features.zero == 0 || event.kind > 1")
    }
    assert outcomes == {
        "1 / features.zero > 0": "error",
        "features.zero == 0 || event.kind > 1": "ok",
    }
