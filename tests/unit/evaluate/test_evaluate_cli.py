"""``riskmon evaluate`` end to end: files in, table, JSON and PNG out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from riskmon.cli import main
from riskmon.sim.config import SimConfig
from riskmon.sim.generator import simulate


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def _event(i: int, etype: str, user: str, ts: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": f"{etype[:3]}-{i}", "event_type": etype, "ts": ts, "user_id": user, **extra}


def _truth(ev: dict[str, Any], fraud: bool, pattern: str, money_out: float = 0.0) -> dict[str, Any]:
    return {
        "event_id": ev["event_id"],
        "ts": ev["ts"],
        "user_id": ev["user_id"],
        "event_type": ev["event_type"],
        "is_fraud": fraud,
        "pattern": pattern,
        "incident": "" if not fraud else "x-1",
        "step": "",
        "money_out": money_out,
    }


def _decision(ev: dict[str, Any], score: float, decision: str) -> dict[str, Any]:
    return {
        "source_event_id": ev["event_id"],
        "event_type": ev["event_type"],
        "user_id": ev["user_id"],
        "score": score,
        "decision": decision,
        "reasons": [],
        "event_ts": ev["ts"],
    }


@pytest.fixture
def hand_made(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A takeover caught in time, a farm flagged too late, two honest users."""
    t = "2026-11-02T10:00:0{}.000Z"
    evs = [
        _event(1, "device", "victim", t.format(0), kind="login_failed"),
        _event(2, "device", "honest", t.format(1), kind="app_open"),
        _event(3, "transaction", "victim", t.format(2), kind="withdrawal", amount=900.0),
        _event(4, "transaction", "farm", t.format(3), kind="withdrawal", amount=100.0),
        _event(5, "application", "farm", t.format(4), amount=3000.0),
        _event(6, "device", "campus", t.format(5), kind="app_open"),
        {
            "event_id": "lab-1",
            "event_type": "label",
            "ts": t.format(9),
            "user_id": "farm",
            "target_type": "user",
            "target_id": "farm",
            "label": "fraud",
        },
    ]
    truth = [
        _truth(evs[0], True, "account_takeover"),
        _truth(evs[1], False, "honest"),
        _truth(evs[2], True, "account_takeover", 900.0),
        _truth(evs[3], True, "device_farm", 100.0),
        _truth(evs[4], True, "device_farm"),
        _truth(evs[5], False, "lookalike_campus"),
    ]
    decisions = [
        _decision(evs[0], 0.9, "review"),
        _decision(evs[1], 0.2, "pass"),
        _decision(evs[2], 0.3, "pass"),
        _decision(evs[3], 0.4, "pass"),
        _decision(evs[4], 0.95, "decline"),
        _decision(evs[5], 0.6, "alert"),
        {**_decision(evs[0], 0.1, "pass"), "source_event_id": "dev-unknown"},
    ]
    return (
        _write(tmp_path / "ev.jsonl", evs),
        _write(tmp_path / "truth.jsonl", truth),
        _write(tmp_path / "dec.jsonl", decisions),
    )


def test_evaluate_reports_metrics_as_table_json_and_png(
    hand_made: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_png = tmp_path / "report.json", tmp_path / "report.png"
    code = main(["evaluate", *map(str, hand_made), "--json", str(out_json), "--plot", str(out_png)])
    assert code == 0
    table = capsys.readouterr().out
    assert "average precision" in table and "money caught in time" in table
    report = json.loads(out_json.read_text())
    money = report["money_caught_in_time"]
    assert money["overall"]["fraud_money_out"] == 1000.0
    assert money["overall"]["caught"] == 900.0  # the takeover was flagged before the withdrawal
    assert money["by_pattern"]["device_farm"]["share"] == 0.0  # flagged after its cash-out
    honest = report["honest_flag_rate"]
    assert honest["overall"] == {"users": 2, "flagged": 1, "rate": 0.5}
    assert honest["by_pattern"]["lookalike_campus"]["flagged"] == 1
    counts = report["counts"]
    assert counts["decisions_without_event"] == 1
    assert counts["labels"] == 1 and counts["fraud_events"] == 4
    assert report["recall_at_budget"]["0.01"]["overall"] == 0.25  # 1 of 6 events, a fraud
    assert report["average_precision"]["device"] == pytest.approx(1.0)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_events_without_a_decision_count_as_unflagged_zero_scores(
    hand_made: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    events, truth, _ = hand_made
    empty = _write(tmp_path / "none.jsonl", [])
    out_json = tmp_path / "r.json"
    assert main(["evaluate", str(events), str(truth), str(empty), "--json", str(out_json)]) == 0
    report = json.loads(out_json.read_text())
    assert report["counts"]["events_without_decision"] == 6
    assert report["money_caught_in_time"]["overall"]["caught"] == 0.0
    assert report["honest_flag_rate"]["overall"]["flagged"] == 0


def test_a_missing_input_file_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["evaluate", "a", "b", str(tmp_path / "c")]) == 2


def test_an_oracle_on_a_simulation_scores_perfectly(tmp_path: Path) -> None:
    """Scoring each event by its truth gives AP 1 and flags no honest user."""
    events, truth = simulate(SimConfig(seed=4, users=250, days=14))
    decisions = [
        {
            "source_event_id": r["event_id"],
            "event_type": r["event_type"],
            "user_id": r["user_id"],
            "score": 1.0 if r["is_fraud"] else 0.0,
            "decision": "decline" if r["is_fraud"] else "pass",
            "reasons": [],
        }
        for r in truth
    ]
    paths = [
        _write(tmp_path / f"{n}.jsonl", rows)
        for n, rows in (("ev", events), ("truth", truth), ("dec", decisions))
    ]
    out_json = tmp_path / "r.json"
    assert main(["evaluate", *map(str, paths), "--json", str(out_json)]) == 0
    report = json.loads(out_json.read_text())
    assert report["average_precision"]["overall"] == 1.0
    assert report["honest_flag_rate"]["overall"]["flagged"] == 0
    assert report["money_caught_in_time"]["overall"]["share"] > 0.9


def test_money_caught_is_split_by_whether_the_user_shares_an_identifier(tmp_path: Path) -> None:
    """Two farm users cash out after a flag, one sharing a device with another user and
    one sharing nothing; a third farm user, on the shared device, is missed. The split
    puts the missed money with the linked users and the caught lone user apart."""
    t = "2026-11-02T10:00:0{}.000Z"
    evs = [
        _event(1, "device", "f1", t.format(0), kind="login", device_id="d-shared"),
        _event(2, "device", "f2", t.format(1), kind="login", device_id="d-shared"),
        _event(3, "device", "f3", t.format(2), kind="login", device_id="d-own"),
        _event(4, "transaction", "f1", t.format(3), kind="withdrawal", amount=100.0),
        _event(5, "transaction", "f2", t.format(4), kind="withdrawal", amount=200.0),
        _event(6, "transaction", "f3", t.format(5), kind="withdrawal", amount=400.0),
    ]
    truth = [_truth(e, True, "device_farm", e.get("amount", 0.0)) for e in evs]
    decisions = [
        _decision(evs[0], 0.9, "review"),
        _decision(evs[1], 0.1, "pass"),
        _decision(evs[2], 0.9, "review"),
        *(_decision(e, 0.1, "pass") for e in evs[3:]),
    ]
    out_json = tmp_path / "r.json"
    files = [
        _write(tmp_path / f"{n}.jsonl", rows)
        for n, rows in (("ev", evs), ("truth", truth), ("dec", decisions))
    ]
    assert main(["evaluate", *map(str, files), "--json", str(out_json)]) == 0
    split = json.loads(out_json.read_text())["money_caught_in_time"]["by_link"]["device_farm"]
    linked, lone = split["linked to other users"], split["linked to no other user"]
    assert (linked["caught"], linked["fraud_money_out"]) == (100.0, 300.0)
    assert (lone["caught"], lone["fraud_money_out"]) == (400.0, 400.0)


def test_files_of_different_simulations_are_refused_with_the_reason(
    hand_made: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truth file naming none of the events (another run's) is refused, exit 2, rather
    than reported as n/a everywhere; truth and events swapped are refused by name."""
    events, truth, decisions = hand_made
    other = _write(tmp_path / "other.jsonl", [{"event_id": "zz", "is_fraud": True}])
    assert main(["evaluate", str(events), str(other), str(decisions)]) == 2
    assert "no truth row names an event" in capsys.readouterr().err
    assert main(["evaluate", str(truth), str(events), str(decisions)]) == 2
    assert "in that order?" in capsys.readouterr().err


def test_money_declined_is_the_money_whose_own_cash_out_was_declined(
    hand_made: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Beside the money caught in time (a flag before it, which a person may still have
    to act on), the report gives the money Riskmon stopped itself: the cash-outs whose
    own decision was decline."""
    events, truth, decisions = hand_made
    outs = {
        r["event_id"]: r["money_out"]
        for r in map(json.loads, truth.open())
        if r["is_fraud"] and r.get("money_out", 0) > 0
    }
    big = max(outs, key=lambda e: outs[e])  # the takeover's withdrawal of 900
    rows = [json.loads(line) for line in decisions.open()]
    rows = [{**d, "decision": "decline"} if d["source_event_id"] == big else d for d in rows]
    declining = _write(tmp_path / "declining.jsonl", rows)
    out_json = tmp_path / "r.json"
    assert main(["evaluate", str(events), str(truth), str(declining), "--json", str(out_json)]) == 0
    overall = json.loads(out_json.read_text())["money_caught_in_time"]["overall"]
    assert overall["declined"] == outs[big] == 900.0
    assert overall["declined_share"] == round(900.0 / overall["fraud_money_out"], 6)
