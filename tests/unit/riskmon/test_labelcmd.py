"""``riskmon label``: the verdict it sends is the one meant, or nothing is sent."""

from __future__ import annotations

import argparse
import gc
import socket
import warnings
from typing import Any

import pytest

from riskmon import labelcmd
from riskmon.cli import main
from riskmon.settings import Settings


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    labelcmd.configure(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    records: list[Any] = []

    async def produce(settings: Any, topic: str, batch: list[Any]) -> None:
        records.extend(batch)

    monkeypatch.setattr(labelcmd, "produce", produce)
    return records


def test_an_empty_item_id_is_refused_not_taken_as_a_verdict_on_the_user(sent: list[Any]) -> None:
    """``--transaction ""`` (an empty shell variable, say) names a transaction, not the
    user: the command refuses it and sends nothing, where it used to send a verdict on
    the whole user (a legit one lifts every action in force)."""
    event = labelcmd.label_event(_args("legit", "u1", "--transaction", ""), 1.8e9)
    assert event["target_type"] == "transaction"
    settings = Settings.load(env={}, config_file=None)
    assert labelcmd.run(_args("legit", "u1", "--transaction", ""), settings) == 2
    assert labelcmd.run(_args("fraud", " u1 "), settings) == 2
    assert sent == []


def test_a_time_the_workers_would_refuse_is_refused_here(sent: list[Any]) -> None:
    """Workers dead-letter a label dated past their clock (``ts_in_future``): the command
    refuses it instead of reporting it sent; a time now or earlier goes."""
    settings = Settings.load(env={}, config_file=None)
    assert labelcmd.run(_args("fraud", "u1", "--ts", "2099-01-01T00:00:00Z"), settings) == 2
    assert sent == []
    assert labelcmd.run(_args("fraud", "u1", "--ts", "2026-11-01T00:00:00Z"), settings) == 0
    assert len(sent) == 1


def test_a_broker_that_does_not_answer_is_one_line_on_stderr_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the stack down, ``riskmon label`` printed a KafkaConnectionError traceback
    and 'Unclosed AIOKafkaProducer'; it now says on one line of stderr which broker did
    not answer, that nothing was sent, exits 1, and closes its producer."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RISKMON_KAFKA__PORT", str(port))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["--config", "/dev/null", "label", "fraud", "u-1"]) == 1
        gc.collect()
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"riskmon label: Kafka at 127.0.0.1:{port} did not answer (")
    assert "`riskmon stack up`" in err and "nothing sent" in err
    assert not [w for w in caught if "Unclosed" in str(w.message)]
