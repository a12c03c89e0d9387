"""The project's contract copy, its record types and the message check."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path
from typing import Any, get_type_hints

import orjson
import pytest

from riskmon.contract import (
    DEFAULT_CONTRACT_DIR,
    RECORD_TYPES,
    Contract,
    InvalidMessage,
    format_ts,
    parse_ts,
)
from riskmon.testing import stack_required

SHARED = Path(__file__).resolve().parents[4] / "shared" / "contract"
SAMPLES = DEFAULT_CONTRACT_DIR / "samples" / "events.jsonl"


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract.load()


def _files(base: Path) -> list[str]:
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())


def test_project_copy_is_identical_to_shared_contract() -> None:
    """config/contract holds exactly the shared contract's files, byte for byte. (CI
    clones beside ../shared: there its absence fails the test.)"""
    if not SHARED.exists():
        message = "no ../shared/contract beside this checkout"
        if stack_required():
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)
    assert _files(DEFAULT_CONTRACT_DIR) == _files(SHARED)
    for name in _files(SHARED):
        assert filecmp.cmp(DEFAULT_CONTRACT_DIR / name, SHARED / name, shallow=False), name


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_record_type_matches_schema_fields(contract: Contract, name: str) -> None:
    """Each record type has the schema's properties, and requires exactly its required."""
    schema = contract.schemas[name]
    record = RECORD_TYPES[name]
    assert set(get_type_hints(record)) == set(schema["properties"]), name
    assert set(record.__required_keys__) == set(schema["required"]), name  # type: ignore[attr-defined]


def test_every_sample_event_is_valid(contract: Contract) -> None:
    """The contract's sample events pass the check for their own type."""
    lines = SAMPLES.read_bytes().splitlines()
    assert lines
    for raw in lines:
        event = contract.parse(raw, expected_type=json.loads(raw)["event_type"])
        assert event["event_id"]


def _app(**changes: Any) -> dict[str, Any]:
    base = {
        "event_id": "a1",
        "event_type": "application",
        "ts": "2026-11-28T09:00:00.000Z",
        "user_id": "u1",
        "application_id": "ap1",
        "device_id": "d1",
        "amount": 1000.0,
        "product": "cash_loan",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


BAD: list[tuple[str, bytes, str]] = [
    ("invalid JSON", b'{"event_id": "x",', "invalid_json"),
    ("a JSON list", b"[1, 2]", "not_object"),
    ("a JSON string", b'"hello"', "not_object"),
    ("invalid UTF-8", b'{"event_id": "\xff\xfe"}', "invalid_utf8"),
    ("oversized", orjson.dumps(_app(note="x" * 70_000)), "oversized"),
    ("missing amount", orjson.dumps(_app(amount=None)), "missing_field"),
    ("amount as text", orjson.dumps(_app(amount="1000")), "wrong_type"),
    ("negative amount", orjson.dumps(_app(amount=-5)), "out_of_range"),
    ("age 200", orjson.dumps(_app(age=200)), "out_of_range"),
    ("unknown product", orjson.dumps(_app(product="payday")), "invalid_value"),
    ("bad timestamp", orjson.dumps(_app(ts="yesterday")), "invalid_format"),
    (
        "device on the applications topic",
        orjson.dumps(_app(event_type="device")),
        "wrong_event_type",
    ),
]


@pytest.mark.parametrize(("what", "raw", "code"), BAD, ids=[b[0] for b in BAD])
def test_bad_messages_are_rejected_with_a_code_and_reason(
    contract: Contract, what: str, raw: bytes, code: str
) -> None:
    """Each kind of bad input gets its own code and a reason a person can read."""
    with pytest.raises(InvalidMessage) as info:
        contract.parse(raw, expected_type="application", max_bytes=64 * 1024)
    assert info.value.code == code, info.value
    assert len(info.value.reason) > 5


def test_reason_names_the_offending_field(contract: Contract) -> None:
    """A range violation says which field and which limit."""
    with pytest.raises(InvalidMessage) as info:
        contract.parse(orjson.dumps(_app(amount=-5)), expected_type="application")
    assert "amount" in info.value.reason and "minimum" in info.value.reason
    assert info.value.event_id == "a1"


def test_timestamps_round_trip_to_the_millisecond() -> None:
    """Event times parse to epoch seconds and format back unchanged."""
    for ts in ["2026-11-28T10:15:30.123Z", "2018-04-01T00:00:31.000Z", "2026-01-01T00:00:00.999Z"]:
        assert format_ts(parse_ts(ts)) == ts


def test_formatted_times_match_the_calendar() -> None:
    """format_ts agrees with the datetime calendar, within a second and across seconds."""
    from datetime import UTC, datetime

    for epoch in [0.0, 1795860930.0, 1795860930.0005, 1795860930.4, 1795860931.999, -86400.5]:
        ms = round(epoch * 1000)
        whole = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        assert format_ts(epoch) == f"{whole}.{ms % 1000:03d}Z"


@pytest.mark.parametrize(
    ("changes", "clear"),
    [
        ({"phone_hash": 13800138000}, "13800138000"),  # a phone number, not hashed
        ({"id_hash": 110101199003071234}, "110101199003071234"),  # a national id
        ({"bank_card_hash": "6222" + "0" * 200}, "6222" + "0" * 200),  # too long
        ({"phone_hash": ""}, '""'),
    ],
)
def test_a_reason_never_quotes_personal_data(
    contract: Contract, changes: dict[str, Any], clear: str
) -> None:
    """An unhashed phone number, id or card in a ``*_hash`` field is rejected with a reason
    that names the field and the fault but withholds the value (reasons go to logs and
    dead letters)."""
    with pytest.raises(InvalidMessage) as err:
        contract.parse(orjson.dumps(_app(**changes)))
    field = next(iter(changes))
    assert err.value.reason.startswith(f"{field}: ")
    assert "withheld" in err.value.reason
    assert clear not in err.value.reason and clear not in str(err.value)


@pytest.mark.parametrize(
    ("ts", "ok"),
    [
        ("2026-11-29t05:53:00z", True),  # RFC 3339 allows lower case
        ("2026-11-29T05:53:00+08:00", True),
        ("0001-01-01T00:00:00+14:00", False),  # a date-time, but no usable time
        ("9999-12-31T23:59:59-14:00", False),
    ],
)
def test_every_event_time_the_contract_lets_through_can_be_used(
    contract: Contract, ts: str, ok: bool
) -> None:
    """An event time the schema's format accepts but the worker could not compute with
    (it would fail every retry of its batch) is rejected here, as invalid_format."""
    raw = orjson.dumps(_app(ts=ts))
    if ok:
        assert parse_ts(contract.parse(raw)["ts"]) > 0
    else:
        with pytest.raises(InvalidMessage) as err:
            contract.parse(raw)
        assert err.value.code == "invalid_format"


def test_an_event_time_later_than_the_clock_allows_is_refused(contract: Contract) -> None:
    """A worker takes no event time later than its clock plus ``max_future_s``: a
    device whose clock is years ahead would otherwise move the event time of all the
    state its batch touches. Within the allowance, and with no clock given (``None``),
    the event is taken."""
    now = parse_ts("2026-11-28T09:00:00.000Z")
    future = orjson.dumps(_app(ts="2031-01-01T00:00:00Z"))
    with pytest.raises(InvalidMessage) as err:
        contract.parse(future, "application", not_after=now + 600)
    assert err.value.code == "ts_in_future"
    assert "2031-01-01T00:00:00.000Z" in err.value.reason and "max_future_s" in err.value.reason
    assert err.value.event_id == "a1"
    # the reason gives the time as read: its text may carry any run of digits
    digits = orjson.dumps(_app(ts="2031-01-01T00:00:00.13812345678Z"))
    with pytest.raises(InvalidMessage) as err:
        contract.parse(digits, "application", not_after=now + 600)
    assert "13812345678" not in err.value.reason and "2031-01-01T00:00:00.138Z" in err.value.reason
    near = orjson.dumps(_app(ts="2026-11-28T09:09:59Z"))
    assert contract.parse(near, "application", not_after=now + 600)["event_id"] == "a1"
    assert contract.parse(future, "application")["event_id"] == "a1"


@pytest.mark.parametrize(
    ("what", "raw", "code"),
    [
        ("oversized", orjson.dumps(_app(sim_hash="13812345678", note="x" * 70_000)), "oversized"),
        ("not JSON", b'{"event_id": "a1", "sim_hash": "138 1234 5678",', "invalid_json"),
        (
            "not UTF-8",
            b'{"mobile": "\xef\xbc\x91\xef\xbc\x93' + b"812345678" + b'\xff"}',
            "invalid_utf8",
        ),
        ("a list", b'[{"phone": "13812345678"}]', "not_object"),
        ("a string", b'"tel:138-1234-5678"', "not_object"),
    ],
)
def test_input_not_read_as_fields_keeps_no_number_in_clear(
    contract: Contract, what: str, raw: bytes, code: str
) -> None:
    """An input refused before its fields are read (too large, not JSON, not UTF-8) is
    not checked field by field: its dead letter keeps it with every run of eleven digits
    or more withheld, so no phone, identity or card number travels on in clear."""
    with pytest.raises(InvalidMessage) as err:
        contract.parse(raw, "application")
    assert err.value.code == code
    kept = err.value.keep
    assert kept is not None and b"[withheld]" in kept
    assert b"12345678" not in kept and b"1234 5678" not in kept
    plain = b'{"event_id": "a1", "amount": 12'
    with pytest.raises(InvalidMessage) as err:
        contract.parse(plain, "application")
    assert err.value.keep is None  # nothing to withhold: the bytes travel as they came
