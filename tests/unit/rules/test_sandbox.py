"""The sandbox: a condition can read map keys and call whitelisted functions, nothing else.

Attempts to reach Python internals are rejected at compile time, or evaluate to null or
a RuleEvalError without running any method of the values in the activation.
"""

from __future__ import annotations

import builtins
from typing import Any

import pytest

from rules.expr import CompileError, RuleEvalError, compile_expr
from rules.features import KNOWN_FEATURES

ESCAPES = [
    "event.__class__",
    "event.__class__.__mro__",
    "event.kind.__class__.__base__.__subclasses__()",
    "event.kind.__len__",
    "event.kind.__len__()",
    "size(event.__dict__)",
    "has(event.__class__)",
    "__import__('os')",
    "__import__('os').system('id')",
    "__builtins__",
    "().__class__",
    "(1).__class__",
    "''.__class__",
    "lambda x: x",
    "(lambda: 1)()",
    "[x for x in event]",
    "event.tags.map(t, t)",
    "event.tags.all(t, t == 'a')",
    "event.tags.filter(t, t == 'a')",
    "event.tags.exists_one(t, t == 'a')",
    "event.kind.format('x')",
    "event.kind.upper()",
    "event.kind.join(['a'])",
    "features.device_users_24h.bit_length()",
    "features.x.y()",
    "event.get('kind')",
    "event.items()",
    "open('/etc/passwd')",
    "exec('1')",
    "eval('1')",
    "compile('1', 'f', 'eval')",
    "getattr(event, 'kind')",
    "globals()",
    "locals()",
    "vars(event)",
    "type(event)",
    "dyn(event)",
    "os.system('ls')",
    "sys.modules",
    "self",
    "import os",
    "event.kind = 'x'",
    "event; 1",
    "f'{event}'",
    "`event`",
    "event.kind if true else 1",
    "1 if true else 2",
    "event @ 1",
    "event.kind ** 2",
    "event[1:2]",
    "print(event)",
]


@pytest.mark.parametrize("expr", ESCAPES)
def test_escape_attempts_are_compile_errors(expr: str) -> None:
    """Dunder fields, unlisted functions and methods, Python syntax: all rejected."""
    with pytest.raises(CompileError):
        compile_expr(expr, known_features=KNOWN_FEATURES)


def test_escape_attempts_never_reach_python_builtins() -> None:
    """Compiling the attempts calls no builtin that loads or runs code."""
    names = ("eval", "exec", "compile", "open", "getattr", "__import__")
    originals = {name: getattr(builtins, name) for name in names}
    called: list[str] = []

    def spy_for(name: str) -> Any:
        def spy(*args: Any, **kwargs: Any) -> Any:
            called.append(name)
            return originals[name](*args, **kwargs)

        return spy

    spies = {name: spy_for(name) for name in names}
    rejected = []
    try:
        for name, spy in spies.items():
            setattr(builtins, name, spy)
        for expr in ESCAPES:
            try:
                compile_expr(expr)
            except CompileError:
                rejected.append(expr)
    finally:
        for name, original in originals.items():
            setattr(builtins, name, original)
    assert rejected == ESCAPES
    assert called == []


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("event['__class__']", None),
        ("event['__dict__'] == null", True),
        ("features['__init__']", None),
        ("has(event.kyc) && event.kyc['__class__'] == null", True),
    ],
)
def test_dunder_keys_by_index_are_just_missing_keys(expr: str, expected: Any) -> None:
    """Indexing reads dict keys only, so a dunder name is an absent key: null."""
    act = {"event": {"kind": "login", "kyc": {}}, "features": {}}
    assert compile_expr(expr).evaluate(act) is expected


def test_index_on_a_string_does_not_reach_attributes() -> None:
    """Strings have no fields or items in the language."""
    act = {"event": {"kind": "login"}, "features": {}}
    with pytest.raises(RuleEvalError, match="cannot index a string"):
        compile_expr("event.kind['__class__']").evaluate(act)
    with pytest.raises(RuleEvalError, match="no field 'upper' on a string"):
        compile_expr("event.kind.upper == null").evaluate(act)


class Tripwire:
    """A value whose every method records the call: the sandbox must call none."""

    calls: list[str] = []  # noqa: RUF012

    def __getattribute__(self, name: str) -> Any:
        Tripwire.calls.append(name)
        raise AssertionError(f"attribute {name} read")


for _dunder in (
    "__eq__",
    "__ne__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__hash__",
    "__len__",
    "__iter__",
    "__contains__",
    "__getitem__",
    "__add__",
    "__radd__",
    "__neg__",
    "__bool__",
    "__str__",
    "__repr__",
    "__format__",
    "__int__",
    "__float__",
    "__index__",
):

    def _record(self: Any, *args: Any, _name: str = _dunder) -> Any:
        Tripwire.calls.append(_name)
        raise AssertionError(f"{_name} called")

    setattr(Tripwire, _dunder, _record)


@pytest.mark.parametrize(
    "expr",
    [
        "event.obj.field",
        "event.obj['field']",
        "has(event.obj.field)",
        "event.obj == 1",
        "event.obj == 'a'",
        "event.obj == event.obj",
        "event.obj != null",
        "event.obj < 1",
        "event.obj < event.obj",
        "size(event.obj)",
        "string(event.obj)",
        "int(event.obj)",
        "double(event.obj)",
        "abs(event.obj)",
        "min(event.obj, 1)",
        "event.obj + 1",
        "-event.obj",
        "!event.obj",
        "event.obj ? 1 : 2",
        "event.obj && true",
        "event.obj in [1, 'a']",
        "event.obj in [event.obj]",
        "1 in event.obj",
        "event.obj.startsWith('a')",
        "event.obj.matches('a')",
        "event.obj.size()",
    ],
)
def test_foreign_objects_in_the_activation_are_never_touched(expr: str) -> None:
    """A non-JSON value yields a result or a RuleEvalError; none of its methods run."""
    Tripwire.calls = []
    act = {"event": {"obj": Tripwire()}, "features": {}}
    compiled = compile_expr(expr)
    try:
        compiled.evaluate(act)
    except RuleEvalError as exc:
        assert "AssertionError" not in str(exc)
    assert Tripwire.calls == []


def test_huge_expressions_cannot_exhaust_the_stack() -> None:
    """Deeply nested input is refused with a CompileError rather than crashing."""
    for expr in ("-" * 3000 + "1", "(" * 1500 + "1" + ")" * 1500, "[" * 1999 + "]" * 1999):
        with pytest.raises(CompileError):
            compile_expr(expr)


def test_no_python_code_object_is_built_from_rule_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiling and evaluating a rule never calls compile()/eval()/exec()."""
    calls: list[str] = []
    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, lambda *a, _n=name, **k: calls.append(_n))
    compiled = compile_expr(
        "event.kind == 'login' && features.failed_logins_24h >= 3 "
        "&& event.kind.matches('^log') && size(event.tags) > 1 ? true : false",
        known_features=KNOWN_FEATURES,
    )
    act = {"event": {"kind": "login", "tags": [1, 2]}, "features": {"failed_logins_24h": 4}}
    result = compiled.evaluate(act)
    monkeypatch.undo()
    assert result is True
    assert calls == []


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "expr",
    [
        "event.text.matches('^(a+)+$')",
        "event.text.matches('^(a|aa)+$')",
        "event.text.matches('^(a*)*$')",
    ],
)
def test_a_pathological_pattern_cannot_stall_the_worker(expr: str) -> None:
    """matches() runs RE2 (the engine CEL specifies): time linear in the text, so a
    pattern that makes a backtracking engine take exponential time (here about 2^60
    steps) answers at once."""
    act = {"event": {"text": "a" * 60 + "!", "pattern": "^(a*)*$"}}
    assert compile_expr(expr).evaluate(act) is False
    act["event"]["text"] = "a" * 60
    assert compile_expr(expr).evaluate(act) is True
