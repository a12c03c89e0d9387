"""``riskmon simulate`` on the command line, and producing to Kafka."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from riskmon.cli import main
from riskmon.settings import TopicSettings
from riskmon.sim.config import SimConfig
from riskmon.sim.generator import simulate
from riskmon.sim.output import produce


def test_simulate_writes_events_and_truth_files(tmp_path: Path) -> None:
    out, truth = tmp_path / "ev.jsonl", tmp_path / "truth.jsonl"
    code = main(
        [
            "simulate",
            "--users",
            "80",
            "--days",
            "4",
            "--seed",
            "9",
            "--stealthy",
            "--start",
            "2026-12-01T00:00:00Z",
            "--out",
            str(out),
            "--truth",
            str(truth),
        ]
    )
    assert code == 0
    events = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    rows = [orjson.loads(x) for x in truth.read_bytes().splitlines()]
    assert events and rows
    assert events[0]["ts"].startswith("2026-12-01")
    assert len(rows) == sum(e["event_type"] != "label" for e in events)
    expected, _ = simulate(
        SimConfig(
            seed=9, users=80, days=4, stealthy=True, start=SimConfig().start.replace(month=12)
        )
    )
    assert events == expected


def test_simulate_without_an_output_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--users", "10"]) == 2
    assert "--out" in capsys.readouterr().err


def test_simulate_rejects_a_fraud_rate_out_of_range() -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--fraud-rate", "0.9", "--out", "/dev/null"])


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> Any:
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_kafka_output_keys_by_user_and_routes_each_type_to_its_topic() -> None:
    events, _ = simulate(SimConfig(seed=1, users=40, days=3))
    producer = FakeProducer()
    topics = TopicSettings()
    sent = asyncio.run(produce(events, producer, topics, rate=0, limit=None))
    assert sent == len(events)
    expected_topic = {
        "application": topics.applications,
        "device": topics.devices,
        "transaction": topics.transactions,
        "label": topics.labels,
    }
    for (topic, key, value), event in zip(producer.sent, events, strict=True):
        assert orjson.loads(value) == event
        assert key == event["user_id"].encode("utf-8")
        assert topic == expected_topic[event["event_type"]]


def test_kafka_output_paces_to_the_rate_and_stops_at_the_limit() -> None:
    events, _ = simulate(SimConfig(seed=1, users=40, days=3))
    now = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    producer = FakeProducer()
    sent = asyncio.run(
        produce(
            events,
            producer,
            TopicSettings(),
            rate=50.0,
            limit=200,
            clock=lambda: now[0],
            sleep=fake_sleep,
        )
    )
    assert sent == 200 == len(producer.sent)
    assert sum(slept) == pytest.approx(199 / 50.0, rel=0.01)
