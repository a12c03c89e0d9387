"""Identifiers of people in clear: recognised by their shape, hashes and tokens left be."""

from __future__ import annotations

import orjson
import pytest

from riskmon.contract import Contract, InvalidMessage
from riskmon.personal import clear_kind, in_clear

APPLICATION = {
    "event_id": "e1",
    "event_type": "application",
    "ts": "2026-11-28T09:00:00Z",
    "user_id": "u1",
    "application_id": "a1",
    "device_id": "d1",
    "amount": 100.0,
    "product": "cash_loan",
}


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("13812345678", "a phone number"),
        ("+86 13812345678", "a phone number"),
        ("8613812345678", "a phone number"),
        ("11010519491231002X", "a national id number"),
        ("11010519491231002x", "a national id number"),
        ("6222021234567890128", "a bank card number"),
        ("4111111111111111", "a bank card number"),
    ],
)
def test_identifiers_in_clear_are_recognised(value: str, kind: str) -> None:
    """Mobile numbers (with or without +86), identity numbers with a valid check
    character and card numbers with a valid Luhn digit are what they look like."""
    assert clear_kind(value) == kind


@pytest.mark.parametrize(
    "value",
    [
        "p-4e1b",  # the contract's sample hashes
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "12812345678",  # 11 digits, but no mobile prefix
        "110105194912310021",  # an identity number's shape, wrong check character
        "6222021234567890123",  # a card's shape, wrong Luhn digit
        "123456789012345",  # 15 digits: nothing in particular
        "",
        None,
        13812345678,  # not a string: the schema refuses it first
    ],
)
def test_hashes_tokens_and_near_misses_are_not_taken_for_identifiers(value: object) -> None:
    """A value is refused only when its shape gives a real identifier away."""
    assert clear_kind(value) is None


def test_fields_named_for_identifiers_are_refused_whatever_they_hold() -> None:
    """``phone``, ``id_number``, ``bank_card`` and the like only ever hold identifiers in
    clear (the hashed ones end in ``_hash``), so their value does not matter."""
    event = {**APPLICATION, "mobile": "ask me", "bank_card": "", "phone_hash": "p-1"}
    assert in_clear(event, ("phone_hash",)) == ["bank_card", "mobile"]


def test_the_contract_refuses_an_event_with_a_number_in_clear_and_withholds_it() -> None:
    """The error names the field and what it holds, never the value; what a dead letter
    may keep is the event with the value withheld. The same event, hashed, is valid."""
    contract = Contract.load()
    raw = orjson.dumps({**APPLICATION, "bank_card_hash": "6222021234567890128"})
    with pytest.raises(InvalidMessage) as caught:
        contract.parse(raw, "application")
    exc = caught.value
    assert exc.code == "personal_data_in_clear" and exc.event_id == "e1"
    assert "bank_card_hash" in exc.reason and "a bank card number" in exc.reason
    assert "6222021234567890128" not in exc.reason
    assert exc.keep is not None and b"6222021234567890128" not in exc.keep
    assert orjson.loads(exc.keep) == {**APPLICATION, "bank_card_hash": "[withheld]"}
    hashed = contract.parse(orjson.dumps({**APPLICATION, "bank_card_hash": "c-1a2b"}))
    assert hashed["bank_card_hash"] == "c-1a2b"
