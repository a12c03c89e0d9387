"""The CEL-subset compiler: syntax, semantics, compile-time checks, error messages."""

from __future__ import annotations

import math
from typing import Any

import pytest

from rules.expr import (
    MAX_DEPTH,
    MAX_LENGTH,
    CompileError,
    RuleEvalError,
    compile_expr,
    evaluate,
)

EVENT = {
    "kind": "login",
    "amount": 8000.0,
    "term_days": 90,
    "nothing": None,
    "tags": ["a", "b"],
    "kyc": {"liveness_pass": True, "face_match_score": 0.91},
}
FEATURES = {"failed_logins_24h": 5, "ratio": 2.5, "zero": 0, "count": 3}
ACT = {"event": EVENT, "features": FEATURES}
KNOWN = frozenset(FEATURES)


def run(expr: str, act: dict[str, Any] = ACT) -> Any:
    return evaluate(expr, act)


def compile_error(expr: str, **kwargs: Any) -> str:
    with pytest.raises(CompileError) as info:
        compile_expr(expr, **kwargs)
    return str(info.value)


def eval_error(expr: str, act: dict[str, Any] = ACT) -> str:
    with pytest.raises(RuleEvalError) as info:
        run(expr, act)
    return str(info.value)


# --------------------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("42", 42),
        ("0x1f", 31),
        ("007", 7),
        ("1.5", 1.5),
        ("2e3", 2000.0),
        ("1.5E-1", 0.15),
        ("-9223372036854775808", -(2**63)),
        ("'single'", "single"),
        ('"double"', "double"),
        ("'''tri'ple'''", "tri'ple"),
        ("'a\\tb\\n'", "a\tb\n"),
        ("'\\x41\\u00e9\\U0001F600\\101'", "Aé\U0001f600A"),
        ("r'\\d+'", "\\d+"),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[1, 'a', [true]]", [1, "a", [True]]),
        ("[1, 2,]", [1, 2]),
        ("[]", []),
        ("1 // a comment\n + 1", 2),
    ],
)
def test_literals_evaluate_to_python_values(expr: str, expected: Any) -> None:
    """Ints, doubles, strings with quotes and escapes, booleans, null and lists parse."""
    result = run(expr)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("1u", "unsigned integers are not supported"),
        ("b'x'", "bytes literals are not supported"),
        ("{'a': 1}", "map literals are not supported"),
        ("'open", "unterminated string"),
        ("'bad \\q'", "invalid escape '\\q'"),
        ("9223372036854775808", "integer literal out of range"),
    ],
)
def test_unsupported_or_malformed_literals_are_compile_errors(expr: str, message: str) -> None:
    """Literals outside the subset are rejected with a reason."""
    assert message in compile_error(expr)


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("-2 * 3", -6),
        ("--2", 2),
        ("!true || true", True),
        ("true || false && false", True),
        ("(true || false) && false", False),
        ("1 < 2 == true", True),
        ("'a' in ['a'] == true", True),
        ("true ? 1 : false ? 2 : 3", 1),
        ("false ? 1 : false ? 2 : 3", 3),
        ("1 + 1 == 2 ? 'yes' : 'no'", "yes"),
        ("-event.amount", -8000.0),
        ("!event.kyc.liveness_pass", False),
    ],
)
def test_precedence_and_associativity_follow_cel(expr: str, expected: Any) -> None:
    """Unary > multiplicative > additive > relations > && > || > ?:, left to right."""
    assert run(expr) == expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("7 / 2", 3),
        ("-7 / 2", -3),
        ("-7 % 3", -1),
        ("7 % -3", 1),
        ("7.0 / 2.0", 3.5),
        ("1.0 / 0.0", math.inf),
        ("-1.0 / 0.0", -math.inf),
        ("features.ratio * 2", 5.0),
        ("features.count / 2.0", 1.5),
        ("'ab' + 'cd'", "abcd"),
        ("[1] + [2]", [1, 2]),
    ],
)
def test_arithmetic_truncates_ints_and_promotes_mixed_numbers(expr: str, expected: Any) -> None:
    """int / int truncates toward zero; % takes the dividend's sign; int with double is double."""
    result = run(expr)
    assert result == expected
    assert type(result) is type(expected)


def test_double_zero_by_zero_is_nan() -> None:
    """IEEE rules for doubles: 0.0 / 0.0 is NaN, not an error."""
    assert math.isnan(run("features.zero / 0.0"))


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("features.count / features.zero", "division by zero"),
        ("features.count % features.zero", "modulo by zero"),
        ("features.ratio % 2", "no operator '%' for double and int"),
        ("event.kind - 1", "no operator '-' for string and int"),
        ("event.kind < features.count", "cannot compare string < int"),
        ("event.nothing + 1", "no operator '+' for null and int"),
        ("9223372036854775807 + features.count", "integer overflow"),
        ("-(features.count - 9223372036854775807 - 4)", "integer overflow"),
        ("event.tags[5]", "index out of range for a list of 2"),
        ("event.tags[-1]", "index out of range for a list of 2"),
        ("event.tags['x']", "a list index must be an int"),
        ("event.kind[0]", "cannot index a string"),
        ("event.kind.missing", "no field 'missing' on a string"),
        ("!event.nothing", "'!' needs a bool, got null"),
        ("event.nothing ? 1 : 2", "'?:' needs a bool condition, got null"),
        ("size(event.amount)", "size() needs a string, list or map, got double"),
        ("int(event.kind)", "int() cannot convert a string of 5 characters"),
        ("1 in event.kind", "'in' needs a list or a map, got string"),
    ],
)
def test_type_errors_raise_rule_eval_error(expr: str, message: str) -> None:
    """Operations on the wrong types fail at run time with a RuleEvalError."""
    assert message in eval_error(expr)


def test_runtime_errors_give_the_column() -> None:
    """The message points at the operator that failed."""
    assert eval_error("features.count > 1 && event.kind < 3") == (
        "cannot compare string < int at column 34"
    )


# --------------------------------------------------------------------------- null, missing fields


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("event.missing", None),
        ("event.missing.deeper.still", None),
        ("event['missing']", None),
        ("event.missing == null", True),
        ("event.missing != null", False),
        ("event.missing == 0", False),
        ("event.missing < 5", False),
        ("event.missing >= 5", False),
        ("5 > event.missing", False),
        ("event.nothing <= event.missing", False),
        ("'a' in event.missing", False),
        ("event.missing.startsWith('a')", False),
        ("event.missing.matches('a')", False),
        ("has(event.kyc)", True),
        ("has(event.nothing)", True),
        ("has(event.missing)", False),
        ("has(event.kyc.liveness_pass)", True),
        ("has(event.missing.deeper)", False),
        ("has(event.missing) && event.missing > 1", False),
    ],
)
def test_missing_fields_are_null_and_null_orderings_are_false(expr: str, expected: Any) -> None:
    """A missing field is null; orderings with null are false; == works; has() tests presence."""
    assert run(expr) is expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("1 == 1.0", True),
        ("true == 1", False),
        ("0 == false", False),
        ("null == false", False),
        ("'1' == 1", False),
        ("[1, 2] == [1.0, 2.0]", True),
        ("event.tags == ['a', 'b']", True),
        ("event.kyc == event.kyc", True),
        ("1 in [true]", False),
        ("true in [1]", False),
        ("1.0 in [1, 2]", True),
        ("'kind' in event", True),
        ("'x' in event", False),
        ("event.kind in ['login', 'logout']", True),
        ("features.count in [3, 4]", True),
    ],
)
def test_equality_is_cel_equality_not_python_equality(expr: str, expected: bool) -> None:
    """Different kinds of values are unequal (true != 1); int and double compare by value."""
    assert run(expr) is expected


# --------------------------------------------------------------------------- && and ||


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("false && features.count / features.zero > 1", False),
        ("features.count / features.zero > 1 && false", False),
        ("true || features.count / features.zero > 1", True),
        ("features.count / features.zero > 1 || true", True),
        ("event.nothing && false", False),
        ("event.amount || true", True),
        ("features.count > 1 && event.kind == 'login' && features.ratio > 2.0", True),
    ],
)
def test_logic_absorbs_errors_when_the_other_side_decides(expr: str, expected: bool) -> None:
    """CEL's commutative && / ||: false && error is false, error || true is true."""
    assert run(expr) is expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("features.count / features.zero > 1 && true", "division by zero"),
        ("true && event.nothing", "'&&' needs bool operands, got null"),
        ("false || event.amount", "'||' needs bool operands, got double"),
    ],
)
def test_logic_raises_when_nothing_decides(expr: str, message: str) -> None:
    """When no operand decides, the first error (or non-bool operand) is raised."""
    assert message in eval_error(expr)


def test_ternary_evaluates_only_the_chosen_branch() -> None:
    """The branch not taken is never evaluated, so its errors do not matter."""
    assert run("event.kind == 'login' ? 1 : features.count / features.zero") == 1


# --------------------------------------------------------------------------- functions


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("size('héllo')", 5),
        ("size(event.tags)", 2),
        ("size(event.kyc)", 2),
        ("event.kind.size()", 5),
        ("int(3.9)", 3),
        ("int(-3.9)", -3),
        ("int('-12')", -12),
        ("int(7)", 7),
        ("double(3)", 3.0),
        ("double('2.5e1')", 25.0),
        ("string(3)", "3"),
        ("string(3.0)", "3"),
        ("string(2.5)", "2.5"),
        ("string(true)", "true"),
        ("min(3, 1.5)", 1.5),
        ("max(3, 1.5, 2)", 3),
        ("abs(-4)", 4),
        ("abs(-2.5)", 2.5),
        ("event.kind.startsWith('log')", True),
        ("event.kind.endsWith('in')", True),
        ("event.kind.contains('gi')", True),
        ("event.kind.matches('og')", True),
        ("event.kind.matches('^og')", False),
        ("event.kind.matches('^(login|logout)$')", True),
        ("'٣'.matches('\\\\d')", False),
    ],
)
def test_whitelisted_functions(expr: str, expected: Any) -> None:
    """size, int, double, string, min, max, abs and the string methods behave as CEL's."""
    result = run(expr)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("event.kind.matches('[')", "bad regular expression"),
        ("event.kind.matches('(?=a)')", "lookaround and backreferences are not supported"),
        ("event.kind.matches('(a)\\\\1')", "lookaround and backreferences are not supported"),
        ("size(1, 2)", "size() takes one argument"),
        ("min(1)", "min() takes two or more arguments"),
        ("event.kind.startsWith()", "startsWith() takes one argument"),
        ("has(event)", "has() takes one field selection like a.b"),
        ("has(event['kind'])", "has() takes one field selection like a.b"),
        ("sizee(event.tags)", "unknown function 'sizee' at column 1 (did you mean 'size'?)"),
        ("event.kind.startswith('a')", "unknown method 'startswith' at column 12 (did you mean"),
        ("event.tags.exists(t, t == 'a')", "macro 'exists' is not supported"),
    ],
)
def test_bad_calls_are_compile_errors(expr: str, message: str) -> None:
    """Regexes compile at compile time; arity and names are checked."""
    assert message in compile_error(expr)


@pytest.mark.parametrize("pattern", ["event.p", "event.kind + 'x'", "string(features.count)"])
def test_a_pattern_must_be_a_literal(pattern: str) -> None:
    """A pattern is part of the rule: one built from the event would let its producer
    choose what the worker compiles and runs, so it is refused when the rule loads."""
    assert "must be a string literal" in compile_error(f"event.kind.matches({pattern})")


@pytest.mark.parametrize("repeat", [50, 100])
def test_a_pattern_too_large_to_match_quickly_is_refused(repeat: int) -> None:
    """Matching time grows with the compiled pattern as well as the text: a pattern of
    many long bounded repetitions (thousands of RE2 instructions) is refused at compile
    time, while one of a few hundred loads."""
    big = "(?:" + "|".join(f".{{{repeat - i}}}" for i in range(20)) + ")z"
    assert "pattern too large to match quickly" in compile_error(f"event.kind.matches('{big}')")
    small = "(?:" + "|".join(f".{{{10 - i}}}" for i in range(5)) + ")z"
    assert run(f"event.kind.matches('{small}')") is False
    assert run("event.kind.matches('^[0-9a-f]{64}$|^log')") is True


# --------------------------------------------------------------------------- compile-time checks


def test_compile_error_names_rule_and_column() -> None:
    """The message has the rule name, the token and its 1-based column."""
    message = compile_error("event.kind == 'a' && && 1", name="x")
    assert message == "rule 'x': unexpected token '&&' at column 22"


def test_compile_error_exposes_rule_and_column_attributes() -> None:
    """Callers can read the position without parsing the message."""
    with pytest.raises(CompileError) as info:
        compile_expr("features.count >", name="r")
    assert (info.value.rule, info.value.column) == ("r", 17)
    assert str(info.value) == "rule 'r': unexpected token end of expression at column 17"


def test_multiline_expressions_report_line_and_column() -> None:
    """YAML block scalars keep newlines; the position then has a line too."""
    assert "at line 2, column 4" in compile_error("event.kind == 'a'\n&& == 2")


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("evnt.kind == 'a'", "unknown identifier 'evnt' (only 'event' and 'features' exist)"),
        ("evnt.kind == 'a'", "(did you mean 'event'?)"),
        ("user.id == 'a'", "unknown identifier 'user'"),
        ("event.kind = 'a'", "unexpected character '=' at column 12 (use '==')"),
        ("event.kind == 'a' and true", "unexpected token 'and' at column 19 (use '&&')"),
        ("not event.kyc.liveness_pass", "(use '!')"),
        ("event.kind == 'a' & true", "(use '&&' or '||')"),
        ("event.kind ==", "unexpected token end of expression"),
        ("(event.kind == 'a'", "expected ')' but found end of expression"),
        ("[1, 2", "expected ']' but found end of expression"),
        ("event.kind ? 1 ? 2 : 3 : 4", "expected ':' but found '?'"),
        ("event.in", "expected a field name but found 'in'"),
        ("while", "'while' is a reserved word"),
        ("event.kind == 'a' event", "unexpected token 'event'"),
        ("", "empty expression"),
        ("   ", "empty expression"),
    ],
)
def test_syntax_errors_are_clear(expr: str, message: str) -> None:
    """Typos and Python-isms produce a message pointing at the problem, with a hint."""
    assert message in compile_error(expr)


def test_unknown_feature_suggests_the_nearest_name() -> None:
    """With a catalogue, features.<name> must be in it; difflib offers a correction."""
    assert compile_error("features.failed_login_24h > 3", known_features=KNOWN, name="r") == (
        "rule 'r': unknown feature 'failed_login_24h' at column 10 "
        "(did you mean 'failed_logins_24h'?)"
    )


def test_unknown_feature_is_checked_in_every_form() -> None:
    """Index with a literal name and has() are checked as well."""
    assert "unknown feature 'nope'" in compile_error("features['nope'] > 1", known_features=KNOWN)
    assert "unknown feature 'nope'" in compile_error("has(features.nope)", known_features=KNOWN)


def test_without_a_catalogue_any_feature_name_compiles() -> None:
    """known_features=None means no check; a missing feature then reads as null."""
    assert compile_expr("features.anything > 1").evaluate(ACT) is False


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("'a' - 1", "no operator '-' for string and int"),
        ("features.count && true", None),
        ("1 && true", "operand of '&&' is a int, expected bool"),
        ("!1", "operand of '!' is a int, expected bool"),
        ("'a' < 1", "cannot compare string < int"),
        ("1 < 2 < 3", "cannot compare bool < int"),
        ("1 ? 2 : 3", "condition of '?:' is a int, expected bool"),
        ("1 in 2", "'in' needs a list or a map on the right, got int"),
        ("size(1)", "argument of size() is a int"),
        ("1 / 0 > 2", "always fails: division by zero at column 3"),
        ("int('x') == 1", "always fails: int() cannot convert a string of 1 character"),
    ],
)
def test_static_type_errors_and_failing_constants_are_compile_errors(
    expr: str, message: str | None
) -> None:
    """Types known at compile time are checked; constant sub-expressions are folded."""
    if message is None:
        compile_expr(expr)
    else:
        assert message in compile_error(expr)


def test_constants_are_folded() -> None:
    """A constant expression compiles to its value; the closure ignores the activation."""
    compiled = compile_expr("[1, 2] + [3] == [1, 2, 3] && 'ab' + 'c' == 'abc'")
    assert compiled.fn({}) is True
    assert compiled.result_type == "bool"


def test_expression_length_is_limited() -> None:
    """Longer than MAX_LENGTH characters is rejected before parsing."""
    long = " || ".join(["features.count > 1"] * 300)
    assert len(long) > MAX_LENGTH
    assert f"longer than {MAX_LENGTH}" in compile_error(long)


@pytest.mark.parametrize(
    "expr",
    [
        "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
        "!" * (MAX_DEPTH + 5) + "true",
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        " + ".join(["1"] * (MAX_DEPTH + 5)),
    ],
)
def test_nesting_depth_is_limited(expr: str) -> None:
    """Deep nesting is a compile error, not a RecursionError."""
    assert f"nested deeper than {MAX_DEPTH}" in compile_error(expr)


def test_long_conjunctions_are_flat_not_deep() -> None:
    """A chain of && is one n-ary node, so rules with many conditions stay shallow."""
    expr = " && ".join(f"features.count > {i}" for i in range(-100, 2))
    assert compile_expr(expr).evaluate(ACT) is True


# --------------------------------------------------------------------------- metadata


def test_expression_reports_features_and_event_fields_read() -> None:
    """The compiled expression lists the features and top-level event fields it reads."""
    compiled = compile_expr(
        "event.kyc.liveness_pass == false && features.count > 1 && features['ratio'] > 1.0"
        " && has(event.amount)"
    )
    assert compiled.features == {"count", "ratio"}
    assert compiled.event_fields == {"kyc", "amount"}


@pytest.mark.parametrize(
    ("expr", "kinds"),
    [
        ("event.kind == 'login'", {"login"}),
        ("'login' == event.kind && features.count > 1", {"login"}),
        ("event['kind'] == 'login'", {"login"}),
        ("event.kind in ['withdrawal', 'transfer_out'] && true", {"withdrawal", "transfer_out"}),
        ("event.kind in ['a', 'b'] && event.kind == 'b'", {"b"}),
        ("event.kind == 'a' || features.count > 1", None),
        ("event.kind != 'a'", None),
        ("features.count > 1", None),
        ("event.kind in [event.other]", None),
    ],
)
def test_event_kind_guard_is_extracted(expr: str, kinds: set[str] | None) -> None:
    """A top-level conjunct fixing event.kind yields the kinds the rule can match."""
    expected = frozenset(kinds) if kinds is not None else None
    assert compile_expr(expr).event_kinds == expected


def test_evaluate_wraps_foreign_failures() -> None:
    """Whatever goes wrong inside, Expression.evaluate raises RuleEvalError."""
    with pytest.raises(RuleEvalError, match="KeyError"):
        compile_expr("features.count > 1").evaluate({"event": {}})


def test_non_string_source_is_a_compile_error() -> None:
    """A YAML mistake (a number as condition) is caught cleanly."""
    assert "expression must be a string" in compile_error(42)  # type: ignore[arg-type]


class _Counting(dict[str, Any]):
    """Features that count how often the condition reads them."""

    reads = 0

    def __getitem__(self, key: str) -> Any:
        type(self).reads += 1
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        type(self).reads += 1
        return super().get(key, default)


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("depth", [1, 10, 40])
def test_failing_operands_are_evaluated_once_however_deep_the_logic(n: int, depth: int) -> None:
    """An operand that fails is not evaluated again to apply CEL's error-absorbing rule:
    alternating ``||`` and ``&&`` nested ``depth`` deep over a failing operand read the
    features once per failing leaf, not twice per level (2^depth reads would hang a
    worker on a rule of a kilobyte)."""
    failing = "features.count / features.zero > 1"  # two reads, then division by zero
    others = ["event.kind == 'x'", "has(event.kind)"]  # false, true: neither decides
    expr = failing
    for level in range(depth):
        op = " || " if level % 2 == 0 else " && "
        side = others[level % 2]
        expr = "(" + op.join([expr] + [side] * (n - 1)) + ")"
    _Counting.reads = 0
    features = _Counting(FEATURES)
    with pytest.raises(RuleEvalError, match="division by zero"):
        compile_expr(expr, known_features=KNOWN).evaluate({"event": EVENT, "features": features})
    assert _Counting.reads == 2


def test_concatenation_is_bounded_so_one_rule_cannot_stall_the_worker() -> None:
    """Nesting is capped, but chained ``+`` of a long list from the event (inputs may
    carry extra fields, up to 64 KiB) built lists of millions of items, seconds per event
    for one rule: a ``+`` past MAX_CONCAT items or characters fails instead (an
    evaluation error, so the rule is reverted), and sums below it work as before."""
    from rules.expr import MAX_CONCAT

    chain = "event.y in (" + "+".join(["event.x"] * 58) + ")"
    when = " || ".join([chain] * 8)
    assert len(when) <= 4000
    expr = compile_expr(when)
    big = {"event": {"x": [0] * 30_000, "y": 1}, "features": {}}
    with pytest.raises(RuleEvalError, match=f"longer than {MAX_CONCAT}"):
        expr.evaluate(big)
    small = {"event": {"x": [0] * 100, "y": 0}, "features": {}}
    assert expr.evaluate(small) is True
    assert compile_expr("size(event.s + event.s) == 6").evaluate(
        {"event": {"s": "abc"}, "features": {}}
    )
    with pytest.raises(RuleEvalError, match="string longer than"):
        compile_expr("size(event.s + event.s) > 0").evaluate(
            {"event": {"s": "a" * 40_000}, "features": {}}
        )


def test_an_evaluation_error_does_not_quote_the_events_value() -> None:
    """An evaluation error goes to logs, dead letters and the ops topic: an index read
    from the event (a phone number in clear, say) is not quoted, only the list's size."""
    expr = compile_expr("['a', 'b'][int(event.channel)] == 'a'")
    with pytest.raises(RuleEvalError) as info:
        expr.evaluate({"event": {"channel": "13812345678"}, "features": {}})
    assert "13812345678" not in str(info.value)
    assert "index out of range for a list of 2" in str(info.value)


def _ab_text(n: int) -> str:
    """``n`` characters of a and b in an order that repeats only after 2^20 characters."""
    bits, out = 1, []
    for _ in range(n):
        bits = ((bits << 1) | (((bits >> 19) ^ (bits >> 16)) & 1)) & 0xFFFFF
        out.append("ab"[bits & 1])
    return "".join(out)


def test_matches_on_a_long_text_is_bounded_so_one_rule_cannot_stall_the_worker() -> None:
    """RE2 takes time linear in the text, but ``a[ab]{20}z`` makes its automaton too
    large to keep: about 100 ms on a text of 64 KiB (an input may carry a field of its
    own that long), so a condition repeating it took seconds per event. Past MAX_STEPS
    the evaluation fails (the rule is reverted), the same condition on a short text works."""
    when = " || ".join(["event.s.matches('a[ab]{20}z')"] * 20)
    expr = compile_expr(when)
    with pytest.raises(RuleEvalError, match="steps on this event"):
        expr.evaluate({"event": {"s": _ab_text(60_000)}, "features": {}})
    assert expr.evaluate({"event": {"s": _ab_text(120)}, "features": {}}) is False
    assert expr.evaluate({"event": {"s": "a" + "b" * 20 + "z"}, "features": {}}) is True


@pytest.mark.parametrize(
    ("join", "condition", "event"),
    [
        (" || ", "event.y in event.x", {"x": [0] * 30_000, "y": 1}),
        (" && ", "event.x == event.z", {"x": [0] * 30_000, "z": [0] * 30_000}),
        (" && ", "[event.x] == [event.z]", {"x": [0] * 30_000, "z": [0] * 30_000}),
        (" && ", "event.m == event.n", {"m": {str(i): 0 for i in range(6_000)}, "n": {}}),
    ],
)
def test_equality_and_in_on_long_lists_are_bounded(
    join: str, condition: str, event: dict[str, Any]
) -> None:
    """``==`` and ``in`` compare a list or map item by item: repeated over a list of
    30,000 items from an input, a condition of 4,000 characters took seconds per event.
    Past MAX_STEPS the evaluation fails; on short lists the condition works."""
    if "n" in event:
        event["n"] = dict(event["m"])
    when = join.join([condition] * 100)
    expr = compile_expr(when)
    with pytest.raises(RuleEvalError, match="steps on this event"):
        expr.evaluate({"event": event, "features": {}})
    small = {k: v[:3] if type(v) is list else v for k, v in event.items()}
    if "m" in event:
        small = {"m": {"a": 0}, "n": {"a": 0}}
    expected = join == " && "  # the lists are equal; 1 is not in [0, 0, 0]
    assert expr.evaluate({"event": small, "features": {}}) is expected


@pytest.mark.parametrize(
    "when",
    [
        "max(event.a / event.b, 3.0)",
        "max(3.0, event.a / event.b)",
        "min(event.a / event.b, 1.0)",
        "min(1.0, event.a / event.b)",
        "max(1, 2.0, event.a / event.b)",
    ],
)
def test_min_and_max_with_a_nan_argument_are_nan_wherever_it_stands(when: str) -> None:
    """A double's 0/0 is NaN, which orders with nothing: Python's min and max kept or
    dropped it by its place, so ``max(x / y, 3.0) > 2.0`` was false and
    ``max(3.0, x / y) > 2.0`` true on the same event. Either order gives NaN."""
    value = compile_expr(when).evaluate({"event": {"a": 0.0, "b": 0.0}, "features": {}})
    assert math.isnan(value)
    assert compile_expr(when + " > 0.5").evaluate({"event": {"a": 1.0, "b": 1.0}, "features": {}})
