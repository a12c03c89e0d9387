"""The rule engine: versioned rules, compiled once, evaluated on every event.

Rules are data (YAML files, messages on the ``risk.rules`` control stream); operators
are code (:mod:`rules.expr`). A :class:`RuleSet` is an immutable snapshot holding the
newest version of each rule, indexed by event type and, when a rule requires it, by
``event.kind``. Changing rules returns a new snapshot, so a worker swaps one reference.

>>> rules = RuleSet.from_dicts([
...     {"rule_id": "fast_cashout", "version": 2, "applies_to": ["transaction"],
...      "when": "event.kind == 'withdrawal' && features.minutes_since_disbursement < 30",
...      "score": 0.7, "action": "decline", "reason": "cash moved out right after payout",
...      "enabled": True},
... ], known_features={"minutes_since_disbursement"})
>>> ev = rules.evaluate("transaction", {"kind": "withdrawal"}, {"minutes_since_disbursement": 4})
>>> ev.outcome, ev.score, ev.rule_ids
(<Outcome.DECLINE: 2>, 0.7, ['fast_cashout'])
>>> ev.reasons[0]["code"], ev.reasons[0]["value"]
('rule:fast_cashout', 2)
>>> rules.evaluate("transaction", {"kind": "repayment"}, {}).evaluated
0

A newer version replaces a rule; an older or equal one is ignored:

>>> newer, change = rules.apply({"rule_id": "fast_cashout", "version": 3, "enabled": False,
...                              "applies_to": ["transaction"], "when": "true"})
>>> change.kind, len(newer), len(rules)
('retired', 0, 1)
>>> newer.apply({"rule_id": "fast_cashout", "version": 2, "enabled": True,
...              "applies_to": ["transaction"], "when": "true"})[1].kind
'stale'
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import jsonschema_rs
import orjson
import yaml

from riskmon.personal import WITHHELD, clear_kind, has_digit_run
from rules.expr import CompileError, Expression, RuleEvalError, compile_expr
from rules.features import FEATURE_TYPES, KNOWN_FEATURES, LINK_IDENTIFIERS, never_carried

if TYPE_CHECKING:
    from riskmon.contract import Contract

__all__ = [
    "ACTION_OUTCOME",
    "HISTORY_DEPTH",
    "STARTER_RULES_DIR",
    "Action",
    "Change",
    "Evaluation",
    "Hit",
    "Mode",
    "Outcome",
    "Rule",
    "RuleError",
    "RuleFailure",
    "RuleSet",
    "RuleStats",
    "Severity",
    "load_rule",
    "load_rules_dir",
    "load_starter_rules",
]

STARTER_RULES_DIR = Path(__file__).resolve().parent / "lending"
HISTORY_DEPTH = 5
"""Compiled versions kept per rule id, for :meth:`RuleSet.revert`."""


class Outcome(IntEnum):
    """What a hit asks for; the most severe outcome of an event wins."""

    PASS = 0
    REVIEW = 1
    DECLINE = 2

    @property
    def label(self) -> str:
        """The decision contract's spelling: ``pass``, ``review``, ``decline``."""
        return self.name.lower()


class Severity(IntEnum):
    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class Action(StrEnum):
    NONE = "none"
    REVIEW = "review"
    DECLINE = "decline"
    REDUCE_LIMIT = "reduce_limit"
    FREEZE = "freeze"


class Mode(StrEnum):
    ACTIVE = "active"
    SHADOW = "shadow"
    """Evaluated and counted, never acted on."""


ACTION_OUTCOME: Mapping[Action, Outcome] = MappingProxyType(
    {
        Action.NONE: Outcome.PASS,
        Action.REVIEW: Outcome.REVIEW,
        Action.DECLINE: Outcome.DECLINE,
        Action.REDUCE_LIMIT: Outcome.REVIEW,
        Action.FREEZE: Outcome.DECLINE,
    }
)


class RuleError(ValueError):
    """A rule definition is invalid: schema, expression or file layout."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One version of one rule, with its compiled condition.

    ``predicate`` is None only for a retired rule (``enabled: false``), which is kept
    to remember its version but never compiled nor evaluated. ``definition`` is the
    mapping as received, for audit and dead-lettering.
    """

    rule_id: str
    version: int
    applies_to: frozenset[str]
    when: str
    score: float = 0.5
    severity: Severity = Severity.MEDIUM
    action: Action = Action.REVIEW
    mode: Mode = Mode.ACTIVE
    reason: str = ""
    enabled: bool = True
    author: str = ""
    predicate: Expression | None = field(default=None, compare=False, repr=False)
    definition: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )

    @property
    def outcome(self) -> Outcome:
        return ACTION_OUTCOME[self.action]

    @property
    def shadow(self) -> bool:
        return self.mode is Mode.SHADOW

    def matches(self, event: Mapping[str, Any], features: Mapping[str, Any]) -> bool:
        """Evaluate the condition on one event; raises :class:`rules.expr.RuleEvalError`."""
        if self.predicate is None:
            return False
        result = self.predicate.evaluate({"event": event, "features": features})
        if type(result) is not bool:
            raise RuleEvalError(f"rule {self.rule_id!r}: condition gave {type(result).__name__}")
        return result


# --------------------------------------------------------------------------- loading


@functools.cache
def default_contract() -> Contract:
    """The contract this package ships with (``config/contract``), for rules checked
    without a deployment's own (:meth:`riskmon.contract.Contract.for_settings`)."""
    from riskmon.contract import Contract

    return Contract.load()


#: how a message names a type of the expression language
_TYPE_WORDS = {"num": "number"}
#: the expression language's name of each JSON Schema type of a contract field
_SCHEMA_TYPES = {"string": "string", "number": "num", "integer": "int", "boolean": "bool"}


@functools.cache
def event_types(applies_to: frozenset[str], contract: Contract | None = None) -> dict[str, str]:
    """The type of each field of ``contract``'s events of ``applies_to`` (by default
    :func:`default_contract`'s), for the checks of a condition: the fields that every one
    of those event types has, of one scalar type (a field that may be null, an object, or
    one some types lack is left unknown).

    >>> t = event_types(frozenset({"transaction"}))
    >>> t["amount"], t["kind"], "geo" in t
    ('num', 'string', False)
    >>> "amount" in event_types(frozenset({"transaction", "device"}))
    False
    """
    if not applies_to:
        return {}
    contract = contract or default_contract()
    first, *rest = [_field_types(etype, contract) for etype in sorted(applies_to)]
    return {k: v for k, v in first.items() if all(t.get(k) == v for t in rest)}


@functools.cache
def _field_types(etype: str, contract: Contract) -> dict[str, str]:
    """The scalar fields of the contract's events of type ``etype``, by type."""
    schema = contract.schemas.get(etype, {})
    types = {}
    for name, spec in schema.get("properties", {}).items():
        kind = spec.get("type")
        if kind is None and spec.get("enum") and all(type(v) is str for v in spec["enum"]):
            kind = "string"
        if isinstance(kind, str) and kind in _SCHEMA_TYPES:
            types[name] = _SCHEMA_TYPES[kind]
    return types


def _validator(schema: Mapping[str, Any] | None, contract: Contract | None) -> Any:
    if schema is None:
        return (contract or default_contract()).validator("rule")
    return jsonschema_rs.validator_for(dict(schema))


def _label(data: Any) -> str:
    rule_id = data.get("rule_id") if isinstance(data, Mapping) else None
    version = data.get("version") if isinstance(data, Mapping) else None
    if isinstance(rule_id, str) and _personal(rule_id):
        rule_id = WITHHELD
    name = repr(rule_id) if isinstance(rule_id, str) else "(no rule_id)"
    return f"rule {name} v{version}" if isinstance(version, int) else f"rule {name}"


#: a string literal in a condition
_LITERAL = re.compile(r"'([^'\\]*(?:\\.[^'\\]*)*)'|\"([^\"\\]*(?:\\.[^\"\\]*)*)\"")


def _personal(value: str) -> bool:
    """Whether ``value`` may hold a phone, identity or card number in clear."""
    return clear_kind(value) is not None or has_digit_run(value)


def _clear_fields(data: Mapping[str, Any]) -> list[str]:
    """The fields of a rule that may hold a phone, identity or card number in clear: its
    strings (id, reason, author, ...) and its condition, in a string literal or anywhere
    else in its text (a number, a field's name), which the messages about a condition
    quote (an unexpected token, a note on a field the contract does not have). A rule
    travels in logs, metrics labels, decisions, alerts and profiles: none may carry one.

    >>> _clear_fields({"rule_id": "blk", "when": "event.x == '13812345678'", "reason": "ok"})
    ['when']
    >>> _clear_fields({"rule_id": "r-13812345678", "applies_to": ["device"], "reason": "x"})
    ['rule_id']
    >>> [_clear_fields({"when": w}) for w in ("event.x == 13812345678", "event.x_13812345678")]
    [['when'], ['when']]
    """
    found = []
    for key, value in data.items():
        if key == "when" and isinstance(value, str):
            literals = [a or b for a, b in _LITERAL.findall(value)]
            if has_digit_run(value) or any(_personal(text) for text in literals):
                found.append(key)
        else:
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, str) and _personal(v) for v in values):
                found.append(str(key))
    return sorted(found)


def _validate(
    data: Any, schema: Mapping[str, Any] | None, contract: Contract | None = None
) -> None:
    if not isinstance(data, Mapping):
        raise RuleError(f"a rule must be a mapping, got {type(data).__name__}")
    clear = _clear_fields(data)
    if clear:  # before any message that could quote the value
        raise RuleError(
            f"{_label(data)}: {', '.join(clear)} may hold a phone, identity or card number in "
            "clear (withheld: personal data); rules travel in logs, metrics and outputs, "
            "so compare hashes (*_hash fields) instead"
        )
    problems = []
    for err in _validator(schema, contract).iter_errors(dict(data)):
        where = "/".join(str(p) for p in err.instance_path) or "(rule)"
        problems.append(f"{where}: {err.message}")
    version = data.get("version")
    if type(version) is float:  # JSON Schema's integer takes 2.0 too
        write = f" (write {int(version)})" if version.is_integer() else ""
        problems.append(f"version: {version!r} is not an integer{write}")
    if problems:
        raise RuleError(f"{_label(data)}: " + "; ".join(sorted(problems)))


def _build(
    data: Mapping[str, Any],
    known_features: Collection[str] | None,
    contract: Contract | None = None,
) -> Rule:
    rule_id = str(data["rule_id"])
    enabled = bool(data["enabled"])
    predicate = None
    if enabled:
        try:
            predicate = compile_expr(
                data["when"],
                known_features=known_features,
                name=rule_id,
                event_types=event_types(frozenset(data["applies_to"]), contract),
                feature_types=FEATURE_TYPES,
            )
        except CompileError as exc:
            raise RuleError(f"{_label(data)}: {exc.reason}") from exc
        if predicate.result_type not in ("bool", "dyn"):
            raise RuleError(
                f"{_label(data)}: condition must be true or false, "
                f"this one gives a {_TYPE_WORDS.get(predicate.result_type, predicate.result_type)}"
            )
    return Rule(
        rule_id=rule_id,
        version=int(data["version"]),
        applies_to=frozenset(data["applies_to"]),
        when=data["when"],
        score=float(data.get("score", 0.5)),
        severity=Severity[str(data.get("severity", "medium")).upper()],
        action=Action(data.get("action", "review")),
        mode=Mode(data.get("mode", "active")),
        reason=str(data.get("reason", "")),
        enabled=enabled,
        author=str(data.get("author", "")),
        predicate=predicate,
        definition=MappingProxyType(dict(data)),
    )


def rule_notes(data: Mapping[str, Any], contract: Contract | None = None) -> list[str]:
    """What a valid rule may not do as its author meant, in words: it reads features of
    an identifier that no event of its ``applies_to`` carries (always 0 there, so a
    comparison on them holds for every event or for none), or an event field the
    contract does not give those events (a producer's own, or a misspelling, absent from
    every event). Not an error: an ``||`` may rest on its other branches, producers may
    send fields of their own, and a rule already in force keeps working.

    >>> rule_notes({"rule_id": "r", "version": 1, "applies_to": ["application"],
    ...             "when": "features.wifi_users_24h >= 4 || features.ip_users_1h >= 4"})
    ['features.wifi_users_24h is 0 on every application event (they carry no Wi-Fi network)']
    >>> rule_notes({"rule_id": "r", "version": 1, "applies_to": ["device"],
    ...             "when": "features.wifi_users_24h >= 4"})
    []
    >>> rule_notes({"rule_id": "r", "version": 1, "applies_to": ["transaction"],
    ...             "when": "event.ammount >= 5000"})  # doctest: +NORMALIZE_WHITESPACE
    ["event.ammount is no field of transaction events in the contract (a producer's own
    field, or a misspelling; did you mean 'amount'?)"]
    """
    if not data.get("enabled", True):
        return []
    try:
        expr = compile_expr(data["when"], name=str(data.get("rule_id", "")))
    except CompileError:
        return []
    notes = []
    types = " or ".join(sorted(data["applies_to"]))
    dead = never_carried(expr.features, data["applies_to"])
    if dead:
        kinds = ", ".join(sorted({LINK_IDENTIFIERS[f.split("_", 1)[0]] for f in dead}))
        notes.append(
            f"{', '.join(f'features.{f}' for f in dead)} is 0 on every {types} event "
            f"(they carry no {kinds})"
        )
    schemas = (contract or default_contract()).schemas
    fields: set[str] = set()
    for etype in data["applies_to"]:
        fields.update(schemas.get(etype, {}).get("properties", {}))
    for name in sorted(expr.event_fields - fields):
        close = difflib.get_close_matches(name, sorted(fields), n=1, cutoff=0.6)
        like = f"; did you mean {close[0]!r}?" if close else ""
        notes.append(
            f"event.{name} is no field of {types} events in the contract (a producer's "
            f"own field, or a misspelling{like})"
        )
    return notes


def load_rule(
    data: Mapping[str, Any],
    known_features: Collection[str] | None = None,
    *,
    schema: Mapping[str, Any] | None = None,
    contract: Contract | None = None,
) -> Rule:
    """Validate ``data`` against the contract's rule schema and compile its condition.

    ``known_features``: when given, the condition may only read these features.
    ``contract``: the event contract (:class:`riskmon.contract.Contract`) whose rule
    schema checks the rule and whose field types check the condition; by default
    :func:`default_contract`. ``schema``: another rule JSON schema, instead of the
    contract's.
    A retired rule (``enabled: false``) is validated but not compiled.

    >>> rule = load_rule({"rule_id": "r1", "version": 1, "applies_to": ["device"],
    ...                   "when": "features.is_rooted == 1", "enabled": True})
    >>> rule.score, rule.severity.label, rule.action.value, rule.mode.value, rule.outcome.label
    (0.5, 'medium', 'review', 'active', 'review')
    >>> try:
    ...     load_rule({"rule_id": "r1", "version": 0, "applies_to": ["device"],
    ...                "when": "features.is_rooted == 1", "enabled": True})
    ... except RuleError as err:
    ...     print(err)
    rule 'r1' v0: version: 0 is less than the minimum of 1
    """
    _validate(data, schema, contract)
    return _build(data, known_features, contract)


def load_rules_dir(
    path: str | Path,
    known_features: Collection[str] | None = None,
    *,
    schema: Mapping[str, Any] | None = None,
    contract: Contract | None = None,
) -> list[dict[str, Any]]:
    """Read every ``*.yaml`` file of ``path`` (sorted by name) and check each rule.

    A file holds a list of rules or a mapping with a ``rules:`` list. Every rule is
    validated and compiled here, so an error names its file and rule id. Returns the
    rule mappings, in file order.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise RuleError(f"{folder}: not a directory")
    files = sorted(folder.glob("*.yaml"))
    checked = load_rule_files(files, known_features, schema=schema, contract=contract)
    return [rule for _, rule in checked]


def load_rule_files(
    files: Iterable[Path],
    known_features: Collection[str] | None = None,
    *,
    schema: Mapping[str, Any] | None = None,
    contract: Contract | None = None,
    name: Callable[[Path], str] = lambda file: file.name,
) -> list[tuple[Path, dict[str, Any]]]:
    """Every rule of ``files`` with its file, in order, each validated and compiled; a rule
    id and version defined twice is an error. Errors name the file (``name(file)``) and
    the rule."""
    out: list[tuple[Path, dict[str, Any]]] = []
    origin: dict[tuple[str, int], str] = {}
    for file in files:
        for data in read_rules_file(file):
            try:
                rule = load_rule(data, known_features, schema=schema, contract=contract)
            except RuleError as exc:
                raise RuleError(f"{name(file)}: {exc}") from exc
            key = (rule.rule_id, rule.version)
            if key in origin:
                raise RuleError(
                    f"{name(file)}: rule {rule.rule_id!r} v{rule.version} "
                    f"is also defined in {origin[key]}"
                )
            origin[key] = name(file)
            out.append((file, dict(data)))
    return out


#: the largest rule file read, in bytes
MAX_RULES_FILE = 1 << 20
#: the deepest a value of a rule file may be nested (a rule needs 3: the list of rules,
#: a rule, its ``applies_to``); the reader recurses once per level and a few hundred
#: levels, a kilobyte of brackets, exhaust Python's stack
MAX_RULES_FILE_DEPTH = 32


class _RulesLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases: ``*name`` repeats what ``&name`` marked, so a
    file of a few lines can stand for billions of values (a "billion laughs"); and
    without values nested deeper than :data:`MAX_RULES_FILE_DEPTH`."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in rule files", mark
            )
        if self.depth >= MAX_RULES_FILE_DEPTH:
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, f"a value is nested deeper than {MAX_RULES_FILE_DEPTH}", mark
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """A mapping, where YAML would let a later key replace an earlier one silently
        (a second ``when:`` in a rule, unseen by whoever reads the first)."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                twice = key in seen
            except TypeError:  # not hashable: the safe loader refuses it below
                continue
            if twice:
                name = WITHHELD if isinstance(key, str) and _personal(key) else repr(key)
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {name} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_rules_file(file: Path) -> list[Mapping[str, Any]]:
    """The rule mappings of one YAML file (a list, or a mapping with a ``rules:`` list),
    unchecked; :class:`RuleError` if the file is not such YAML, holds aliases, or is
    larger than :data:`MAX_RULES_FILE`."""
    text = file.read_text(encoding="utf-8")
    if len(text) > MAX_RULES_FILE:
        raise RuleError(f"{file.name}: {len(text)} characters, at most {MAX_RULES_FILE}")
    try:
        loaded = yaml.load(text, Loader=_RulesLoader)  # a SafeLoader, without aliases
    except yaml.YAMLError as exc:
        raise RuleError(f"{file.name}: invalid YAML: {exc}") from exc
    if loaded is None:
        return []
    if isinstance(loaded, Mapping) and "rules" in loaded:
        loaded = loaded["rules"]
    if not isinstance(loaded, list):
        raise RuleError(f"{file.name}: expected a list of rules or a mapping with 'rules:'")
    for i, item in enumerate(loaded):
        if not isinstance(item, Mapping):
            raise RuleError(f"{file.name}: rule #{i + 1} is a {type(item).__name__}, not a mapping")
    # as JSON, as the rules topic carries them: an unquoted date (``reason: 2024-05-01``)
    # is its text, a key that is a number its digits; what JSON cannot hold is an error
    try:
        as_json: list[Mapping[str, Any]] = orjson.loads(
            orjson.dumps(loaded, option=orjson.OPT_NON_STR_KEYS)
        )
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise RuleError(f"{file.name}: a value JSON cannot hold ({exc})") from None
    return as_json


# --------------------------------------------------------------------------- evaluation


class Hit(NamedTuple):
    """A rule that matched an event."""

    rule: Rule

    @property
    def rule_id(self) -> str:
        return self.rule.rule_id

    @property
    def version(self) -> int:
        return self.rule.version


class RuleFailure(NamedTuple):
    """A rule whose condition could not be evaluated on an event: ``(rule_id, message)``.

    The version that failed is the one in force: ``ruleset.get(rule_id).version``.
    """

    rule_id: str
    message: str


class Evaluation(NamedTuple):
    """The rules' verdict on one event (a tuple: cheap to build on every event).

    ``hits``: active rules that matched; ``shadow_hits``: shadow rules that matched
    (never acted on); ``errors``: ``(rule_id, message)`` of rules that failed on this
    event; ``evaluated``: how many rules the index let through.
    """

    hits: tuple[Hit, ...] = ()
    shadow_hits: tuple[Hit, ...] = ()
    errors: tuple[RuleFailure, ...] = ()
    evaluated: int = 0

    @property
    def outcome(self) -> Outcome:
        """The most severe outcome among active hits; PASS when none."""
        return max((h.rule.outcome for h in self.hits), default=Outcome.PASS)

    @property
    def score(self) -> float:
        """Noisy-or of the active hits' scores: ``1 - prod(1 - score_i)``."""
        if len(self.hits) <= 1:
            return self.hits[0].rule.score if self.hits else 0.0
        return 1.0 - math.prod(1.0 - h.rule.score for h in self.hits)

    @property
    def severity(self) -> Severity | None:
        """The highest severity among active hits; None when none."""
        return max((h.rule.severity for h in self.hits), default=None)

    @property
    def reasons(self) -> list[dict[str, Any]]:
        """One reason per active hit, highest score first (decision contract form)."""
        ordered = sorted(
            (h.rule for h in self.hits), key=lambda r: (-r.score, -r.severity, r.rule_id)
        )
        return [
            {"code": f"rule:{r.rule_id}", "detail": r.reason, "value": r.version} for r in ordered
        ]

    @property
    def rule_ids(self) -> list[str]:
        """Ids of the active hits."""
        return [h.rule.rule_id for h in self.hits]


_NOTHING = Evaluation()

ChangeKind = Literal["added", "updated", "retired", "stale"]


@dataclass(frozen=True, slots=True)
class Change:
    """What :meth:`RuleSet.apply` did with one rule message."""

    kind: ChangeKind
    rule_id: str
    version: int
    previous: int | None
    reason: str

    def __str__(self) -> str:
        return f"{self.kind} {self.rule_id} v{self.version}: {self.reason}"


_Entry = tuple[Rule, Any]  # (rule, its compiled closure)


class RuleSet:
    """Immutable snapshot of the rules in force: newest version per rule id.

    ``RuleSet(known_features)`` is empty; build with :meth:`from_dicts` or
    :meth:`from_dir`, change with :meth:`apply` and :meth:`revert` (each returns a new
    snapshot and leaves this one as it was).
    """

    __slots__ = ("_contract", "_history", "_index", "_known", "_schema", "_seen")

    def __init__(
        self,
        known_features: Collection[str] | None = None,
        *,
        schema: Mapping[str, Any] | None = None,
        contract: Contract | None = None,
    ):
        self._known = frozenset(known_features) if known_features is not None else None
        self._schema = schema
        self._contract = contract
        self._history: dict[str, tuple[Rule, ...]] = {}
        self._seen: dict[str, int] = {}
        self._index: dict[str, tuple[dict[str, tuple[_Entry, ...]], tuple[_Entry, ...]]] = {}

    # -- construction

    @classmethod
    def from_dicts(
        cls,
        dicts: Iterable[Mapping[str, Any]],
        known_features: Collection[str] | None = None,
        *,
        schema: Mapping[str, Any] | None = None,
        contract: Contract | None = None,
    ) -> RuleSet:
        """Build from rule mappings; any invalid rule raises :class:`RuleError`.

        Several versions of one id may be given: they are applied oldest first, so the
        newest is in force and the older ones are its history. ``contract`` and
        ``schema`` check these rules and every later one (see :func:`load_rule`).
        """
        items = list(dicts)
        for data in items:
            _validate(data, schema, contract)
        ruleset = cls(known_features, schema=schema, contract=contract)
        history: dict[str, list[Rule]] = {}
        for data in sorted(items, key=lambda d: (str(d["rule_id"]), int(d["version"]))):
            rule = _build(data, ruleset._known, contract)
            versions = history.setdefault(rule.rule_id, [])
            if versions and versions[-1].version == rule.version:
                raise RuleError(f"rule {rule.rule_id!r} v{rule.version} is given twice")
            versions.append(rule)
        return ruleset._replace(
            {rid: tuple(v[-HISTORY_DEPTH:]) for rid, v in history.items()},
            {rid: v[-1].version for rid, v in history.items()},
        )

    @classmethod
    def from_dir(
        cls,
        path: str | Path,
        known_features: Collection[str] | None = None,
        *,
        schema: Mapping[str, Any] | None = None,
        contract: Contract | None = None,
    ) -> RuleSet:
        """Build from the ``*.yaml`` files of a folder (see :func:`load_rules_dir`)."""
        dicts = load_rules_dir(path, known_features, schema=schema, contract=contract)
        return cls.from_dicts(dicts, known_features, schema=schema, contract=contract)

    def _replace(self, history: dict[str, tuple[Rule, ...]], seen: dict[str, int]) -> RuleSet:
        new = RuleSet.__new__(RuleSet)
        new._known = self._known
        new._schema = self._schema
        new._contract = self._contract
        new._history = history
        new._seen = seen
        new._index = _build_index(h[-1] for h in history.values())
        return new

    # -- changes

    def apply(self, data: Mapping[str, Any]) -> tuple[RuleSet, Change]:
        """Take in one rule from the control stream.

        A newer version replaces the rule in force (``enabled: false`` retires it); an
        older or equal version is ignored (change kind ``stale``) and this snapshot is
        returned. An invalid rule raises :class:`RuleError`: keep the old snapshot.
        """
        _validate(data, self._schema, self._contract)
        rule_id = str(data["rule_id"])
        version = int(data["version"])
        seen = self._seen.get(rule_id)
        current = self._history.get(rule_id, ())
        previous = current[-1] if current else None
        if seen is not None and version <= seen:
            reason = f"version {version} is not newer than version {seen}"
            return self, Change("stale", rule_id, version, seen, reason)
        rule = _build(data, self._known, self._contract)
        history = dict(self._history)
        history[rule_id] = (*current, rule)[-HISTORY_DEPTH:]
        seen_versions = {**self._seen, rule_id: version}
        kind: ChangeKind
        if not rule.enabled:
            kind, reason = "retired", "enabled is false"
        elif previous is not None and previous.enabled:
            kind, reason = "updated", f"replaces version {previous.version}"
        else:
            kind, reason = "added", "new rule" if previous is None else "enabled again"
        prev_version = previous.version if previous is not None else None
        return self._replace(history, seen_versions), Change(
            kind, rule_id, version, prev_version, reason
        )

    def revert(self, rule_id: str, version: int | None = None) -> RuleSet:
        """Put the previous kept version of ``rule_id`` back in force, or drop the rule.

        With ``version``, only when that version is the one in force (so several
        failures of one version revert it once). The reverted version stays "seen": a
        fix must come with a higher version.
        """
        versions = self._history.get(rule_id)
        if not versions or (version is not None and versions[-1].version != version):
            return self
        history = dict(self._history)
        if len(versions) > 1:
            history[rule_id] = versions[:-1]
        else:
            del history[rule_id]
        return self._replace(history, dict(self._seen))

    # -- reading

    def evaluate(
        self, event_type: str, event: Mapping[str, Any], features: Mapping[str, Any]
    ) -> Evaluation:
        """Run the rules that apply to this event type (and kind) on one event."""
        slot = self._index.get(event_type)
        if slot is None:
            return _NOTHING
        by_kind, entries = slot
        if by_kind:
            kind = event.get("kind")
            if type(kind) is str:
                entries = by_kind.get(kind, entries)
        if not entries:
            return _NOTHING
        activation = {"event": event, "features": features}
        hits: list[Hit] = []
        shadow: list[Hit] = []
        errors: list[RuleFailure] = []
        for rule, fn in entries:
            try:
                result = fn(activation)
            except Exception as exc:
                errors.append(RuleFailure(rule.rule_id, _describe(exc)))
                continue
            if result is False:
                continue
            if result is True:
                (shadow if rule.mode is Mode.SHADOW else hits).append(Hit(rule))
            else:
                message = f"condition gave {type(result).__name__}, expected bool"
                errors.append(RuleFailure(rule.rule_id, message))
        if not (hits or shadow or errors):
            return Evaluation((), (), (), len(entries))
        return Evaluation(tuple(hits), tuple(shadow), tuple(errors), len(entries))

    def rules_for(self, event_type: str, kind: str | None = None) -> tuple[Rule, ...]:
        """The rules :meth:`evaluate` runs for this event type and ``event.kind``."""
        slot = self._index.get(event_type)
        if slot is None:
            return ()
        by_kind, entries = slot
        if kind is not None:
            entries = by_kind.get(kind, entries)
        return tuple(rule for rule, _ in entries)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The enabled rules in force, by rule id."""
        return tuple(r for r in (h[-1] for h in self._sorted_history()) if r.enabled)

    def get(self, rule_id: str) -> Rule | None:
        """The version in force of ``rule_id`` (retired or not), None if unknown."""
        versions = self._history.get(rule_id)
        return versions[-1] if versions else None

    def history(self, rule_id: str) -> tuple[Rule, ...]:
        """Kept versions of ``rule_id``, oldest first; the last one is in force."""
        return self._history.get(rule_id, ())

    def versions(self) -> dict[str, int]:
        """Rule id -> version in force, retired rules included."""
        return {rid: h[-1].version for rid, h in self._sorted_history_items()}

    @property
    def known_features(self) -> frozenset[str] | None:
        return self._known

    def __len__(self) -> int:
        return sum(1 for h in self._history.values() if h[-1].enabled)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __contains__(self, rule_id: object) -> bool:
        """True when ``rule_id`` is in force (known and not retired)."""
        rule = self.get(rule_id) if isinstance(rule_id, str) else None
        return rule is not None and rule.enabled

    def __repr__(self) -> str:
        return f"RuleSet({len(self)} rules)"

    def _sorted_history(self) -> list[tuple[Rule, ...]]:
        return [h for _, h in self._sorted_history_items()]

    def _sorted_history_items(self) -> list[tuple[str, tuple[Rule, ...]]]:
        return sorted(self._history.items())


def _describe(exc: BaseException) -> str:
    """A failure's message: the expression language's own (which never quotes an event's
    values), or only the kind of any other failure (its text might)."""
    if isinstance(exc, RuleEvalError):
        return str(exc)
    return f"{type(exc).__name__} while evaluating the condition"


def _build_index(
    rules: Iterable[Rule],
) -> dict[str, tuple[dict[str, tuple[_Entry, ...]], tuple[_Entry, ...]]]:
    """event type -> (kind -> entries, entries for an event of any other kind)."""
    generic: dict[str, list[_Entry]] = {}
    by_kind: dict[str, dict[str, list[_Entry]]] = {}
    for rule in sorted(rules, key=lambda r: r.rule_id):
        if not rule.enabled or rule.predicate is None:
            continue
        entry = (rule, rule.predicate.fn)
        kinds = rule.predicate.event_kinds
        for event_type in rule.applies_to:
            generic.setdefault(event_type, [])
            kind_map = by_kind.setdefault(event_type, {})
            if kinds is None:
                generic[event_type].append(entry)
            else:
                for kind in kinds:
                    kind_map.setdefault(kind, []).append(entry)
    index: dict[str, tuple[dict[str, tuple[_Entry, ...]], tuple[_Entry, ...]]] = {}
    for event_type, entries in generic.items():
        merged = {
            kind: tuple(sorted([*entries, *specific], key=lambda e: e[0].rule_id))
            for kind, specific in by_kind[event_type].items()
        }
        index[event_type] = (merged, tuple(entries))
    return index


def load_starter_rules(path: str | Path = STARTER_RULES_DIR) -> RuleSet:
    """The starter rule set of this package, compiled against the feature catalogue."""
    return RuleSet.from_dir(path, KNOWN_FEATURES)


# --------------------------------------------------------------------------- counters


class RuleStats:
    """Counters over evaluations, pure Python; the stream shell mirrors them.

    ``hits`` counts matches per ``(rule_id, version, mode)``; ``errors`` failures per
    ``rule_id``; ``outcomes`` events per outcome label.

    >>> stats = RuleStats()
    >>> r = load_rule({"rule_id": "r", "version": 2, "applies_to": ["device"],
    ...                "when": "true", "enabled": True})
    >>> stats.record(Evaluation(hits=(Hit(r),), errors=(RuleFailure("q", "boom"),), evaluated=2))
    >>> stats.hits, stats.errors, stats.events
    (Counter({('r', 2, 'active'): 1}), Counter({'q': 1}), 1)
    """

    def __init__(self) -> None:
        self.events = 0
        self.evaluated = 0
        self.hits: Counter[tuple[str, int, str]] = Counter()
        self.errors: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()

    def record(self, evaluation: Evaluation) -> None:
        self.events += 1
        self.evaluated += evaluation.evaluated
        for hit in evaluation.hits:
            self.hits[(hit.rule.rule_id, hit.rule.version, Mode.ACTIVE.value)] += 1
        for hit in evaluation.shadow_hits:
            self.hits[(hit.rule.rule_id, hit.rule.version, Mode.SHADOW.value)] += 1
        for failure in evaluation.errors:
            self.errors[failure.rule_id] += 1
        self.outcomes[evaluation.outcome.label] += 1

    def snapshot(self) -> dict[str, Any]:
        """Plain copies of the counters."""
        return {
            "events": self.events,
            "evaluated": self.evaluated,
            "hits": dict(self.hits),
            "errors": dict(self.errors),
            "outcomes": dict(self.outcomes),
        }
