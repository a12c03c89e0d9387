"""``riskmon replay``: the core offline, deterministic, one decision per event."""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from riskmon.cli import main
from riskmon.contract import Contract
from riskmon.core import Core
from riskmon.replay import Replay, read_lines
from riskmon.settings import Settings


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay")
    events = out / "events.jsonl"
    assert (
        main(
            [
                "simulate",
                "--users",
                "150",
                "--days",
                "4",
                "--seed",
                "3",
                "--out",
                str(events),
                "--truth",
                str(out / "truth.jsonl"),
            ]
        )
        == 0
    )
    return events


def _replay(events: Path, out: Path, batch: int = 500) -> None:
    assert (
        main(
            [
                "replay",
                str(events),
                "--decisions",
                str(out / "d.jsonl"),
                "--alerts",
                str(out / "a.jsonl"),
                "--adjustments",
                str(out / "j.jsonl"),
                "--seed",
                "5",
                "--batch-size",
                str(batch),
                "--no-progress",
            ]
        )
        == 0
    )


def test_replay_is_deterministic_and_decides_every_event(traffic: Path, tmp_path: Path) -> None:
    """Two replays of one file give byte-identical outputs; one decision per non-label
    event; every output record satisfies its contract schema."""
    first, second = tmp_path / "1", tmp_path / "2"
    first.mkdir()
    second.mkdir()
    _replay(traffic, first)
    _replay(traffic, second)
    for name in ("d.jsonl", "a.jsonl", "j.jsonl"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name

    inputs = [orjson.loads(line) for line in traffic.read_bytes().splitlines()]
    decided = [e["event_id"] for e in inputs if e["event_type"] != "label"]
    decisions = [orjson.loads(line) for line in (first / "d.jsonl").read_bytes().splitlines()]
    assert sorted(d["source_event_id"] for d in decisions) == sorted(decided)

    contract = Contract.load()
    for name, schema in (("d.jsonl", "decision"), ("a.jsonl", "alert"), ("j.jsonl", "adjustment")):
        for line in (first / name).read_bytes().splitlines():
            record = orjson.loads(line)
            assert contract.errors(schema, record) == [], (schema, record)
    alerts = (first / "a.jsonl").read_bytes().splitlines()
    assert alerts, "simulated fraud raises alerts"


def test_replayed_duplicate_events_are_decided_once(traffic: Path, tmp_path: Path) -> None:
    """An event_id seen twice is one event: a file with every line twice gives the same
    decisions and actions as the file once (batches hold the same events: 200 lines of
    the doubled file are 100 events)."""
    doubled = tmp_path / "doubled.jsonl"
    lines = traffic.read_bytes().splitlines()
    doubled.write_bytes(b"\n".join(line for line in lines for _ in range(2)) + b"\n")
    once, twice = tmp_path / "once", tmp_path / "twice"
    once.mkdir()
    twice.mkdir()
    _replay(traffic, once, batch=100)
    _replay(doubled, twice, batch=200)
    for name in ("d.jsonl", "j.jsonl"):
        assert (once / name).read_bytes() == (twice / name).read_bytes(), name


def test_a_repeat_older_than_the_seen_ttl_is_decided_again_as_a_worker_decides_it(
    tmp_path: Path,
) -> None:
    """The replay keeps seen marks as a worker's Redis keeps them, for
    ``detection.feature_ttl_s`` (14 days) from their save, by the replay's clock (the
    newest event time read): a repeat of an event marked within it is skipped, a repeat
    of one marked longer ago is decided again (and the replay does not keep every event
    id it ever read)."""

    def login(event_id: str, ts: str) -> bytes:
        event = {"event_id": event_id, "event_type": "device", "user_id": "u1", "ts": ts}
        return orjson.dumps({**event, "device_id": "dev1", "kind": "login"})

    events = tmp_path / "events.jsonl"
    lines = [
        login("d0", "2026-11-01T10:00:00Z"),
        login("d1", "2026-11-10T10:00:00Z"),
        login("d2", "2026-11-20T10:00:00Z"),
        login("d0", "2026-11-01T10:00:00Z"),  # marked 19 days before: decided again
        login("d1", "2026-11-10T10:00:00Z"),  # marked 10 days before: a duplicate
    ]
    events.write_bytes(b"\n".join(lines) + b"\n")
    decisions = tmp_path / "d.jsonl"
    args = ["replay", str(events), "--decisions", str(decisions), "--batch-size", "1"]
    assert main([*args, "--no-progress"]) == 0
    decided = [orjson.loads(line)["source_event_id"] for line in decisions.read_bytes().split()]
    assert decided == ["d0", "d1", "d2", "d0"]


def test_a_missing_file_or_a_bad_rule_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``riskmon replay`` with an events file that does not exist, or with a rules
    directory holding a broken rule, exits 2 with one line naming the problem."""
    out = str(tmp_path / "d.jsonl")
    assert main(["replay", str(tmp_path / "none.jsonl"), "--decisions", out]) == 2
    assert "none.jsonl: no such file" in capsys.readouterr().err
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text("rules:\n  - rule_id: half_written\n    version: 1\n")
    events = tmp_path / "e.jsonl"
    events.write_text("")
    assert main(["replay", str(events), "--decisions", out, "--rules", str(rules)]) == 2
    err = capsys.readouterr().err
    assert "a.yaml" in err and "half_written" in err and "Traceback" not in err


def test_the_replay_goes_on_past_an_event_the_core_fails_on(
    tmp_path: Path,
    core_fails_on: Callable[[str, Exception], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As in the worker, a batch the core fails on is decided event by event: the event
    it fails on goes to the dead letters (``processing_error``, its line, the kind of
    failure but not its text), every other event of the file is decided, and the
    summary counts the failure."""
    core_fails_on("t2", KeyError("13800138000"))  # a failure whose text quotes a value
    events = tmp_path / "events.jsonl"
    lines = [
        orjson.dumps(
            {
                "event_id": f"t{i}",
                "event_type": "transaction",
                "user_id": f"u{i % 2}",
                "ts": f"2026-11-01T10:0{i}:00.000Z",
                "txn_id": f"tx{i}",
                "kind": "payment",
                "amount": 50.0 + i,
                "status": "success",
                "account_hash": "shop",
            }
        )
        for i in range(1, 6)
    ]
    events.write_bytes(b"\n".join([*lines[:3], b"{broken", *lines[3:]]) + b"\n")
    decisions, dead = tmp_path / "d.jsonl", tmp_path / "dead.jsonl"
    args = ["replay", str(events), "--decisions", str(decisions), "--deadletters", str(dead)]
    assert main([*args, "--batch-size", "2", "--no-progress"]) == 0
    decided = [orjson.loads(line)["source_event_id"] for line in decisions.read_bytes().split()]
    assert decided == ["t1", "t3", "t4", "t5"]
    records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [(r["line"], r["code"]) for r in records] == [
        (2, "processing_error"),
        (4, "invalid_json"),
    ]
    assert records[0]["event_id"] == "t2"
    assert "KeyError" in records[0]["reason"] and "13800138000" not in records[0]["reason"]
    table = capsys.readouterr().out
    assert re.search(r"^core failures\s+1$", table, re.MULTILINE), table


def test_the_replay_refuses_event_times_a_worker_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``--now``, an event time later than that clock plus
    ``detection.max_future_s`` is refused as a worker with that clock refuses it
    (``ts_in_future``); the events around it are decided. Without it, the file's times
    are taken as they are (simulated traffic may run ahead of today)."""
    events = tmp_path / "events.jsonl"
    lines = [
        orjson.dumps(
            {
                "event_id": f"d{i}",
                "event_type": "device",
                "user_id": "u1",
                "ts": ts,
                "device_id": "dev1",
                "kind": "login",
            }
        )
        for i, ts in enumerate(
            ["2026-11-01T10:00:00Z", "2099-01-01T00:00:00Z", "2026-11-01T10:05:00Z"]
        )
    ]
    events.write_bytes(b"\n".join(lines) + b"\n")
    decisions, dead = tmp_path / "d.jsonl", tmp_path / "dead.jsonl"
    args = ["replay", str(events), "--decisions", str(decisions), "--deadletters", str(dead)]
    assert main([*args, "--no-progress", "--now", "2026-11-01T11:00:00Z"]) == 0
    decided = [orjson.loads(line)["source_event_id"] for line in decisions.read_bytes().split()]
    assert decided == ["d0", "d2"]
    records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [(r["line"], r["code"]) for r in records] == [(2, "ts_in_future")]
    assert re.search(r"^invalid lines\s+1$", capsys.readouterr().out, re.MULTILINE)
    assert main([*args, "--no-progress"]) == 0
    decided = [orjson.loads(line)["source_event_id"] for line in decisions.read_bytes().split()]
    assert sorted(decided) == ["d0", "d1", "d2"]  # in event time: the 2099 one last


def test_dead_letters_name_the_line_of_the_file_blank_lines_counted(
    tmp_path: Path,
    core_fails_on: Callable[[str, Exception], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each dead letter's ``line`` is the number of its line in the file, blank lines
    (empty, or only blanks and a carriage return) counted as an editor counts them, for
    an invalid line as for an event the core fails on. The summary counts every line
    read, blank ones included, and the blank ones apart; invalid lines and core failures
    as before; the blank lines are no events and are not refused."""
    core_fails_on("t3", KeyError("boom"))
    events = tmp_path / "events.jsonl"
    lines = [
        orjson.dumps(
            {
                "event_id": f"t{i}",
                "event_type": "transaction",
                "user_id": "u1",
                "ts": f"2026-11-01T10:0{i}:00.000Z",
                "txn_id": f"tx{i}",
                "kind": "payment",
                "amount": 10.0 + i,
                "status": "success",
            }
        )
        for i in range(1, 5)
    ]
    raw = [b"", lines[0], b"", b"  \r", lines[1], b"{broken", b"", lines[2], lines[3]]
    events.write_bytes(b"\n".join(raw) + b"\n")
    decisions, dead = tmp_path / "d.jsonl", tmp_path / "dead.jsonl"
    args = ["replay", str(events), "--decisions", str(decisions), "--deadletters", str(dead)]
    assert main([*args, "--batch-size", "2", "--no-progress"]) == 0
    decided = [orjson.loads(line)["source_event_id"] for line in decisions.read_bytes().split()]
    assert decided == ["t1", "t2", "t4"]
    records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [(r["line"], r["code"]) for r in records] == [
        (6, "invalid_json"),
        (8, "processing_error"),
    ]
    for record in records:  # the line named is the line that was refused
        assert raw[record["line"] - 1] == (b"{broken" if record["line"] == 6 else lines[2])
    table = capsys.readouterr().out
    for row, count in (
        (r"lines read \(blank included\)", 9),
        (r"blank lines \(skipped\)", 4),
        ("invalid lines", 1),
        ("core failures", 1),
        ("events decided", 3),
    ):
        assert re.search(rf"^{row}\s+{count}$", table, re.MULTILINE), (row, table)


def test_the_outputs_are_one_json_line_a_record_and_the_summary_counts_them(
    traffic: Path,
) -> None:
    """Each decision, alert and adjustment is written as its compact JSON and a newline,
    in order; the summary counts the decisions by outcome and the adjustments by action
    as the files hold them."""
    settings = Settings.load(env={}, config_file=None)
    replay = Replay(settings, Core.create(settings, deterministic=True))
    files = [io.BytesIO() for _ in range(3)]
    summary = replay.run(read_lines(traffic), *files, batch_size=97)
    decisions, alerts, adjustments = (
        [orjson.loads(line) for line in f.getvalue().splitlines()] for f in files
    )
    for f, records in zip(files, (decisions, alerts, adjustments), strict=True):
        assert f.getvalue() == b"".join(orjson.dumps(r) + b"\n" for r in records)
    assert alerts and adjustments
    assert summary.decisions == Counter(d["decision"] for d in decisions)
    assert summary.adjustments == Counter(a["action"] for a in adjustments)
    assert summary.alerts == len(alerts)
    assert summary.lines == len(traffic.read_bytes().splitlines())
