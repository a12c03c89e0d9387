"""The event contract: record types, and the check every incoming message passes.

The JSON Schemas in ``config/contract/`` (a copy of the shared contract) are normative.
Each record type below mirrors one schema; a unit test keeps the two in step.

>>> contract = Contract.load()
>>> raw = (b'{"event_id":"d1","event_type":"device","ts":"2026-11-28T09:00:00Z",'
...        b'"user_id":"u1","device_id":"d","kind":"login"}')
>>> contract.parse(raw, expected_type="device")["kind"]
'login'
>>> contract.parse(b'{"event_type":"device"}', expected_type="device")
Traceback (most recent call last):
...
riskmon.contract.InvalidMessage: missing_field: "event_id" is a required property
"""

import json
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NotRequired, Required, TypedDict

import jsonschema_rs
import orjson

from riskmon.personal import (
    CLEAR_FIELDS,
    ID_FIELDS,
    KINDS,
    SHAPED_FIELDS,
    WITHHELD,
    FieldPath,
    clear_kind,
    clear_paths,
    digits_withheld,
    has_digit_run,
    holds_identifier,
    might_hold_clear,
    path_text,
    shaped_clear,
    shaped_paths,
    value_at,
    withheld,
)

INPUT_TYPES = ("application", "device", "transaction", "label")
DECIDED_TYPES = ("application", "device", "transaction")
OUTPUT_TYPES = ("decision", "alert", "adjustment")
SCHEMA_NAMES = (*INPUT_TYPES, "rule", *OUTPUT_TYPES)

DEFAULT_CONTRACT_DIR = Path(__file__).resolve().parent.parent / "config" / "contract"


# --- record types, one per schema -------------------------------------------------


class Geo(TypedDict):
    lat: float
    lon: float


class Kyc(TypedDict, total=False):
    face_match_score: float
    liveness_pass: bool
    ocr_ok: bool


class Reason(TypedDict, total=False):
    code: Required[str]
    detail: str
    value: Any


class ApplicationEvent(TypedDict, total=False):
    event_id: Required[str]
    event_type: Required[Literal["application"]]
    ts: Required[str]
    user_id: Required[str]
    application_id: Required[str]
    device_id: Required[str]
    ip: str
    amount: Required[float]
    term_days: int
    product: Required[Literal["cash_loan", "consumer_installment", "micro_business", "mortgage"]]
    declared_monthly_income: float
    phone_hash: str
    id_hash: str
    bank_card_hash: str
    age: int
    geo: Geo
    contacts_count: int
    channel: str
    kyc: Kyc
    bureau_score: float | None


class DeviceEvent(TypedDict, total=False):
    event_id: Required[str]
    event_type: Required[Literal["device"]]
    ts: Required[str]
    user_id: Required[str]
    device_id: Required[str]
    kind: Required[
        Literal[
            "install",
            "login",
            "login_failed",
            "app_open",
            "sim_change",
            "password_reset",
            "fingerprint",
        ]
    ]
    ip: str
    geo: Geo
    os: str
    os_version: str
    app_version: str
    is_emulator: bool
    is_rooted: bool
    sim_hash: str
    wifi_hash: str
    loan_apps_installed: int


class TransactionEvent(TypedDict, total=False):
    event_id: Required[str]
    event_type: Required[Literal["transaction"]]
    ts: Required[str]
    user_id: Required[str]
    txn_id: Required[str]
    loan_id: str
    kind: Required[
        Literal["disbursement", "repayment", "withdrawal", "card_bind", "payment", "transfer_out"]
    ]
    amount: Required[float]
    currency: Literal["CNY"]
    status: Required[Literal["success", "failed", "pending"]]
    account_hash: str
    device_id: str
    ip: str
    days_past_due: int


class LabelEvent(TypedDict, total=False):
    event_id: Required[str]
    event_type: Required[Literal["label"]]
    ts: Required[str]
    user_id: Required[str]
    target_type: Required[Literal["application", "transaction", "user"]]
    target_id: Required[str]
    label: Required[Literal["fraud", "legit", "default", "repaid", "false_positive"]]
    source: str


class RuleRecord(TypedDict, total=False):
    rule_id: Required[str]
    version: Required[int]
    applies_to: Required[list[Literal["application", "device", "transaction"]]]
    when: Required[str]
    score: float
    severity: Literal["low", "medium", "high", "critical"]
    action: Literal["none", "review", "decline", "reduce_limit", "freeze"]
    mode: Literal["active", "shadow"]
    reason: str
    enabled: Required[bool]
    author: str


DecidedType = Literal["application", "device", "transaction"]


class Decision(TypedDict, total=False):
    source_event_id: Required[str]
    event_type: Required[DecidedType]
    user_id: Required[str]
    event_ts: str
    ts: str
    score: Required[float]
    reasons: Required[list[Reason]]
    decision: Required[Literal["pass", "review", "decline", "alert"]]
    model_scores: dict[str, float]
    rule_ids: list[str]
    latency_ms: float


class Alert(TypedDict, total=False):
    alert_id: Required[str]
    source_event_id: Required[str]
    event_type: Required[DecidedType]
    user_id: Required[str]
    event_ts: str
    ts: Required[str]
    score: Required[float]
    reasons: Required[list[Reason]]
    severity: Required[Literal["low", "medium", "high", "critical"]]
    application_id: str
    txn_id: str
    device_id: str
    rule_ids: list[str]
    model_scores: dict[str, float]


class Adjustment(TypedDict, total=False):
    adjustment_id: Required[str]
    source_event_id: Required[str]
    event_type: DecidedType
    user_id: Required[str]
    event_ts: str
    ts: Required[str]
    score: float
    reasons: Required[list[Reason]]
    action: Required[Literal["approve", "review", "decline", "reduce_limit", "freeze", "unfreeze"]]
    application_id: str
    new_limit: float
    expires_at: str


RECORD_TYPES: dict[str, type] = {
    "application": ApplicationEvent,
    "device": DeviceEvent,
    "transaction": TransactionEvent,
    "label": LabelEvent,
    "rule": RuleRecord,
    "decision": Decision,
    "alert": Alert,
    "adjustment": Adjustment,
}

__all__ = [
    "RECORD_TYPES",
    "Adjustment",
    "Alert",
    "ApplicationEvent",
    "Contract",
    "Decision",
    "DeviceEvent",
    "InvalidMessage",
    "LabelEvent",
    "NotRequired",
    "Reason",
    "RuleRecord",
    "TransactionEvent",
]


# --- validation ---------------------------------------------------------------------

#: jsonschema error kinds -> a short, stable code for dead letters and metrics.
_KIND_CODES = {
    "Required": "missing_field",
    "Type": "wrong_type",
    "Minimum": "out_of_range",
    "Maximum": "out_of_range",
    "ExclusiveMinimum": "out_of_range",
    "ExclusiveMaximum": "out_of_range",
    "MinLength": "out_of_range",
    "MaxLength": "out_of_range",
    "MinItems": "out_of_range",
    "MaxItems": "out_of_range",
    "Enum": "invalid_value",
    "Constant": "invalid_value",
    "Format": "invalid_format",
}


#: every code an input's dead letter can carry
INPUT_CODES = (
    "empty",
    "oversized",
    "invalid_utf8",
    "invalid_json",
    "not_object",
    "personal_data_in_clear",
    "wrong_event_type",
    *sorted(set(_KIND_CODES.values())),
    "schema_violation",
    "ts_in_future",
    "key_mismatch",
    "unprocessable",
    "processing_error",
)

#: what a violation of each kind means, for reasons that may not quote the value
_KIND_TEXTS = {
    "Type": "wrong type",
    "MinLength": "too short",
    "MaxLength": "too long",
    "Pattern": "not in the expected form",
    "Format": "not in the expected format",
    "Enum": "not one of the allowed values",
    "Constant": "not the allowed value",
    "Minimum": "out of range",
    "Maximum": "out of range",
    "ExclusiveMinimum": "out of range",
    "ExclusiveMaximum": "out of range",
}
#: kinds whose message about the whole event names its keys, never their values
_NAMES_KEYS_ONLY = frozenset({"Required", "AdditionalProperties"})


def _quoted(value: Any) -> str:
    """A field's value for a reason: a short string as it is, anything else by its type
    only (an object or a long string there may hold personal data).

    >>> _quoted("loan"), _quoted({"phone_hash": "13800138000"}), _quoted("x" * 100)
    ("'loan'", 'a dict', 'a str of 100 characters')
    >>> _quoted("13800138000"), _quoted("tel:13800138000")
    ('a value withheld (personal data)', 'a value withheld (personal data)')
    """
    if isinstance(value, str) and len(value) > 32:
        return f"a str of {len(value)} characters"
    if clear_kind(value) is not None or (isinstance(value, str) and has_digit_run(value)):
        return "a value withheld (personal data)"
    if isinstance(value, str):
        return repr(value)
    return "null" if value is None else f"a {type(value).__name__}"


class InvalidMessage(ValueError):
    """A message that breaks the contract: ``code`` is stable, ``reason`` readable.

    ``keep``: what a dead letter may keep of the message instead of its bytes (they
    hold personal data in clear), or ``None`` when it may keep them.
    """

    def __init__(
        self, code: str, reason: str, event_id: str | None = None, keep: bytes | None = None
    ) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.event_id = event_id
        self.keep = keep


class Contract:
    """Compiled validators for every schema of the contract."""

    def __init__(
        self,
        schemas: dict[str, dict[str, Any]],
        clear_kinds: frozenset[str] = KINDS,
        id_kinds: frozenset[str] = frozenset({"phone"}),
    ) -> None:
        self.schemas = schemas
        self._validators = {
            name: jsonschema_rs.validator_for(schema, validate_formats=True)
            for name, schema in schemas.items()
        }
        #: per schema, its fields that carry an identifier of a person hashed
        self.hash_fields = {
            name: tuple(p for p in schema.get("properties", {}) if p.endswith("_hash"))
            for name, schema in schemas.items()
        }
        self.all_hash_fields = tuple(sorted({f for fs in self.hash_fields.values() for f in fs}))
        #: per schema, its fields, and those of them that hold objects
        self.fields = {
            name: frozenset(schema.get("properties", {})) for name, schema in schemas.items()
        }
        self.object_fields: dict[str, dict[str, frozenset[str]]] = {
            name: {
                p: frozenset(spec.get("properties", {}))
                for p, spec in schema.get("properties", {}).items()
                if spec.get("type") == "object"
            }
            for name, schema in schemas.items()
        }
        self.all_input_fields = frozenset().union(*(self.fields[t] for t in INPUT_TYPES))
        # the quick look takes an event of contract fields only for one without those
        if not CLEAR_FIELDS.isdisjoint(self.all_input_fields):
            raise ValueError("a contract field is named for an identifier in clear")
        self.all_object_fields = {
            p: fields for t in INPUT_TYPES for p, fields in self.object_fields[t].items()
        }
        #: the shapes refused in ``*_hash`` fields (``privacy.refuse_in_clear``)
        self.clear_kinds = clear_kinds
        #: the shapes refused in ids (``privacy.refuse_in_ids``), and the fields the quick
        #: look at each input reads: the hashes of its type, and the ids
        self.id_kinds = id_kinds
        #: per type, its field judged by every shape (the IP) or None, which
        #: shaped_clear passes at once when it holds an address (the quick look would
        #: take any IPv4 address for a possible number, and every event would get the
        #: full check)
        self._shaped = {
            name: next((f for f in SHAPED_FIELDS if f in self.fields.get(name, ())), None)
            for name in (*self.hash_fields, "")
        }
        # (an id the type does not define is a field beyond the contract: looked at
        # whenever the event has one, see might_hold_clear)
        self._looked_at = {
            name: (
                *(self.hash_fields.get(name) or self.all_hash_fields),
                *(i for i in ID_FIELDS if id_kinds and i in self.fields.get(name, ())),
            )
            for name in (*self.hash_fields, "")
        }

    @classmethod
    def load(
        cls,
        contract_dir: str | Path | None = None,
        clear_kinds: frozenset[str] = KINDS,
        id_kinds: frozenset[str] = frozenset({"phone"}),
    ) -> "Contract":
        base = Path(contract_dir) if contract_dir else DEFAULT_CONTRACT_DIR
        schemas = {}
        for name in SCHEMA_NAMES:
            path = base / f"{name}.schema.json"
            schemas[name] = json.loads(path.read_text(encoding="utf-8"))
        return cls(schemas, clear_kinds, id_kinds)

    @classmethod
    def for_settings(cls, settings: Any) -> "Contract":
        """The contract of ``settings.contract_dir``, with its ``privacy`` settings."""
        privacy = settings.privacy
        return cls.load(settings.contract_dir, privacy.kinds, privacy.id_kinds)

    def errors(self, schema: str, obj: Any) -> list[tuple[str, str]]:
        """All contract violations of ``obj`` as ``(code, readable reason)`` pairs.

        A reason never quotes personal data: the value of a ``*_hash`` field, which
        should have arrived hashed and may not have, is withheld, and so is the whole
        event, which a check of the event as one value would quote, and any value that
        looks like a phone, id or card number (:func:`riskmon.personal.clear_kind`).

        >>> c = Contract.load()
        >>> c.errors("application", {"id_hash": 110101199003071234})[-1]
        ('wrong_type', 'id_hash: wrong type (the value is withheld: personal data)')
        >>> c.errors("application", {"amount": "13812345678"})[-1]
        ('wrong_type', 'amount: wrong type (the value is withheld: personal data)')
        """
        out = []
        for err in self._validators[schema].iter_errors(obj):
            kind = type(err.kind).__name__
            code = _KIND_CODES.get(kind, "schema_violation")
            path = [str(p) for p in err.instance_path]
            where = path_text(tuple(path))
            if (
                any(p.endswith("_hash") for p in path)
                or (not path and kind not in _NAMES_KEYS_ONLY)
                or holds_identifier(err.instance)
                # an object or a list quoted whole: it may hold a name, an address
                or (isinstance(err.instance, dict | list) and kind not in _NAMES_KEYS_ONLY)
            ):
                text = _KIND_TEXTS.get(kind, "breaks the contract")
                message = f"{text} (the value is withheld: personal data)"
            else:
                message = err.message
            out.append((code, f"{where}: {message}" if where else message))
        return out

    def is_valid(self, schema: str, obj: Any) -> bool:
        return bool(self._validators[schema].is_valid(obj))

    def validator(self, schema: str) -> Any:
        """The compiled JSON Schema validator of ``schema`` (``iter_errors``, ``is_valid``)."""
        return self._validators[schema]

    def check(self, schema: str, obj: Any) -> None:
        """Raise :class:`InvalidMessage` with the first violation, if any."""
        if self._validators[schema].is_valid(obj):
            return
        code, reason = self.errors(schema, obj)[0]
        event_id = obj.get("event_id") if isinstance(obj, dict) else None
        raise InvalidMessage(code, reason, event_id if isinstance(event_id, str) else None)

    def parse(
        self,
        raw: bytes,
        expected_type: str | None = None,
        max_bytes: int = 64 * 1024,
        not_after: float | None = None,
    ) -> dict[str, Any]:
        """Decode and check one Kafka message value; raise :class:`InvalidMessage`.

        ``expected_type`` is the event type the topic carries (``None``: any input type).
        ``not_after``: the latest event time taken (epoch seconds: the clock plus
        ``detection.max_future_s``); a later one is refused as ``ts_in_future``, as one
        event from a device whose clock is years ahead would move the event time of the
        state it touches (windows, maturity of unlabelled events, the newest verdict).
        An input the checks themselves cannot take (nested too deeply to write out again,
        say) is refused as ``unprocessable``, its content withheld whole: whatever the
        input, the worker goes on.
        """
        try:
            return self._parse(raw, expected_type, max_bytes, not_after)
        except InvalidMessage:
            raise
        except Exception as exc:
            raise InvalidMessage(
                "unprocessable",
                f"the input could not be checked ({type(exc).__name__}); its content is "
                "withheld whole, as it may hold personal data",
                keep=orjson.dumps(WITHHELD),
            ) from None

    def _parse(
        self, raw: bytes, expected_type: str | None, max_bytes: int, not_after: float | None
    ) -> dict[str, Any]:
        if raw is None:
            raise InvalidMessage("empty", "message has no value")
        if len(raw) > max_bytes:
            reason = f"message is {len(raw)} bytes, limit {max_bytes}"
            raise InvalidMessage("oversized", reason, keep=digits_withheld(raw))
        try:
            obj = orjson.loads(raw)  # accepts valid UTF-8 only
        except orjson.JSONDecodeError as exc:
            # not read as fields, so not checked field by field: every run of digits
            # that may be an identifier in clear is withheld from the dead letter
            keep = digits_withheld(raw)
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                reason = f"not UTF-8: {bad.reason} at byte {bad.start}"
                raise InvalidMessage("invalid_utf8", reason, keep=keep) from None
            raise InvalidMessage("invalid_json", f"not JSON: {exc}", keep=keep) from None
        if not isinstance(obj, dict):
            # not an event, so not checked field by field either
            reason = f"JSON {type(obj).__name__}, expected an object"
            raise InvalidMessage("not_object", reason, keep=digits_withheld(raw))
        event_type = obj.get("event_type")
        event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
        # before anything else is said of it: a refused event's dead letter keeps the
        # event, and must keep it without the identifier
        schema = event_type if event_type in INPUT_TYPES else ""
        hashed = self.hash_fields.get(schema) or self.all_hash_fields
        known = self.fields.get(schema) or self.all_input_fields
        objects = self.object_fields.get(schema) or self.all_object_fields
        kinds, id_kinds = self.clear_kinds, self.id_kinds
        if (
            might_hold_clear(obj, self._looked_at[schema], known, objects)
            or ((f := self._shaped[schema]) is not None and shaped_clear(obj.get(f), kinds))
        ) and (clear := clear_paths(obj, hashed, known, kinds, id_kinds)):
            raise self._refused(obj, clear, event_id)
        try:
            self._check_event(obj, event_type, event_id, expected_type, not_after)
        except InvalidMessage as exc:
            # a field of the contract may hold an object it should not (which the quick
            # look above leaves to the contract): the refusal comes first all the same
            if clear := clear_paths(obj, hashed, known, kinds, id_kinds):
                raise self._refused(obj, clear, event_id) from None
            exc.keep = self.kept(obj)
            raise
        return obj

    def kept(self, event: dict[str, Any]) -> bytes | None:
        """What a dead letter keeps of ``event``, refused for a fault other than an
        identifier in clear: ``None`` (its bytes as they came) unless a value holds a
        phone, identity or card number's shape (:func:`riskmon.personal.shaped_paths`:
        in a field of the contract too, which is not refused for it, a phone number
        sent as the amount); then the event with those values withheld, or withheld
        whole when it cannot be written out again.

        >>> Contract.load().kept({"amount": "13812345678", "ts": "x"}), Contract.load().kept({})
        (b'{"amount":"[withheld]","ts":"x"}', None)
        """
        shaped = shaped_paths(event, self.clear_kinds)
        if not shaped:
            return None
        try:
            return orjson.dumps(withheld(event, shaped))
        except TypeError:  # nested deeper than JSON serialisation goes
            return orjson.dumps(WITHHELD)

    @staticmethod
    def _refused(
        obj: dict[str, Any], clear: list[FieldPath], event_id: str | None
    ) -> InvalidMessage:
        """The refusal of an event with identifiers in clear at ``clear``."""
        kinds = sorted({clear_kind(value_at(obj, p)) or "an identifier" for p in clear})
        return InvalidMessage(
            "personal_data_in_clear",
            f"{', '.join(path_text(p) for p in clear)}: {' or '.join(kinds)} in clear (the "
            "value is withheld: personal data); phone numbers, national ids and bank cards "
            "must arrive hashed, in *_hash fields",
            None if clear_kind(event_id) else event_id,
            keep=orjson.dumps(withheld(obj, clear)),
        )

    def _check_event(
        self,
        obj: dict[str, Any],
        event_type: Any,
        event_id: str | None,
        expected_type: str | None,
        not_after: float | None = None,
    ) -> None:
        if expected_type is not None and event_type != expected_type:
            raise InvalidMessage(
                "wrong_event_type",
                f"event_type {_quoted(event_type)} on a topic that carries {expected_type!r}",
                event_id,
            )
        if event_type not in INPUT_TYPES:
            raise InvalidMessage(
                "wrong_event_type", f"unknown event_type {_quoted(event_type)}", event_id
            )
        self.check(event_type, obj)
        try:  # what the schema's date-time format lets through must be a time we can use
            ts = parse_ts(obj["ts"])
            usable = _EARLIEST <= ts < _LATEST
        except (ValueError, OverflowError, OSError):
            usable = False
        if not usable:
            reason = "ts: not an RFC 3339 time with an offset between 1970 and 9000"
            raise InvalidMessage("invalid_format", reason, event_id)
        if not_after is not None and ts > not_after:
            reason = (  # the time as this worker reads it: the text may hold any digits
                f"ts: {format_ts(ts)} is later than {format_ts(not_after)}, this worker's "
                "clock plus detection.max_future_s (a device clock set wrong?)"
            )
            raise InvalidMessage("ts_in_future", reason, event_id)


#: event times a worker can compute with (actions expire later, and dates print)
_EARLIEST, _LATEST = 0.0, 221_845_392_000.0  # 1970-01-01, 9000-01-01 (UTC)


@lru_cache(maxsize=8192)
def parse_ts(ts: str) -> float:
    """RFC 3339 event time -> epoch seconds (float). RFC 3339 allows ``t`` and ``z`` in
    lower case too. An event's time is read where it is checked, where a batch finds its
    decision time and where it is put in order: the times of the latest few batches are
    kept, so it is converted once.

    >>> parse_ts("2026-11-28T10:15:30.123Z"), parse_ts("2026-11-28t10:15:30.123z")
    (1795860930.123, 1795860930.123)
    """
    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return datetime.fromisoformat(ts.upper()).timestamp()


def format_ts(epoch: float) -> str:
    """Epoch seconds -> RFC 3339 UTC with milliseconds.

    >>> format_ts(1795860930.123)
    '2026-11-28T10:15:30.123Z'
    """
    ms = round(epoch * 1000)
    return _second_text(ms // 1000) + f"{ms % 1000:03d}Z"


@lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.`` of a whole epoch second (UTC)."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
