"""What ``riskmon tail`` prints: personal identifiers withheld unless asked for."""

from __future__ import annotations

import base64
import gc
import socket
import warnings

import orjson
import pytest

from riskmon.cli import main
from riskmon.deadletter import dead_letter
from riskmon.tail import redact

PHONE, IDNUM, CARD = "13812345678", "110101199003074258", "6222021234567890123"


def test_a_dead_letter_shows_its_input_without_the_unhashed_identifiers_it_carried() -> None:
    """An upstream that forgot to hash sends a phone, a national id and a card in clear:
    the dead letter printed by tail names the event and the reason, and withholds the
    three values, whether the input parses as JSON or not."""
    event = {"event_id": "e-1", "phone_hash": PHONE, "id_hash": IDNUM, "card_hash": CARD}
    parsed = dead_letter(
        orjson.dumps(event),
        code="invalid_format",
        reason="phone_hash: not a hash",
        topic="loan.applications",
        partition=0,
        offset=7,
        key=b"u1",
        event_id="e-1",
        now=0.0,
    )
    broken = dict(parsed, value=orjson.dumps(event).decode()[:-1] + ", oops")
    for record in (parsed, broken):
        text = redact(orjson.dumps(record))
        assert PHONE not in text and IDNUM not in text and CARD not in text, text
        shown = orjson.loads(text)
        assert shown["code"] == "invalid_format" and shown["offset"] == 7
        assert "e-1" in shown["value"] and shown["value"].count("[redacted]") == 3


def test_input_that_was_not_utf8_is_withheld_whole() -> None:
    """Bytes that are not UTF-8 travel base64-encoded, which anyone can decode: tail
    leaves them out (``--raw`` prints them)."""
    record = {
        "code": "invalid_utf8",
        "value": None,
        "value_b64": base64.b64encode(b"\xff" + PHONE.encode()).decode(),
    }
    shown = orjson.loads(redact(orjson.dumps(record)))
    assert shown["value_b64"].startswith("[withheld")
    assert base64.b64encode(b"\xff" + PHONE.encode()).decode() not in redact(orjson.dumps(record))


def test_an_alert_prints_whole_but_for_personal_fields() -> None:
    """Alerts and decisions carry no personal identifier by the contract; a field named
    like one is still withheld, and everything else prints as it is."""
    alert = {"alert_id": "a1", "user_id": "u1", "score": 0.9, "reasons": [{"code": "r"}]}
    assert orjson.loads(redact(orjson.dumps(alert))) == alert
    assert PHONE not in redact(orjson.dumps({**alert, "extra": {"phone_hash": PHONE}}))


def test_a_broker_that_does_not_answer_is_one_line_on_stderr_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the stack down, ``riskmon tail`` printed a KafkaConnectionError traceback and
    left its consumer unclosed; it now says on one line of stderr which broker did not
    answer and how to start it, exits 1, and closes the consumer."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RISKMON_KAFKA__PORT", str(port))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["--config", "/dev/null", "tail", "--limit", "1"]) == 1
        gc.collect()
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"riskmon tail: Kafka at 127.0.0.1:{port} did not answer (")
    assert "`riskmon stack up`" in err
    assert not [w for w in caught if "Unclosed" in str(w.message)]
