"""``riskmon label``: the verdict it sends is the one meant, or nothing is sent."""

from __future__ import annotations

import argparse
import gc
import socket
import warnings
from typing import Any

import orjson
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


@pytest.fixture
def documents(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """Users' documents as Redis holds them, by user id (none: no document)."""
    docs: dict[str, dict[str, Any]] = {}

    async def user_document(settings: Any, user_id: str) -> dict[str, Any] | None:
        return docs.get(user_id)

    monkeypatch.setattr(labelcmd, "user_document", user_document)
    return docs


def test_a_verdict_on_an_item_riskmon_does_not_hold_for_the_user_is_refused(
    sent: list[Any], documents: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """``label fraud USER --transaction ID`` with a mistyped id made the user a confirmed
    fraudster (a worker takes a verdict on an item it does not hold as one on the user),
    with only a worker log line to show. The command now checks the user's document
    first: an id not among the items kept (nor one of another kind with that id, nor a
    user without a document) is refused, nothing sent, with a message naming --force."""
    settings = Settings.load(env={}, config_file=None)
    documents["u1"] = {"targets": {"transaction:tx-91": ["device:d1"], "application:42": []}}
    for argv in (
        ("fraud", "u1", "--transaction", "tx-9l"),  # mistyped
        ("fraud", "u1", "--transaction", "42"),  # an application has that id
        ("fraud", "u2", "--transaction", "tx-91"),  # another user (no document)
    ):
        assert labelcmd.run(_args(*argv), settings) == 1, argv
        err = capsys.readouterr().err
        assert "Nothing sent" in err and "--force" in err and err.count("\n") == 1, err
    assert sent == []
    assert labelcmd.run(_args("fraud", "u1", "--transaction", "tx-91"), settings) == 0
    assert labelcmd.run(_args("fraud", "u1", "--application", "42"), settings) == 0
    assert [orjson.loads(v)["target_id"] for _, v in sent] == ["tx-91", "42"]


def test_items_of_a_document_of_the_previous_release_are_found_by_their_bare_id(
    sent: list[Any], documents: dict[str, Any]
) -> None:
    """Documents written before items were kept as kind:id keep them by the bare id."""
    documents["u1"] = {"targets": {"tx-91": ["device:d1"]}}
    settings = Settings.load(env={}, config_file=None)
    assert labelcmd.run(_args("fraud", "u1", "--transaction", "tx-91"), settings) == 0
    assert len(sent) == 1


def test_force_sends_a_verdict_on_an_item_without_the_check(
    sent: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--force: for an item older than those kept, say; Redis is not asked."""

    async def no_redis(settings: Any, user_id: str) -> None:
        raise AssertionError("--force does not check")

    monkeypatch.setattr(labelcmd, "user_document", no_redis)
    settings = Settings.load(env={}, config_file=None)
    assert labelcmd.run(_args("fraud", "u1", "--transaction", "t-old", "--force"), settings) == 0
    assert len(sent) == 1


def test_a_redis_that_does_not_answer_refuses_a_verdict_on_an_item_rather_than_send_blind(
    sent: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The item cannot be checked: one line says which Redis did not answer, that
    nothing was sent, and that --force sends without the check; exit 1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings.load(env={"RISKMON_REDIS__PORT": str(port)}, config_file=None)
    assert labelcmd.run(_args("fraud", "u1", "--transaction", "tx-91"), settings) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"riskmon label: Redis at 127.0.0.1:{port} did not answer (")
    assert "nothing sent" in err and "--force" in err and err.count("\n") == 1
    assert sent == []


def test_a_source_holding_a_number_is_refused_without_quoting_it(
    sent: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--source`` travels with the label into logs: a phone number there (an analyst's,
    say) is refused, not quoted, and nothing is sent; a team's name goes."""
    settings = Settings.load(env={}, config_file=None)
    assert labelcmd.run(_args("legit", "u1", "--source", "138-1234-5678"), settings) == 2
    err = capsys.readouterr().err
    assert "withheld" in err and "1234" not in err and sent == []
    assert labelcmd.run(_args("legit", "u1", "--source", "fraud-ops"), settings) == 0
    assert len(sent) == 1
