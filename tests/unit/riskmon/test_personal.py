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
        ("138-1234-5678", "a phone number"),
        ("+86 138 1234 5678", "a phone number"),
        ("11010519491231002X", "a national id number"),
        ("11010519491231002x", "a national id number"),
        ("6222021234567890128", "a bank card number"),
        ("4111111111111111", "a bank card number"),
        (13812345678, "a phone number"),  # a JSON number: the schema would refuse it later
        ("008613812345678", "a phone number"),
        (" 13812345678", "a phone number"),
        ("13812345678 ", "a phone number"),
        ("(+86)13812345678", "a phone number"),
        ("(+86) 138-1234-5678", "a phone number"),
        ("138.1234.5678", "a phone number"),
        ("6222 0212 3456 7890 128", "a bank card number"),
        ("6222-0212-3456-7890-128", "a bank card number"),
        ("4111 1111 1111 1111", "a bank card number"),
        ("110105 19491231 002X", "a national id number"),
        ("110105-19491231-002X", "a national id number"),
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
        "139.12.245.167",  # an IPv4 address: its digits would make a phone number
        "6222 0212 3456 7890 123",  # a card's grouping, wrong Luhn digit
        "110105 19491231 0021",  # an identity number's grouping, wrong check character
        "",
        None,
        True,
        12.5,
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


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"phone_hash": "13812345678", "amount": -5.0}, "phone_hash"),  # out of range too
        ({"phone_hash": 13812345678}, "phone_hash"),  # a number, not a string
        ({"mobile": "13812345678", "product": "payday"}, "mobile"),  # a bad product too
        ({"card_no": "6222021234567890128", "ts": "28/11/2026"}, "card_no"),  # a bad ts too
        ({"id_hash": "11010519491231002X", "event_type": "nonsense"}, "id_hash"),
    ],
)
def test_an_identifier_in_clear_is_refused_before_any_other_fault_is_named(
    extra: dict[str, object], field: str
) -> None:
    """Whatever else is wrong with the event, the identifier in clear is what refuses it,
    so that its dead letter keeps the event only with the value withheld."""
    raw = orjson.dumps({**APPLICATION, **extra})
    with pytest.raises(InvalidMessage) as caught:
        Contract.load().parse(raw)
    exc = caught.value
    assert exc.code == "personal_data_in_clear" and field in exc.reason
    assert exc.keep is not None and orjson.loads(exc.keep)[field] == "[withheld]"
    assert str(extra[field]).encode() not in exc.keep


@pytest.mark.parametrize(
    ("extra", "number"),
    [
        ({"amount": 13812345678}, "13812345678"),
        ({"term_days": 13812345678}, "13812345678"),
        ({"ip": "+86 138 1234 5678 " * 4}, "1234 5678"),
        ({"product": "tel:13812345678"}, "13812345678"),  # within a short string
        ({"channel": 6222021234567890128}, "6222021234567890128"),
    ],
)
def test_reasons_never_quote_a_number_or_a_long_value(
    extra: dict[str, object], number: str
) -> None:
    """A phone number sent as a number, in a field that is not a hash, is withheld from
    the reason; so is a long string, which may hold one among other things."""
    with pytest.raises(InvalidMessage) as caught:
        Contract.load().parse(orjson.dumps({**APPLICATION, **extra}))
    assert caught.value.code != "personal_data_in_clear"
    assert number not in caught.value.reason and "withheld" in caught.value.reason


def test_a_deployment_with_decimal_hashes_can_leave_the_card_shape_out() -> None:
    """With ``privacy.refuse_in_clear`` leaving ``bank_card`` out, a decimal hash that
    happens to pass the Luhn check is accepted; a phone number in clear still is not."""
    from riskmon.settings import Settings

    settings = Settings.load(
        env={"RISKMON_PRIVACY__REFUSE_IN_CLEAR": "phone,id_number"}, config_file=None
    )
    contract = Contract.load(settings.contract_dir, settings.privacy.kinds)
    hashed = contract.parse(orjson.dumps({**APPLICATION, "bank_card_hash": "6222021234567890128"}))
    assert hashed["bank_card_hash"] == "6222021234567890128"
    with pytest.raises(InvalidMessage, match="personal_data_in_clear"):
        contract.parse(orjson.dumps({**APPLICATION, "phone_hash": "13812345678"}))
    with pytest.raises(ValueError):
        Settings.load(env={"RISKMON_PRIVACY__REFUSE_IN_CLEAR": "phone,email"}, config_file=None)


def test_logs_redact_every_field_named_for_an_identifier() -> None:
    """The log processor withholds ``mobile``, ``card_no`` and the other names refused in
    inputs, not only ``*_hash`` fields."""
    from riskmon.logs import redact_personal

    out = redact_personal(None, "info", {"event": "x", "ev": {"mobile": "1", "card_no": "2"}})
    assert out["ev"] == {"mobile": "[redacted]", "card_no": "[redacted]"}


@pytest.mark.parametrize(
    ("extra", "where", "number"),
    [
        ({"kyc": {"face_match_score": 0.9, "id_number": "x"}}, "kyc/id_number", None),
        ({"emergency_contact": "13812345678"}, "emergency_contact", "13812345678"),
        ({"contacts": [{"name": "mum", "tel": "+86 139 1234 5678"}]}, "contacts/0/tel", None),
        ({"meta": {"cards": ["6222021234567890128"]}}, "meta/cards/0", "6222021234567890128"),
        ({"refs": [110105194912310020, "11010519491231002X"]}, "refs/1", "11010519491231002X"),
    ],
)
def test_an_identifier_in_clear_beyond_the_contracts_fields_is_refused_at_any_depth(
    extra: dict[str, object], where: str, number: str | None
) -> None:
    """A producer's extra field, or an object or list at any depth, holding a value of a
    phone, identity or card number's shape (or a field named for one) refuses the event;
    the reason names the place, and the dead letter keeps the rest of the event."""
    raw = orjson.dumps({**APPLICATION, **extra})
    with pytest.raises(InvalidMessage) as caught:
        Contract.load().parse(raw, "application")
    exc = caught.value
    assert exc.code == "personal_data_in_clear" and where in exc.reason
    assert exc.keep is not None
    kept = orjson.loads(exc.keep)
    assert {k: v for k, v in kept.items() if k not in extra} == APPLICATION
    value = kept
    for step in where.split("/"):
        value = value[int(step) if isinstance(value, list) else step]
    assert value == "[withheld]"
    if number is not None:
        assert number.encode() not in exc.keep and number not in exc.reason


def test_values_beyond_the_contract_that_give_nothing_away_are_accepted() -> None:
    """Extra fields and objects holding tokens, hashes, short numbers or numbers of no
    identifier's shape (a wrong check digit) are left be, and so is the event."""
    extra = {
        "campaign": "spring-13812345678-promo",  # longer than any identifier
        "meta": {"phone_hash": "p-4e1b", "attempt": 3, "ratio": 0.5, "ok": True},
        "refs": ["110105194912310021", 6222021234567890123, None],
        "kyc": {"face_match_score": 1, "liveness_pass": True},  # an int where a float goes
    }
    event = Contract.load().parse(orjson.dumps({**APPLICATION, **extra}), "application")
    assert event["refs"][1] == 6222021234567890123


def test_an_object_where_the_contract_wants_a_string_is_refused_for_what_it_holds() -> None:
    """A contract field of the wrong type that holds a number in clear: the refusal is
    for the number (its dead letter withholds it), not the wrong type. Without one, the
    reason for the wrong type does not quote the object (a name, an address)."""
    raw = orjson.dumps({**APPLICATION, "product": {"phone": "13812345678"}})
    with pytest.raises(InvalidMessage) as caught:
        Contract.load().parse(raw, "application")
    assert caught.value.code == "personal_data_in_clear"
    assert caught.value.keep is not None and b"13812345678" not in caught.value.keep
    with pytest.raises(InvalidMessage) as caught:
        Contract.load().parse(orjson.dumps({**APPLICATION, "product": {"note": "Li Lei"}}))
    assert caught.value.code == "invalid_value" and "Li Lei" not in caught.value.reason


def test_the_shapes_left_out_by_the_setting_are_accepted_beyond_the_contract_too() -> None:
    """``privacy.refuse_in_clear`` without ``bank_card``: a producer's decimal order
    number that passes the Luhn check is accepted in an extra field as in a hash."""
    contract = Contract.load(None, frozenset({"phone", "id_number"}))
    event = contract.parse(orjson.dumps({**APPLICATION, "order_no": 6222021234567890128}))
    assert event["order_no"] == 6222021234567890128
    with pytest.raises(InvalidMessage, match="personal_data_in_clear"):
        contract.parse(orjson.dumps({**APPLICATION, "order": {"tel": "13812345678"}}))


def test_an_id_that_is_a_phone_number_is_refused() -> None:
    """A producer keying its users by phone number would carry the number into every
    output, profile, Redis key and log line: such an input is refused, its dead letter
    withholds the id. Numeric ids that only look like card or identity numbers by
    chance (long numeric ids) are accepted by default."""
    contract = Contract.load()
    raw = orjson.dumps({**APPLICATION, "user_id": "13712345678"})
    with pytest.raises(InvalidMessage) as caught:
        contract.parse(raw, "application")
    exc = caught.value
    assert exc.code == "personal_data_in_clear" and "user_id" in exc.reason
    assert exc.keep is not None and orjson.loads(exc.keep)["user_id"] == "[withheld]"
    for user in ("1795860930123456789", "11010519491231002X", "6222021234567890128"):
        assert contract.parse(orjson.dumps({**APPLICATION, "user_id": user}))["user_id"] == user


def test_the_shapes_refused_in_ids_are_a_setting() -> None:
    """``privacy.refuse_in_ids`` adds the identity number's shape, or, empty, accepts a
    phone-shaped user id (a deployment that knows its ids are not phone numbers)."""
    from riskmon.settings import Settings

    strict = Contract.for_settings(
        Settings.load(env={"RISKMON_PRIVACY__REFUSE_IN_IDS": "phone,id_number"}, config_file=None)
    )
    with pytest.raises(InvalidMessage, match="device_id"):
        strict.parse(orjson.dumps({**APPLICATION, "device_id": "11010519491231002X"}))
    lax = Contract.for_settings(
        Settings.load(env={"RISKMON_PRIVACY__REFUSE_IN_IDS": ""}, config_file=None)
    )
    assert lax.parse(orjson.dumps({**APPLICATION, "user_id": "13712345678"}))["user_id"]


def _nested(depth: int, leaf: str) -> bytes:
    return (
        orjson.dumps(APPLICATION)[:-1]
        + b',"x":'
        + b"[" * depth
        + leaf.encode()
        + b"]" * depth
        + b"}"
    )


@pytest.mark.parametrize("depth", [100, 300, 1000])
def test_an_input_nested_deeply_is_refused_or_taken_never_a_crash(depth: int) -> None:
    """JSON may nest deeper than Python's stack and than JSON can be written out again:
    a number in clear at the bottom is refused, the input withheld (whole when it cannot
    be written out); without one the input is taken. Nothing raises but the refusal."""
    contract = Contract.load()
    with pytest.raises(InvalidMessage) as caught:
        contract.parse(_nested(depth, '"13812345678"'))
    assert caught.value.code in ("personal_data_in_clear", "unprocessable")
    assert caught.value.keep is not None and b"13812345678" not in caught.value.keep
    assert contract.parse(_nested(depth, '"x"'))["event_id"] == "e1"


@pytest.mark.parametrize(
    "extra",
    [
        {"phone_hash": "\t13812345678"},
        {"phone_hash": "\n13812345678"},
        {"phone_hash": "\u300013812345678"},  # an ideographic space
        {"phone_hash": "１３８１２３４５６７８"},  # full-width digits
        {"id_hash": "１１０１０５１９４９１２３１００２Ｘ"},
        {"user_id": "\t13812345678"},
        {"phone_hash": " " * 20 + "13812345678" + " " * 20},  # padded past the longest shape
        {"phone_hash": "+86 (138) 1234 5678"},
        {"phone_hash": 13812345678.0},
        {"user_id": 13812345678.0},
        {"contacts": {"13912345678": "mum"}},  # a contact list keyed by phone number
        {"contact_phone": 13812345678},  # a number where the name says phone
    ],
)
def test_numbers_in_clear_hidden_by_blanks_full_width_floats_or_keys_are_refused(
    extra: dict[str, object],
) -> None:
    """Blanks of any kind around a number, full-width digits (a Chinese input method),
    a float holding a whole number, a number as an object's key: the input is refused
    and neither the reason nor what the dead letter keeps holds the digits."""
    with pytest.raises(InvalidMessage) as caught:
        Contract.load().parse(orjson.dumps({**APPLICATION, **extra}))
    exc = caught.value
    assert exc.code == "personal_data_in_clear", exc.reason
    for number in ("13812345678", "13912345678", "1381234", "11010519"):
        assert number not in exc.reason
        assert exc.keep is not None and number.encode() not in exc.keep


@pytest.mark.parametrize(
    "extra",
    [
        {"ram_bytes": 17179869184},  # 16 GiB: a phone number's shape, as a number
        {"meta": {"disk_free": 14000000000}},
        {"ts_us": 1795860930123462},  # a time in microseconds: a card's length
        {"ts_ns": "1795860930123462000"},
        {"trace_id": "1795860930123456789"},  # a snowflake id
        {"order_no": "202611281234567890"},  # 18 digits, no real birth date
        {"ipv6": "2408:8207:1851:5d60::1"},
        {"fingerprint": "13812345678abcdef"},
    ],
)
def test_numbers_of_everyday_telemetry_are_not_taken_for_identifiers(
    extra: dict[str, object],
) -> None:
    """Byte counts, times in micro- or nanoseconds, snowflake and order numbers, IPv6
    addresses: the shapes are strict enough (a phone number as a JSON number only where
    the field's name says phone, a card's first digit that of a card network, an
    identity number's real birth date) that such traffic passes."""
    event = Contract.load().parse(orjson.dumps({**APPLICATION, **extra}))
    assert event["event_id"] == "e1"


def test_a_reason_never_quotes_an_event_type_holding_a_number() -> None:
    """An unknown event type is named in the reason unless it holds a long digit run."""
    with pytest.raises(InvalidMessage) as caught:
        Contract.load().parse(orjson.dumps({**APPLICATION, "event_type": "tel:13812345678"}))
    assert "13812345678" not in caught.value.reason


LABEL = {
    "event_id": "l1",
    "event_type": "label",
    "ts": "2026-11-28T09:00:00Z",
    "user_id": "u1",
    "target_type": "user",
    "target_id": "u1",
    "label": "fraud",
}


@pytest.mark.parametrize(
    ("event", "where", "number"),
    [
        ({**APPLICATION, "amount": "13812345678"}, ("amount",), "13812345678"),
        ({**APPLICATION, "age": 13812345678}, ("age",), "13812345678"),
        ({**APPLICATION, "product": "13812345678"}, ("product",), "13812345678"),
        ({**APPLICATION, "ts": "+86 138 1234 5678"}, ("ts",), "1234 5678"),
        ({**APPLICATION, "event_type": "13812345678"}, ("event_type",), "13812345678"),
        (
            {**APPLICATION, "kyc": {"face_match_score": 13812345678}},
            ("kyc", "face_match_score"),
            "13812345678",
        ),
        (
            {**APPLICATION, "channel": "6222021234567890128", "amount": "lots"},
            ("channel",),
            "6222021234567890128",
        ),
        ({**LABEL, "source": "13812345678", "label": "maybe"}, ("source",), "13812345678"),
    ],
)
def test_an_event_refused_for_another_fault_keeps_no_number_in_clear(
    event: dict[str, object], where: tuple[str, ...], number: str
) -> None:
    """A phone, identity or card number in a field of the contract, which is not refused
    for its shape, is still withheld from the dead letter of an event refused for any
    other fault, as it is from the reason: the rest of the event is kept as it came."""
    raw = orjson.dumps(event)
    with pytest.raises(InvalidMessage) as caught:
        Contract.load().parse(raw)
    exc = caught.value
    assert exc.code != "personal_data_in_clear"
    assert exc.keep is not None and number.encode() not in exc.keep
    assert number not in exc.reason
    kept = orjson.loads(exc.keep)
    value: object = kept
    for step in where:
        assert isinstance(value, dict)
        value = value[step]
    assert value == "[withheld]"
    assert kept == {**orjson.loads(raw), **{where[0]: kept[where[0]]}}


def test_an_event_refused_for_another_fault_without_a_number_keeps_its_bytes() -> None:
    """Without a value of those shapes, the dead letter keeps the input as it came."""
    with pytest.raises(InvalidMessage) as caught:
        Contract.load().parse(orjson.dumps({**APPLICATION, "amount": "lots", "age": 30}))
    assert caught.value.code == "wrong_type" and caught.value.keep is None


@pytest.mark.parametrize(
    ("event_type", "ip"),
    [
        ("application", "13812345678"),
        ("device", "+86 138 1234 5678"),
        ("transaction", "6222021234567890128"),
        ("application", "11010519491231002X"),
        ("device", "１３８１２３４５６７８"),
    ],
)
def test_an_ip_holding_a_number_in_clear_is_refused(event_type: str, ip: str) -> None:
    """The IP address is an identifier Riskmon keys by (Redis keys, the user's document):
    a phone, identity or card number sent there is refused and withheld, whatever the
    event type; no IP address has one of those shapes."""
    other = {
        "device": {"kind": "login"},
        "transaction": {"txn_id": "t1", "kind": "payment", "status": "success"},
    }.get(event_type, {})
    event = {**APPLICATION, **other, "event_type": event_type, "ip": ip}
    with pytest.raises(InvalidMessage) as caught:
        Contract.load().parse(orjson.dumps(event))
    exc = caught.value
    assert exc.code == "personal_data_in_clear" and exc.reason.startswith("ip: ")
    assert exc.keep is not None and orjson.loads(exc.keep)["ip"] == "[withheld]"


@pytest.mark.parametrize(
    "ip", ["139.12.245.167", "2408:8207:1850:2a60::1", "::ffff:139.12.245.167", "10.0.0.1"]
)
def test_ip_addresses_are_accepted(ip: str) -> None:
    """IPv4 and IPv6 addresses, whatever their digits, are taken as they are."""
    assert Contract.load().parse(orjson.dumps({**APPLICATION, "ip": ip}))["ip"] == ip


@pytest.mark.parametrize(
    "value",
    [
        "138\u20131234\u20135678",  # en dashes
        "138\u20101234\u20105678",  # hyphens
        "+86\u2212138\u22121234\u22125678",  # minus signs
        "138\u200b1234\u200b5678",  # zero-width spaces
        "\u206013812345678\u2060",  # word joiners around it
        "6222\u20140212\u20143456\u20147890\u2014128",  # em dashes
        "110105\u00ad19491231\u00ad002X",  # soft hyphens
    ],
)
def test_numbers_grouped_by_other_dashes_or_invisible_characters_are_refused(value: str) -> None:
    """A number grouped by a Unicode dash (hyphen, en or em dash, minus sign) or with
    invisible characters among its digits (zero-width space, soft hyphen) reads as the
    number: it is refused in a hash, and withheld from what is kept of an unreadable
    input."""
    assert clear_kind(value) is not None
    raw = orjson.dumps({**APPLICATION, "phone_hash": value})
    with pytest.raises(InvalidMessage) as caught:
        Contract.load().parse(raw)
    assert caught.value.code == "personal_data_in_clear"
    with pytest.raises(InvalidMessage) as caught:
        Contract.load().parse(raw[:-1])  # cut: not JSON
    kept = caught.value.keep
    assert caught.value.code == "invalid_json" and kept is not None
    assert value.encode() not in kept and b"[withheld]" in kept
