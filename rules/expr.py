"""Rule conditions: a sandboxed subset of CEL, compiled once into Python closures.

A condition reads two maps, ``event`` (the input event as decoded JSON) and
``features`` (numbers computed for the event). :func:`compile_expr` parses the text,
checks it, and returns an :class:`Expression` whose ``fn`` is a tree of closures; the
text is never handed to Python's ``eval``/``exec``/``compile``.

>>> e = compile_expr("event.kind == 'login' && features.failed_logins_24h >= 3")
>>> e.evaluate({"event": {"kind": "login"}, "features": {"failed_logins_24h": 5}})
True
>>> e.features, e.event_kinds
(frozenset({'failed_logins_24h'}), frozenset({'login'}))

A missing field is ``null``; ordering comparisons with ``null`` are false, equality works:

>>> act = {"event": {"kind": "login"}, "features": {}}
>>> [evaluate(s, act) for s in ("event.amount", "event.amount > 5", "event.amount == null")]
[None, False, True]
>>> evaluate("has(event.kyc) ? event.kyc.liveness_pass : false", act)
False

``&&`` and ``||`` absorb errors the CEL way: a false (or true) operand decides, whichever
side raised. Other type errors raise :class:`RuleEvalError`, and an operation that
fails on constants alone is a compile error:

>>> evaluate("event.kind > 2 && false", act)
False
>>> try:
...     evaluate("event.kind < 3", act)
... except RuleEvalError as err:
...     print(err)
cannot compare string < int at column 12

Mistakes are reported at compile time, with the rule name and the column:

>>> try:
...     compile_expr("features.faild_logins > 2", known_features={"failed_logins_24h"}, name="x")
... except CompileError as err:
...     print(err)
rule 'x': unknown feature 'faild_logins' at column 10 (did you mean 'failed_logins_24h'?)
>>> try:
...     compile_expr("event.kind == 'a' && && 1", name="y")
... except CompileError as err:
...     print(err)
rule 'y': unexpected token '&&' at column 22

Differences from CEL, on purpose: a missing map key is ``null`` (CEL raises); ``<``,
``<=``, ``>``, ``>=`` with a ``null`` operand are false; ``x in null`` and the string
predicates on a ``null`` receiver are false; ``int`` and ``double`` mix in arithmetic
(the result is a double; CEL raises); ``size`` of a string counts code points; ``min``,
``max`` and ``abs`` are built in (``min`` and ``max`` are ``nan`` when an argument is);
the pattern of ``matches`` is a string literal, of RE2's syntax, and of a bounded size
(:data:`MAX_REGEX_PROGRAM`); with a number the contract
types (``num``: an int or a double, as the producer wrote it), ``/`` and ``%`` are a
double's (``%`` the remainder with the sign of the dividend, ``nan`` by zero), so that
``5000`` and ``5000.0`` meet a rule alike. Arithmetic and ``!`` on ``null`` stay errors:
guard optional fields with ``has(event.field)``, or a producer leaving the field out
makes the rule fail, and the worker revert it. ``+`` makes no string or list longer than
:data:`MAX_CONCAT` (an input is at most 64 KiB: only a rule could build a longer one), an
evaluation fails past :data:`MAX_STEPS` steps of ``matches`` on long texts or ``==`` and
``in`` on long lists, and a ``//`` comment may not hold what looks like more of the
condition (YAML's ``>-`` joins a condition's lines, and the comment would hide the rest).

>>> n = compile_expr("event.amount % 1000 == 0", event_types={"amount": "num"})
>>> [n.evaluate({"event": {"amount": a}, "features": {}}) for a in (5000, 5000.0, 5000.5)]
[True, True, False]
"""

from __future__ import annotations

import difflib
import functools
import math
import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import re2

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_STEPS",
    "ROOTS",
    "CompileError",
    "Evaluator",
    "Expression",
    "RuleEvalError",
    "compile_expr",
    "evaluate",
]

MAX_LENGTH = 4000
MAX_DEPTH = 64
ROOTS = ("event", "features")

Evaluator = Callable[[Mapping[str, Any]], Any]

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
_CONSTANTS = {"true": True, "false": False, "null": None}
_RESERVED = frozenset(
    {
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    }
)
_FUNCTIONS = frozenset({"size", "has", "int", "double", "string", "min", "max", "abs"})
_METHODS = frozenset({"startsWith", "endsWith", "contains", "matches", "size"})
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]|\(\?P=")
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_DOUBLE_TEXT = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?"
    r"|inf|infinity|nan)",
    re.IGNORECASE,
)


class CompileError(ValueError):
    """The text is not a valid condition; the message names the rule and the column."""

    def __init__(self, message: str, *, rule: str | None = None, column: int | None = None):
        self.rule = rule
        self.column = column
        self.reason = message
        text = message
        if rule is not None:
            text = f"rule {rule!r}: {text}"
        super().__init__(text)


class RuleEvalError(Exception):
    """Evaluating a compiled condition failed (a type error, division by zero, ...)."""


# --------------------------------------------------------------------------- tokens


class _Token(NamedTuple):
    kind: str  # "int", "float", "string", "ident", "op", "eof"
    text: str
    value: Any
    pos: int


_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<bytes>(?:[bB][rR]?|[rR][bB])['"])
  | (?P<string>[rR]?['"])
  | (?P<float>[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)
  | (?P<int>0[xX][0-9a-fA-F]+|[0-9]+)(?P<unsigned>[uU])?
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>&&|\|\||==|!=|<=|>=|[<>!+\-*/%?:.,()\[\]{}])
    """,
    re.VERBOSE,
)
_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
}


class _Source:
    """The expression text and how to turn an offset into a readable position."""

    def __init__(self, text: str, rule: str | None):
        self.text = text
        self.rule = rule

    def where(self, pos: int) -> str:
        if "\n" not in self.text:
            return f"at column {pos + 1}"
        line = self.text.count("\n", 0, pos) + 1
        column = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return f"at line {line}, column {column}"

    def error(self, message: str, pos: int, hint: str = "") -> CompileError:
        text = f"{message} {self.where(pos)}{hint}"
        return CompileError(text, rule=self.rule, column=pos + 1)


#: what a comment (``//`` to the end of the line) must not hold: a condition it would hide
_HIDDEN = re.compile(r"&&|\|\||==|!=|<=|>=|\b(?:event|features)\.")
#: the longest string or list ``+`` makes: an input is at most 64 KiB, so only a rule
#: could build a longer one, and chained sums of a long list would stall the worker
MAX_CONCAT = 65_536
#: the most work one evaluation of a condition may do, in steps: ``matches`` takes, for
#: each character of the text, a step per instruction of the pattern and
#: :data:`CHAR_STEPS` (RE2's time is linear in the text, but a pattern such as
#: ``a[ab]{20}z`` makes its automaton too large to keep and takes about 100 ms on a text
#: of 64 KiB), and ``==`` or ``in`` take :data:`ITEM_STEPS` for each item of a list or map
#: they compare one by one. A condition of 4,000 characters repeating one of them over a
#: long list or text of an input would otherwise take seconds per event; past this the
#: evaluation fails (an evaluation error: the rule is reverted).
MAX_STEPS = 1_000_000
#: the steps of one item of a list or map that ``==`` or ``in`` compares
ITEM_STEPS = 100
#: the steps of one character of text that ``matches`` reads, besides one per instruction
#: of the pattern (RE2 may build states of its automaton anew at each character)
CHAR_STEPS = 200


def _tokenize(src: _Source) -> list[_Token]:
    text = src.text
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            hint = " (use '==')" if ch == "=" else ""
            hint = " (use '&&' or '||')" if ch in "&|" else hint
            raise src.error(f"unexpected character {ch!r}", pos, hint)
        kind = m.lastgroup
        if kind == "unsigned":
            raise src.error("unsigned integers are not supported", pos)
        if kind == "bytes":
            raise src.error("bytes literals are not supported", pos)
        if kind == "string":
            text_value, end = _scan_string(src, pos)
            tokens.append(_Token("string", text[pos:end], text_value, pos))
            pos = end
            continue
        lexeme = m.group()
        if kind == "space" and lexeme.startswith("//") and _HIDDEN.search(lexeme):
            raise src.error(
                "this comment hides what looks like more of the condition (a comment runs to "
                "the end of the line, and YAML's folded style '>-' joins lines into one): "
                "write the condition with '|', or the note in the rule's reason",
                pos,
            )
        if kind == "float":
            tokens.append(_Token("float", lexeme, float(lexeme), pos))
        elif kind == "int":
            number = int(lexeme, 16) if lexeme[:2] in ("0x", "0X") else int(lexeme)
            tokens.append(_Token("int", lexeme, number, pos))
        elif kind == "ident":
            if lexeme in _CONSTANTS:
                tokens.append(_Token("const", lexeme, _CONSTANTS[lexeme], pos))
            elif lexeme == "in":
                tokens.append(_Token("op", lexeme, None, pos))
            else:
                tokens.append(_Token("ident", lexeme, lexeme, pos))
        elif kind == "op":
            tokens.append(_Token("op", lexeme, None, pos))
        pos = m.end()
    tokens.append(_Token("eof", "end of expression", None, len(text)))
    return tokens


def _scan_string(src: _Source, start: int) -> tuple[str, int]:
    text = src.text
    pos = start
    raw = text[pos] in "rR"
    if raw:
        pos += 1
    quote = text[pos]
    if text.startswith(quote * 3, pos):
        quote *= 3
    pos += len(quote)
    out: list[str] = []
    while True:
        if pos >= len(text) or (len(quote) == 1 and text[pos] == "\n"):
            raise src.error("unterminated string", start)
        if text.startswith(quote, pos):
            return "".join(out), pos + len(quote)
        ch = text[pos]
        if ch != "\\" or raw:
            out.append(ch)
            pos += 1
            continue
        esc = text[pos + 1 : pos + 2]
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            pos += 2
        elif esc in ("x", "X", "u", "U"):
            width = {"x": 2, "X": 2, "u": 4, "U": 8}[esc]
            digits = text[pos + 2 : pos + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise src.error(f"invalid escape '\\{esc}'", pos)
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise src.error(f"invalid escape '\\{esc}{digits}'", pos)
            out.append(chr(code))
            pos += 2 + width
        elif esc and esc in "0123":
            digits = text[pos + 1 : pos + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits):
                raise src.error("invalid octal escape (three digits 000-377)", pos)
            out.append(chr(int(digits, 8)))
            pos += 4
        else:
            raise src.error(f"invalid escape '\\{esc}'", pos)


# --------------------------------------------------------------------------- parser


class _Node:
    """One node of the syntax tree. ``value`` and ``args`` depend on ``kind``."""

    __slots__ = ("args", "kind", "pos", "value")

    def __init__(self, kind: str, pos: int, value: Any = None, args: tuple[_Node, ...] = ()):
        self.kind = kind
        self.pos = pos
        self.value = value
        self.args = args


_BINARY_BP = {
    "||": 2,
    "&&": 3,
    "==": 4,
    "!=": 4,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "in": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "%": 6,
}
_COND_BP = 1
_UNARY_BP = 7
_WORD_HINTS = {"and": "&&", "or": "||", "not": "!", "is": "=="}


class _Parser:
    """Pratt parser for the supported CEL grammar."""

    def __init__(self, src: _Source, tokens: list[_Token]):
        self.src = src
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    @property
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def is_op(self, text: str) -> bool:
        tok = self.tokens[self.i]
        return tok.kind == "op" and tok.text == text

    def expect(self, text: str) -> _Token:
        if not self.is_op(text):
            tok = self.peek
            raise self.src.error(f"expected {text!r} but found {_show(tok)}", tok.pos)
        return self.advance()

    def unexpected(self, tok: _Token) -> CompileError:
        hint = ""
        if tok.kind == "ident" and tok.text in _WORD_HINTS:
            hint = f" (use {_WORD_HINTS[tok.text]!r})"
        return self.src.error(f"unexpected token {_show(tok)}", tok.pos, hint)

    def parse(self) -> _Node:
        node = self.expr(0)
        if self.peek.kind != "eof":
            raise self.unexpected(self.peek)
        return node

    def expr(self, min_bp: int) -> _Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.src.error(f"expression nested deeper than {MAX_DEPTH}", self.peek.pos)
        left = self.prefix()
        while True:
            tok = self.peek
            op = tok.text if tok.kind == "op" else None
            if op == "." or op == "[":
                left = self.postfix(left)
            elif op == "?" and min_bp < _COND_BP:
                self.advance()
                then = self.expr(_COND_BP)
                self.expect(":")
                other = self.expr(0)
                left = _Node("cond", tok.pos, None, (left, then, other))
            elif op in _BINARY_BP and _BINARY_BP[op] > min_bp:
                self.advance()
                right = self.expr(_BINARY_BP[op])
                left = _binary(op, tok.pos, left, right)
            elif op == "(":
                raise self.src.error("only built-in functions can be called", tok.pos)
            else:
                break
        self.depth -= 1
        return left

    def prefix(self) -> _Node:
        tok = self.advance()
        if tok.kind in ("int", "float", "string", "const"):
            return _Node("const", tok.pos, tok.value)
        if tok.kind == "ident":
            return self.identifier(tok)
        if tok.kind == "op":
            if tok.text == "-":
                operand = self.expr(_UNARY_BP)
                if operand.kind == "const" and type(operand.value) in (int, float):
                    return _Node("const", tok.pos, -operand.value)
                return _Node("neg", tok.pos, None, (operand,))
            if tok.text == "!":
                return _Node("not", tok.pos, None, (self.expr(_UNARY_BP),))
            if tok.text == "(":
                node = self.expr(0)
                self.expect(")")
                return node
            if tok.text == "[":
                return _Node("list", tok.pos, None, self.arguments("]"))
            if tok.text == "{":
                raise self.src.error("map literals are not supported", tok.pos)
        raise self.unexpected(tok)

    def arguments(self, close: str) -> tuple[_Node, ...]:
        items: list[_Node] = []
        while not self.is_op(close):
            items.append(self.expr(0))
            if not self.is_op(","):
                break
            self.advance()
        self.expect(close)
        return tuple(items)

    def identifier(self, tok: _Token) -> _Node:
        name = tok.text
        if name in _RESERVED:
            raise self.src.error(f"{name!r} is a reserved word", tok.pos)
        if not self.is_op("("):
            if name in _WORD_HINTS:
                raise self.unexpected(tok)
            return _Node("ident", tok.pos, name)
        if name not in _FUNCTIONS:
            hint = _did_you_mean(name, _FUNCTIONS)
            raise self.src.error(f"unknown function {name!r}", tok.pos, hint)
        self.advance()
        args = self.arguments(")")
        if name == "has":
            if len(args) != 1 or args[0].kind != "select":
                raise self.src.error("has() takes one field selection like a.b", tok.pos)
            target = args[0]
            return _Node("has", tok.pos, target.value, target.args)
        return _Node("call", tok.pos, name, args)

    def postfix(self, left: _Node) -> _Node:
        tok = self.advance()
        if tok.text == "[":
            key = self.expr(0)
            self.expect("]")
            return _Node("index", tok.pos, None, (left, key))
        name_tok = self.advance()
        if name_tok.kind != "ident":
            raise self.src.error(f"expected a field name but found {_show(name_tok)}", name_tok.pos)
        name = name_tok.text
        if name.startswith("__"):
            raise self.src.error(f"field name {name!r} is not allowed", name_tok.pos)
        if not self.is_op("("):
            return _Node("select", name_tok.pos, name, (left,))
        if name in _MACROS:
            raise self.src.error(f"macro {name!r} is not supported", name_tok.pos)
        if name not in _METHODS:
            hint = _did_you_mean(name, _METHODS)
            raise self.src.error(f"unknown method {name!r}", name_tok.pos, hint)
        self.advance()
        args = self.arguments(")")
        return _Node("method", name_tok.pos, name, (left, *args))


def _binary(op: str, pos: int, left: _Node, right: _Node) -> _Node:
    if op in ("&&", "||"):
        kind = "and" if op == "&&" else "or"
        terms = [*(left.args if left.kind == kind else (left,))]
        terms.extend(right.args if right.kind == kind else (right,))
        return _Node(kind, pos, op, tuple(terms))
    return _Node("binary", pos, op, (left, right))


def _show(tok: _Token) -> str:
    return tok.text if tok.kind == "eof" else repr(tok.text)


def _did_you_mean(name: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- runtime helpers


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    t = type(value)
    if t is bool:
        return "bool"
    if t is int:
        return "int"
    if t is float:
        return "double"
    if t is str:
        return "string"
    if t is list or t is tuple:
        return "list"
    if _is_map(value):
        return "map"
    return "unsupported value"


def _is_map(value: Any) -> bool:
    """Mapping test by type only: never runs code of the value itself."""
    return type(value) is dict or issubclass(type(value), Mapping)


def _describe(value: Any) -> str:
    """A value for an error message, by its type and size only: the values a condition
    meets come from events, and an event's text may be personal data (an unhashed phone
    number in a ``*_hash`` field), which must not reach logs or dead letters."""
    if type(value) is str:
        return f"a string of {len(value)} character{'' if len(value) == 1 else 's'}"
    return _type_name(value)


def _fail(message: str, src: _Source, pos: int) -> RuleEvalError:
    return RuleEvalError(f"{message} {src.where(pos)}")


def _check_int(value: int, src: _Source, pos: int) -> int:
    if _INT_MIN <= value <= _INT_MAX:
        return value
    raise _fail("integer overflow", src, pos)


def _spend(meter: list[int], steps: int, src: _Source, pos: int) -> None:
    """Take ``steps`` from what is left of this evaluation's :data:`MAX_STEPS` (``meter``),
    before doing the work; fail when they are not there."""
    left = meter[0] - steps
    meter[0] = left
    if left < 0:
        raise _fail(
            f"the condition needs more than {MAX_STEPS} steps on this event (a list or text "
            "of the event too long for what it does with it)",
            src,
            pos,
        )


def _equal(a: Any, b: Any, meter: list[int], src: _Source, pos: int) -> bool:
    """CEL equality: values of different kinds are unequal; int and double compare.
    Comparing lists or maps item by item spends :data:`ITEM_STEPS` an item."""
    ta = type(a)
    tb = type(b)
    if ta is tb:
        if ta is list or ta is tuple:
            if len(a) != len(b):
                return False
            _spend(meter, len(a) * ITEM_STEPS, src, pos)
            return all(_equal(x, y, meter, src, pos) for x, y in zip(a, b, strict=True))
        if ta is dict:
            if len(a) != len(b):
                return False
            _spend(meter, len(a) * ITEM_STEPS, src, pos)
            return a.keys() == b.keys() and all(
                _equal(v, b[k], meter, src, pos) for k, v in a.items()
            )
        if ta in (str, int, float, bool, type(None)):
            return bool(a == b)
        return a is b
    if (ta is int or ta is float) and (tb is int or tb is float):
        return bool(a == b)
    if (ta is list or ta is tuple) and (tb is list or tb is tuple):
        if len(a) != len(b):
            return False
        _spend(meter, len(a) * ITEM_STEPS, src, pos)
        return all(_equal(x, y, meter, src, pos) for x, y in zip(a, b, strict=True))
    return False


def _contains(item: Any, container: Any, meter: list[int], src: _Source, pos: int) -> bool | None:
    """``item in container``; None when the container type is unsupported. A list (or a
    map for a key that is neither a string nor an int) is walked: :data:`ITEM_STEPS` an
    item."""
    t = type(container)
    if t is list or t is tuple:
        _spend(meter, len(container) * ITEM_STEPS, src, pos)
        return any(_equal(item, x, meter, src, pos) for x in container)
    if t is dict:
        ti = type(item)
        if ti is str or ti is int:
            return item in container
        _spend(meter, len(container) * ITEM_STEPS, src, pos)
        return any(_equal(item, k, meter, src, pos) for k in container)
    if container is None:
        return False
    return None


def _select(obj: Any, key: str) -> Any:
    """Field of a map; reads keys only, never attributes."""
    if type(obj) is dict:
        return obj.get(key)
    if obj is None:
        return None
    if _is_map(obj):
        return obj.get(key)
    raise RuleEvalError(f"no field {key!r} on a {_type_name(obj)}")


def _orderable(a: Any, b: Any) -> bool | None:
    """True when ``a`` and ``b`` can be ordered, None when one is null, else False."""
    ta = type(a)
    tb = type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return True
    if ta is tb and (ta is str or ta is bool):
        return True
    if a is None or b is None:
        return None
    return False


def _double_text(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "inf" if value > 0 else "-inf"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is reported to the rule's author, not stderr
#: the largest compiled pattern (RE2 instructions): matching time grows with the program
#: as well as the text, and past a few thousand instructions RE2's fast matcher gives way
#: to one a hundred times slower (``(?:.{50}|.{49}|...)z`` took 50 ms on 4,000 characters;
#: at 1,000 instructions, under half a millisecond). Rule patterns are a few dozen.
MAX_REGEX_PROGRAM = 1000


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> Any:
    """A compiled RE2 pattern: matching takes time linear in the text whatever the
    pattern, so a rule cannot stall the worker (no catastrophic backtracking).

    >>> _regex(r"^(a+)+$").search("a" * 50_000 + "b") is None
    True
    """
    if _NOT_RE2.search(pattern):
        raise ValueError("lookaround and backreferences are not supported")
    try:
        compiled = re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(str(detail)) from None
    size = _program_size(compiled)
    if size > MAX_REGEX_PROGRAM:
        raise ValueError(
            f"pattern too large to match quickly ({size} instructions, at most "
            f"{MAX_REGEX_PROGRAM}: fewer or smaller repetitions)"
        )
    return compiled


def _program_size(compiled: Any) -> int:
    """The instructions of a compiled RE2 pattern (the larger of its two programs)."""
    return max(compiled.programsize, compiled.reverseprogramsize, 1)


# --------------------------------------------------------------------------- compiler


_NO_CONST = object()
#: ``num``: a JSON number of the contract, an int or a double as the event has it
_NUM_TYPES = frozenset({"int", "double", "num"})
_ORDER_OPS = frozenset({"<", "<=", ">", ">="})


class _Code(NamedTuple):
    fn: Evaluator
    type: str  # a CEL type name, or "dyn" when only known at run time
    const: Any = _NO_CONST


def _const(value: Any) -> _Code:
    return _Code(lambda act: value, _type_name(value), value)


def _mixed_type(a: str, b: str) -> str:
    if a == b:
        return a
    if a in _NUM_TYPES and b in _NUM_TYPES:
        return "num" if "num" in (a, b) else "double"
    return "dyn"


class _Compiler:
    def __init__(
        self,
        src: _Source,
        known_features: frozenset[str] | None,
        event_types: Mapping[str, str] | None = None,
        feature_types: Mapping[str, str] | None = None,
    ):
        self.src = src
        self.known = known_features
        self.event_types = event_types or {}
        self.feature_types = feature_types or {}
        self.features: set[str] = set()
        self.event_fields: set[str] = set()
        #: the steps left to the evaluation under way (:data:`MAX_STEPS`), set anew by
        #: the closure :func:`compile_expr` returns when ``metered``
        self.meter = [MAX_STEPS]
        #: whether any closure spends steps
        self.metered = False

    def error(self, message: str, node: _Node, hint: str = "") -> CompileError:
        return self.src.error(message, node.pos, hint)

    def compile(self, node: _Node, depth: int = 0) -> _Code:
        if depth > MAX_DEPTH:
            raise self.error(f"expression nested deeper than {MAX_DEPTH}", node)
        if node.kind == "const":
            return self.constant(node)
        if node.kind == "ident":
            return self.root(node)
        args = [self.compile(arg, depth + 1) for arg in node.args]
        handlers = {
            "select": self.c_select,
            "has": self.c_has,
            "index": self.c_index,
            "list": self.c_list,
            "not": self.c_not,
            "and": self.c_and,
            "or": self.c_or,
            "cond": self.c_cond,
            "neg": self.c_neg,
            "binary": self.c_binary,
            "call": self.c_call,
            "method": self.c_method,
        }
        code = handlers[node.kind](node, args)
        return self.fold(node, args, code)

    def fold(self, node: _Node, args: list[_Code], code: _Code) -> _Code:
        """Evaluate now when every operand is a constant."""
        if code.const is not _NO_CONST or not args:
            return code
        if any(a.const is _NO_CONST for a in args):
            return code
        try:
            self.meter[0] = MAX_STEPS
            value = code.fn({})
        except Exception as exc:
            message = f"always fails: {exc}"
            raise CompileError(message, rule=self.src.rule, column=node.pos + 1) from None
        return _const(value)

    # -- leaves

    def constant(self, node: _Node) -> _Code:
        value = node.value
        if type(value) is int and not _INT_MIN <= value <= _INT_MAX:
            raise self.error("integer literal out of range", node)
        return _const(value)

    def root(self, node: _Node) -> _Code:
        name = node.value
        if name not in ROOTS:
            hint = _did_you_mean(name, ROOTS)
            raise self.error(
                f"unknown identifier {name!r} (only 'event' and 'features' exist)", node, hint
            )
        return _Code(lambda act: act[name], "map")

    def check_feature(self, node: _Node, target: _Node, name: Any) -> None:
        """Record a field read from a root map; an unknown feature is an error."""
        if target.kind != "ident" or type(name) is not str:
            return
        if target.value == "event":
            self.event_fields.add(name)
            return
        if self.known is not None and name not in self.known:
            hint = _did_you_mean(name, self.known)
            raise self.error(f"unknown feature {name!r}", node, hint)
        self.features.add(name)

    # -- member access

    def c_select(self, node: _Node, args: list[_Code]) -> _Code:
        key = node.value
        target = node.args[0]
        self.check_feature(node, target, key)
        if target.kind == "ident":
            root = target.value

            def select_root(act: Mapping[str, Any]) -> Any:
                m = act[root]
                return m.get(key) if type(m) is dict else _select(m, key)

            types = self.event_types if root == "event" else self.feature_types
            known = types.get(key, "dyn")
            return _Code(select_root, known)
        obj = args[0].fn

        def select(act: Mapping[str, Any]) -> Any:
            m = obj(act)
            return m.get(key) if type(m) is dict else _select(m, key)

        return _Code(select, "dyn")

    def c_has(self, node: _Node, args: list[_Code]) -> _Code:
        key = node.value
        target = node.args[0]
        self.check_feature(node, target, key)
        obj = args[0].fn
        src = self.src

        def has(act: Mapping[str, Any]) -> bool:
            m = obj(act)
            if type(m) is dict:
                return key in m
            if m is None:
                return False
            if _is_map(m):
                return key in m
            raise _fail(f"has() needs a map, got {_type_name(m)}", src, node.pos)

        return _Code(has, "bool")

    def c_index(self, node: _Node, args: list[_Code]) -> _Code:
        target_node, key_node = node.args
        if key_node.kind == "const":
            self.check_feature(node, target_node, key_node.value)
        obj, keyf = args[0].fn, args[1].fn
        src = self.src

        def index(act: Mapping[str, Any]) -> Any:
            m = obj(act)
            k = keyf(act)
            tm = type(m)
            if tm is dict or (tm is not list and _is_map(m)):
                tk = type(k)
                if tk is str or tk is int or tk is bool or tk is float:
                    return m.get(k)
                raise _fail(f"a map key cannot be a {_type_name(k)}", src, node.pos)
            if tm is list or tm is tuple:
                if type(k) is not int:
                    raise _fail(f"a list index must be an int, got {_type_name(k)}", src, node.pos)
                if not 0 <= k < len(m):
                    raise _fail(f"index out of range for a list of {len(m)}", src, node.pos)
                return m[k]
            if m is None:
                return None
            raise _fail(f"cannot index a {_type_name(m)}", src, node.pos)

        return _Code(index, "dyn")

    def c_list(self, node: _Node, args: list[_Code]) -> _Code:
        fns = tuple(a.fn for a in args)
        return _Code(lambda act: [f(act) for f in fns], "list")

    # -- logic

    def c_not(self, node: _Node, args: list[_Code]) -> _Code:
        (x,) = args
        self.expect_type(node.args[0], x, ("bool",), "operand of '!'")
        fn = x.fn
        src = self.src

        def not_(act: Mapping[str, Any]) -> bool:
            v = fn(act)
            if v is True:
                return False
            if v is False:
                return True
            raise _fail(f"'!' needs a bool, got {_type_name(v)}", src, node.pos)

        return _Code(not_, "bool")

    def c_and(self, node: _Node, args: list[_Code]) -> _Code:
        return self.logic(node, args, stop=False)

    def c_or(self, node: _Node, args: list[_Code]) -> _Code:
        return self.logic(node, args, stop=True)

    def logic(self, node: _Node, args: list[_Code], stop: bool) -> _Code:
        """``&&`` (stop on False) and ``||`` (stop on True) over n operands."""
        op = node.value
        for sub, code in zip(node.args, args, strict=True):
            self.expect_type(sub, code, ("bool",), f"operand of {op!r}")
            if code.const is stop:
                return _const(stop)
        fns = tuple(a.fn for a in args if a.const is _NO_CONST or a.const is not (not stop))
        if not fns:
            return _const(not stop)
        src = self.src
        pos = node.pos
        neutral = not stop

        def bad(v: Any) -> RuleEvalError:
            return _fail(f"{op!r} needs bool operands, got {_type_name(v)}", src, pos)

        def rest(act: Mapping[str, Any], start: int, err: BaseException | None) -> bool:
            """The operands from ``start`` on, after an earlier one failed (``err``, the
            first failure): a later ``stop`` still decides (CEL's error-absorbing rule),
            else the first failure is raised. Each operand is evaluated once, so nested
            operators that fail cost what they cost when they succeed."""
            for f in fns[start:]:
                try:
                    v = f(act)
                except Exception as exc:
                    if err is None:
                        err = exc
                    continue
                if v is stop:
                    return stop
                if v is not neutral and err is None:
                    err = bad(v)
            if err is not None:
                raise err
            return neutral

        # Fast paths for two and three operands; at the first failure (an error, a
        # non-bool), ``rest`` takes the operands after it.
        if len(fns) == 2:
            f0, f1 = fns

            def logic2(act: Mapping[str, Any]) -> bool:
                try:
                    v = f0(act)
                except Exception as exc:
                    return rest(act, 1, exc)
                if v is neutral:
                    v = f1(act)
                    if v is neutral or v is stop:
                        return v
                    raise bad(v)
                if v is stop:
                    return stop
                return rest(act, 1, bad(v))

            return _Code(logic2, "bool")
        if len(fns) == 3:
            f0, f1, f2 = fns

            def logic3(act: Mapping[str, Any]) -> bool:
                try:
                    v = f0(act)
                except Exception as exc:
                    return rest(act, 1, exc)
                if v is neutral:
                    try:
                        v = f1(act)
                    except Exception as exc:
                        return rest(act, 2, exc)
                    if v is neutral:
                        v = f2(act)
                        if v is neutral or v is stop:
                            return v
                        raise bad(v)
                    if v is stop:
                        return stop
                    return rest(act, 2, bad(v))
                if v is stop:
                    return stop
                return rest(act, 1, bad(v))

            return _Code(logic3, "bool")

        def logic(act: Mapping[str, Any]) -> bool:
            for i, f in enumerate(fns, 1):
                try:
                    v = f(act)
                except Exception as exc:
                    return rest(act, i, exc)
                if v is not neutral:
                    if v is stop:
                        return stop
                    return rest(act, i, bad(v))
            return neutral

        return _Code(logic, "bool")

    def c_cond(self, node: _Node, args: list[_Code]) -> _Code:
        cond, then, other = args
        self.expect_type(node.args[0], cond, ("bool",), "condition of '?:'")
        if cond.const is True:
            return then
        if cond.const is False:
            return other
        cf, tf, of = cond.fn, then.fn, other.fn
        src = self.src

        def choose(act: Mapping[str, Any]) -> Any:
            c = cf(act)
            if c is True:
                return tf(act)
            if c is False:
                return of(act)
            raise _fail(f"'?:' needs a bool condition, got {_type_name(c)}", src, node.pos)

        t = then.type if then.type == other.type else "dyn"
        return _Code(choose, t)

    # -- operators

    def c_neg(self, node: _Node, args: list[_Code]) -> _Code:
        (x,) = args
        self.expect_type(node.args[0], x, ("int", "double"), "operand of '-'")
        fn = x.fn
        src = self.src

        def neg(act: Mapping[str, Any]) -> Any:
            v = fn(act)
            t = type(v)
            if t is float:
                return -v
            if t is int:
                return _check_int(-v, src, node.pos)
            raise _fail(f"'-' needs a number, got {_type_name(v)}", src, node.pos)

        return _Code(neg, x.type if x.type in _NUM_TYPES else "dyn")

    def c_binary(self, node: _Node, args: list[_Code]) -> _Code:
        op = node.value
        left, right = args
        if op in ("==", "!="):
            return self.equality(node, left, right)
        if op in _ORDER_OPS:
            return self.ordering(node, left, right)
        if op == "in":
            return self.membership(node, left, right)
        return self.arithmetic(node, left, right)

    def equality(self, node: _Node, left: _Code, right: _Code) -> _Code:
        negate = node.value == "!="
        left_node = node.args[0]
        if left.const is not _NO_CONST and right.const is _NO_CONST:
            left, right, left_node = right, left, node.args[1]
        lf, c = left.fn, right.const
        meter, src, pos = self.meter, self.src, node.pos
        fn: Evaluator
        if c is None or type(c) is bool:
            fn = (lambda act: lf(act) is not c) if negate else (lambda act: lf(act) is c)
        elif type(c) in (str, int, float):
            fn = _equal_const(c, negate, lf, _field_of(left_node))
        else:
            self.metered = True
            rf = right.fn
            if negate:
                fn = lambda act: not _equal(lf(act), rf(act), meter, src, pos)  # noqa: E731
            else:
                fn = lambda act: _equal(lf(act), rf(act), meter, src, pos)  # noqa: E731
        return _Code(fn, "bool")

    def ordering(self, node: _Node, left: _Code, right: _Code) -> _Code:
        op = node.value
        lt, rt = left.type, right.type
        known = lt != "dyn" and rt != "dyn" and "null" not in (lt, rt)
        comparable = (lt in _NUM_TYPES and rt in _NUM_TYPES) or lt == rt in ("string", "bool")
        if known and not comparable:
            raise self.error(f"cannot compare {lt} {op} {rt}", node)
        src = self.src
        pos = node.pos
        lf = left.fn
        c = right.const
        if type(c) in (int, float):
            field = _field_of(node.args[0])
            return _Code(_order_const(op, lf, c, field, src, pos), "bool")
        rf = right.fn
        test = {"<": _lt, "<=": _le, ">": _gt, ">=": _ge}[op]

        def order(act: Mapping[str, Any]) -> bool:
            a = lf(act)
            b = rf(act)
            ok = _orderable(a, b)
            if ok:
                return test(a, b)
            if ok is None:
                return False
            raise _fail(f"cannot compare {_type_name(a)} {op} {_type_name(b)}", src, pos)

        return _Code(order, "bool")

    def membership(self, node: _Node, left: _Code, right: _Code) -> _Code:
        if right.type not in ("list", "map", "dyn", "null"):
            raise self.error(f"'in' needs a list or a map on the right, got {right.type}", node)
        lf = left.fn
        src = self.src
        items = right.const
        if type(items) is list and items and all(type(x) is str for x in items):
            strings = frozenset(items)
            field = _field_of(node.args[0])
            if field is None:
                return _Code(lambda act: _in_strings(lf(act), strings), "bool")
            root, key = field

            def in_strings(act: Mapping[str, Any]) -> bool:
                m = act[root]
                v = m.get(key) if type(m) is dict else _select(m, key)
                return type(v) is str and v in strings

            return _Code(in_strings, "bool")
        if type(items) is list and items and all(type(x) in (int, float) for x in items):
            numbers = frozenset(items)
            return _Code(lambda act: _in_numbers(lf(act), numbers), "bool")
        rf = right.fn
        meter = self.meter
        self.metered = True

        def member(act: Mapping[str, Any]) -> bool:
            item = lf(act)
            coll = rf(act)
            found = _contains(item, coll, meter, src, node.pos)
            if found is None:
                raise _fail(f"'in' needs a list or a map, got {_type_name(coll)}", src, node.pos)
            return found

        return _Code(member, "bool")

    def arithmetic(self, node: _Node, left: _Code, right: _Code) -> _Code:
        op = node.value
        lt, rt = left.type, right.type
        if lt != "dyn" and rt != "dyn":
            numeric = lt in _NUM_TYPES and rt in _NUM_TYPES
            whole = ("int", "num")  # a JSON number may be whole: known when it comes
            ok = numeric and (op != "%" or (lt in whole and rt in whole))
            ok = ok or (op == "+" and lt == rt and lt in ("string", "list"))
            if not ok:
                raise self.error(f"no operator {op!r} for {lt} and {rt}", node)
        lf, rf = left.fn, right.fn
        src = self.src
        pos = node.pos
        if op in ("/", "%") and "num" in (lt, rt):
            # A contract number is an int or a double as the producer wrote it (5000 or
            # 5000.0): its quotient and remainder are a double's, whichever it came as,
            # so that no event flips or breaks the rule by how it writes a number.
            on_num = _NUM_OPS[op]

            def num_arith(act: Mapping[str, Any]) -> float:
                return on_num(lf(act), rf(act), src, pos)

            # typed a contract number: it is a double, and ``%`` takes it again
            return _Code(num_arith, "num")
        apply = _ARITH[op]
        on_doubles = _DOUBLE_OPS.get(op)

        def arith(act: Mapping[str, Any]) -> Any:
            a = lf(act)
            b = rf(act)
            if on_doubles is not None and type(a) is float and type(b) is float:
                return on_doubles(a, b)
            return apply(a, b, src, pos)

        result = _mixed_type(lt, rt) if op != "%" else "int"
        return _Code(arith, result if result != "null" else "dyn")

    # -- functions

    def c_call(self, node: _Node, args: list[_Code]) -> _Code:
        name = node.value
        src = self.src
        pos = node.pos
        if name in ("min", "max"):
            if len(args) < 2:
                raise self.error(f"{name}() takes two or more arguments", node)
            for sub, code in zip(node.args, args, strict=True):
                self.expect_type(sub, code, ("int", "double"), f"argument of {name}()")
            fns = tuple(a.fn for a in args)
            pick = min if name == "min" else max

            def extreme(act: Mapping[str, Any]) -> Any:
                values = [f(act) for f in fns]
                nan = False
                for v in values:
                    if type(v) is not int and type(v) is not float:
                        raise _fail(f"{name}() needs numbers, got {_type_name(v)}", src, pos)
                    nan = nan or v != v
                # NaN orders with nothing: Python's min and max would keep or drop it by
                # where it stands among the arguments
                return math.nan if nan else pick(values)

            types = {a.type for a in args}
            return _Code(extreme, types.pop() if len(types) == 1 else "dyn")
        if len(args) != 1:
            raise self.error(f"{name}() takes one argument", node)
        (arg,) = args
        fn = arg.fn
        convert = _CONVERSIONS[name]
        expected = {"size": ("string", "list", "map"), "abs": ("int", "double")}.get(name)
        if expected:
            self.expect_type(node.args[0], arg, expected, f"argument of {name}()")
        result = {"size": "int", "int": "int", "double": "double", "string": "string"}
        rtype = result.get(name, arg.type if arg.type in _NUM_TYPES else "dyn")
        return _Code(lambda act: convert(fn(act), src, pos), rtype)

    def c_method(self, node: _Node, args: list[_Code]) -> _Code:
        name = node.value
        receiver, *rest = args
        src = self.src
        pos = node.pos
        if name == "size":
            if rest:
                raise self.error("size() takes no argument as a method", node)
            self.expect_type(
                node.args[0], receiver, ("string", "list", "map"), "receiver of size()"
            )
            rf = receiver.fn
            return _Code(lambda act: _size(rf(act), src, pos), "int")
        if len(rest) != 1:
            raise self.error(f"{name}() takes one argument", node)
        (arg,) = rest
        self.expect_type(node.args[0], receiver, ("string",), f"receiver of {name}()")
        self.expect_type(node.args[1], arg, ("string",), f"argument of {name}()")
        rf, af = receiver.fn, arg.fn
        if name == "matches":
            # A pattern is part of the rule, checked and compiled once: a pattern taken
            # from the event would let whoever writes events choose what the worker
            # compiles and runs.
            if type(arg.const) is not str:
                raise self.error("the pattern of matches() must be a string literal", node)
            try:
                pattern = _regex(arg.const)
            except ValueError as exc:
                raise self.error(f"bad regular expression ({exc})", node.args[1]) from None
            meter = self.meter
            self.metered = True
            return _Code(lambda act: _matches(rf(act), pattern, meter, src, pos), "bool")
        test = _STRING_TESTS[name]

        def string_test(act: Mapping[str, Any]) -> bool:
            s = rf(act)
            x = af(act)
            if type(s) is str and type(x) is str:
                return test(s, x)
            if s is None:
                return False
            raise _fail(
                f"{name}() needs strings, got {_type_name(s)} and {_type_name(x)}", src, pos
            )

        return _Code(string_test, "bool")

    def expect_type(self, node: _Node, code: _Code, allowed: tuple[str, ...], what: str) -> None:
        if code.type == "num" and ("int" in allowed or "double" in allowed):
            return
        if code.type != "dyn" and code.type not in allowed:
            raise self.error(f"{what} is a {code.type}, expected {' or '.join(allowed)}", node)


def _lt(a: Any, b: Any) -> bool:
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return bool(a <= b)


def _gt(a: Any, b: Any) -> bool:
    return bool(a > b)


def _ge(a: Any, b: Any) -> bool:
    return bool(a >= b)


def _field_of(node: _Node) -> tuple[str, str] | None:
    """``(root, key)`` when ``node`` reads a field of ``event`` or ``features`` directly."""
    if node.kind == "select" and node.args[0].kind == "ident":
        return node.args[0].value, node.value
    return None


def _order_const(
    op: str, lf: Evaluator, c: float, field: tuple[str, str] | None, src: _Source, pos: int
) -> Evaluator:
    """``x < 3`` and friends, the most common test: one closure, no helper calls.

    When ``x`` is a field of a root map, the field is read inline as well.
    """

    def bad(v: Any) -> bool:
        if v is None:
            return False
        raise _fail(f"cannot compare {_type_name(v)} {op} {_type_name(c)}", src, pos)

    if field is not None:
        root, key = field

        def lt_field(act: Mapping[str, Any]) -> bool:
            m = act[root]
            v: Any = m.get(key) if type(m) is dict else _select(m, key)
            t = type(v)
            return v < c if t is float or t is int else bad(v)

        def le_field(act: Mapping[str, Any]) -> bool:
            m = act[root]
            v: Any = m.get(key) if type(m) is dict else _select(m, key)
            t = type(v)
            return v <= c if t is float or t is int else bad(v)

        def gt_field(act: Mapping[str, Any]) -> bool:
            m = act[root]
            v: Any = m.get(key) if type(m) is dict else _select(m, key)
            t = type(v)
            return v > c if t is float or t is int else bad(v)

        def ge_field(act: Mapping[str, Any]) -> bool:
            m = act[root]
            v: Any = m.get(key) if type(m) is dict else _select(m, key)
            t = type(v)
            return v >= c if t is float or t is int else bad(v)

        return {"<": lt_field, "<=": le_field, ">": gt_field, ">=": ge_field}[op]

    def lt(act: Mapping[str, Any]) -> bool:
        v: Any = lf(act)
        t = type(v)
        return v < c if t is float or t is int else bad(v)

    def le(act: Mapping[str, Any]) -> bool:
        v: Any = lf(act)
        t = type(v)
        return v <= c if t is float or t is int else bad(v)

    def gt(act: Mapping[str, Any]) -> bool:
        v: Any = lf(act)
        t = type(v)
        return v > c if t is float or t is int else bad(v)

    def ge(act: Mapping[str, Any]) -> bool:
        v: Any = lf(act)
        t = type(v)
        return v >= c if t is float or t is int else bad(v)

    return {"<": lt, "<=": le, ">": gt, ">=": ge}[op]


def _equal_const(
    c: str | float, negate: bool, lf: Evaluator, field: tuple[str, str] | None
) -> Evaluator:
    """``x == 'a'`` / ``x == 3`` (and ``!=``) without calling the general equality."""
    if type(c) is str:
        kinds: tuple[type, ...] = (str,)
    else:
        kinds = (int, float)
    if field is not None:
        root, key = field

        def eq_field(act: Mapping[str, Any]) -> bool:
            m = act[root]
            v = m.get(key) if type(m) is dict else _select(m, key)
            return (type(v) in kinds and v == c) is not negate

        return eq_field

    def eq(act: Mapping[str, Any]) -> bool:
        v = lf(act)
        return (type(v) in kinds and v == c) is not negate

    return eq


def _in_strings(item: Any, strings: frozenset[str]) -> bool:
    return type(item) is str and item in strings


def _in_numbers(item: Any, numbers: frozenset[float]) -> bool:
    t = type(item)
    return (t is int or t is float) and item in numbers


def _numbers(a: Any, b: Any, op: str, src: _Source, pos: int) -> bool:
    """True for two ints, False for an int/double mix; raises for anything else."""
    ta = type(a)
    tb = type(b)
    if ta is int and tb is int:
        return True
    if (ta is int or ta is float) and (tb is int or tb is float):
        return False
    raise _fail(f"no operator {op!r} for {_type_name(a)} and {_type_name(b)}", src, pos)


def _add(a: Any, b: Any, src: _Source, pos: int) -> Any:
    ta = type(a)
    if (ta is str and type(b) is str) or ((ta is list or ta is tuple) and type(b) in (list, tuple)):
        if len(a) + len(b) > MAX_CONCAT:
            raise _fail(f"'+' would make a {_type_name(a)} longer than {MAX_CONCAT}", src, pos)
        return a + b if ta is str else [*a, *b]
    if _numbers(a, b, "+", src, pos):
        return _check_int(a + b, src, pos)
    return float(a) + float(b)


def _sub(a: Any, b: Any, src: _Source, pos: int) -> Any:
    if _numbers(a, b, "-", src, pos):
        return _check_int(a - b, src, pos)
    return float(a) - float(b)


def _mul(a: Any, b: Any, src: _Source, pos: int) -> Any:
    if _numbers(a, b, "*", src, pos):
        return _check_int(a * b, src, pos)
    return float(a) * float(b)


def _div(a: Any, b: Any, src: _Source, pos: int) -> Any:
    if _numbers(a, b, "/", src, pos):
        if b == 0:
            raise _fail("division by zero", src, pos)
        q = abs(a) // abs(b)
        return _check_int(-q if (a < 0) != (b < 0) else q, src, pos)
    x, y = float(a), float(b)
    if y == 0.0:
        if x == 0.0 or x != x:
            return math.nan
        return math.copysign(math.inf, x) * math.copysign(1.0, y)
    return x / y


def _mod(a: Any, b: Any, src: _Source, pos: int) -> Any:
    if type(a) is not int or type(b) is not int:
        raise _fail(f"no operator '%' for {_type_name(a)} and {_type_name(b)}", src, pos)
    if b == 0:
        raise _fail("modulo by zero", src, pos)
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def _num_div(a: Any, b: Any, src: _Source, pos: int) -> float:
    """``/`` with a contract number: as doubles (an int operand too)."""
    if type(a) is int or type(b) is int:
        _numbers(a, b, "/", src, pos)  # raises unless both are numbers
        return float(_div(float(a), float(b), src, pos))
    return float(_div(a, b, src, pos))


def _num_mod(a: Any, b: Any, src: _Source, pos: int) -> float:
    """``%`` with a contract number: the remainder of doubles, with the sign of ``a``
    (as ints have it: ``-7 % 3`` is ``-1``); ``nan`` for a zero divisor, as a double's
    quotient by zero is not an error either."""
    _numbers(a, b, "%", src, pos)  # raises unless both are numbers
    x, y = float(a), float(b)
    if y == 0.0 or x != x or y != y or x in (math.inf, -math.inf):
        return math.nan
    return math.fmod(x, y)


_NUM_OPS: dict[str, Callable[[Any, Any, _Source, int], float]] = {"/": _num_div, "%": _num_mod}
_DOUBLE_OPS: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}
_ARITH: dict[str, Callable[[Any, Any, _Source, int], Any]] = {
    "+": _add,
    "-": _sub,
    "*": _mul,
    "/": _div,
    "%": _mod,
}


def _size(v: Any, src: _Source, pos: int) -> int:
    if type(v) in (str, list, tuple, dict) or _is_map(v):
        return len(v)
    raise _fail(f"size() needs a string, list or map, got {_type_name(v)}", src, pos)


def _to_int(v: Any, src: _Source, pos: int) -> int:
    t = type(v)
    if t is int:
        return v
    if t is float:
        if not math.isfinite(v):
            raise _fail(f"int() of {_double_text(v)}", src, pos)
        return _check_int(int(v), src, pos)
    if t is str and _INT_TEXT.fullmatch(v):
        return _check_int(int(v), src, pos)
    raise _fail(f"int() cannot convert {_describe(v)}", src, pos)


def _to_double(v: Any, src: _Source, pos: int) -> float:
    t = type(v)
    if t is float or t is int:
        return float(v)
    if t is str and _DOUBLE_TEXT.fullmatch(v):
        return float(v)
    raise _fail(f"double() cannot convert {_describe(v)}", src, pos)


def _to_string(v: Any, src: _Source, pos: int) -> str:
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is float:
        return _double_text(v)
    raise _fail(f"string() cannot convert {_type_name(v)}", src, pos)


def _abs(v: Any, src: _Source, pos: int) -> Any:
    t = type(v)
    if t is int:
        return _check_int(abs(v), src, pos)
    if t is float:
        return abs(v)
    raise _fail(f"abs() needs a number, got {_type_name(v)}", src, pos)


_CONVERSIONS: dict[str, Callable[[Any, _Source, int], Any]] = {
    "size": _size,
    "int": _to_int,
    "double": _to_double,
    "string": _to_string,
    "abs": _abs,
}
_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    "startsWith": str.startswith,
    "endsWith": str.endswith,
    "contains": str.__contains__,
}


def _matches(s: Any, pattern: Any, meter: list[int], src: _Source, pos: int) -> bool:
    """``s.matches(pattern)``, spending for each character of ``s`` a step per instruction
    of the pattern and :data:`CHAR_STEPS`."""
    if s is None:
        return False
    if type(s) is not str:
        raise _fail(f"matches() needs a string, got {_type_name(s)}", src, pos)
    _spend(meter, len(s) * (_program_size(pattern) + CHAR_STEPS), src, pos)
    return bool(pattern.search(s) is not None)


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled condition.

    ``fn(activation)`` is the raw closure (fast; may raise any exception on bad input);
    :meth:`evaluate` wraps every failure in :class:`RuleEvalError`. ``features`` are the
    feature names read, ``event_fields`` the top-level event fields read; ``event_kinds``
    is, when the condition requires
    ``event.kind == ...`` (or ``event.kind in [...]``) as a top-level conjunct, the set
    of kinds it can be true for, else None.
    """

    source: str
    fn: Evaluator = field(repr=False, compare=False)
    result_type: str = "dyn"
    features: frozenset[str] = frozenset()
    event_fields: frozenset[str] = frozenset()
    event_kinds: frozenset[str] | None = None

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        try:
            return self.fn(activation)
        except RuleEvalError:
            raise
        except Exception as exc:  # its text may quote the event's values: not kept
            raise RuleEvalError(f"{type(exc).__name__} while evaluating") from exc


def compile_expr(
    source: str,
    *,
    known_features: Collection[str] | None = None,
    name: str | None = None,
    event_types: Mapping[str, str] | None = None,
    feature_types: Mapping[str, str] | None = None,
) -> Expression:
    """Parse, check and compile ``source``; raises :class:`CompileError`.

    ``known_features``: when given, ``features.<name>`` must be one of them.
    ``name``: the rule id, for messages.
    ``event_types``: the type of ``event.<field>`` for the fields the contract says
    (``"string"``, ``"num"`` for a JSON number, ``"int"``, ``"bool"``), so that comparing
    or adding values of types that never go together fails here rather than on an event.
    ``feature_types``: the same for ``features.<name>`` (``"int"`` for a count,
    ``"double"`` otherwise: :data:`rules.features.FEATURE_TYPES`).

    >>> compile_expr("event.amount > 'abc'", event_types={"amount": "num"})
    Traceback (most recent call last):
    ...
    rules.expr.CompileError: cannot compare num > string at column 14
    >>> compile_expr("features.outflow_share % 2 == 1", feature_types={"outflow_share": "double"})
    Traceback (most recent call last):
    ...
    rules.expr.CompileError: no operator '%' for double and int at column 24
    """
    if not isinstance(source, str):
        raise CompileError(f"expression must be a string, got {type(source).__name__}", rule=name)
    if len(source) > MAX_LENGTH:
        raise CompileError(f"expression longer than {MAX_LENGTH} characters", rule=name)
    if not source.strip():
        raise CompileError("empty expression", rule=name)
    src = _Source(source, name)
    tree = _Parser(src, _tokenize(src)).parse()
    known = frozenset(known_features) if known_features is not None else None
    compiler = _Compiler(src, known, event_types, feature_types)
    code = compiler.compile(tree)
    fn = code.fn
    if compiler.metered and code.const is _NO_CONST:
        fn = _metered(fn, compiler.meter)
    return Expression(
        source=source,
        fn=fn,
        result_type=code.type,
        features=frozenset(compiler.features),
        event_fields=frozenset(compiler.event_fields),
        event_kinds=_kind_guard(tree),
    )


def _metered(fn: Evaluator, meter: list[int]) -> Evaluator:
    """``fn`` with :data:`MAX_STEPS` to spend on each evaluation."""

    def run(act: Mapping[str, Any]) -> Any:
        meter[0] = MAX_STEPS
        return fn(act)

    return run


def evaluate(
    source: str, activation: Mapping[str, Any], known_features: Collection[str] | None = None
) -> Any:
    """Compile and evaluate once (for tests and the REPL; rules compile once and reuse)."""
    return compile_expr(source, known_features=known_features).evaluate(activation)


def _kind_guard(tree: _Node) -> frozenset[str] | None:
    """Kinds of event a top-level ``event.kind == 'x'`` / ``in [...]`` conjunct allows."""
    kinds: frozenset[str] | None = None
    for term in tree.args if tree.kind == "and" else (tree,):
        if term.kind != "binary" or term.value not in ("==", "in"):
            continue
        left, right = term.args
        if term.value == "==" and _is_event_kind(right):
            left, right = right, left
        if not _is_event_kind(left):
            continue
        if right.kind == "const" and type(right.value) is str:
            allowed = frozenset({right.value})
        elif (
            term.value == "in"
            and right.kind == "list"
            and all(x.kind == "const" and type(x.value) is str for x in right.args)
        ):
            allowed = frozenset(x.value for x in right.args)
        else:
            continue
        kinds = allowed if kinds is None else kinds & allowed
    return kinds


def _is_event_kind(node: _Node) -> bool:
    if node.kind == "select":
        target, key = node.args[0], node.value
    elif node.kind == "index" and node.args[1].kind == "const":
        target, key = node.args[0], node.args[1].value
    else:
        return False
    return target.kind == "ident" and target.value == "event" and key == "kind"
