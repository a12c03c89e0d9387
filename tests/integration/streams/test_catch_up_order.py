"""Catching up on a backlog: the takeover is still frozen before its cash-out."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from riskmon.contract import parse_ts

from .test_detection_live import at, send_all, takeover_sequence


def filler(n: int, start_min: float, end_min: float) -> list[dict[str, Any]]:
    """Routine app opens by other users, spread over the takeover's time span."""
    out = []
    for i in range(n):
        m = start_min + (end_min - start_min) * i / n
        out.append(
            {
                "event_id": f"fill-{i}",
                "event_type": "device",
                "ts": at(m),
                "user_id": f"filler-{i % 400}",
                "device_id": f"fdev-{i % 400}",
                "kind": "app_open",
                "ip": f"10.9.{i % 200}.1",
            }
        )
    return out


async def test_takeover_is_frozen_before_its_cash_out_when_the_worker_catches_up(
    isolated, start_worker, producer: AIOKafkaProducer, read_topics
) -> None:
    """Everything is produced before the worker starts, device traffic dense and
    transactions sparse: the cash-out is still judged after the takeover's device events."""
    settings = isolated.settings
    events = takeover_sequence()
    t = 60 * 24 * 30
    merged = sorted(events + filler(40000, t - 120, t + 30), key=lambda e: parse_ts(e["ts"]))
    await send_all(producer, settings, merged)
    start_worker(isolated)
    cash_out = events[-1]
    tt = settings.topics
    seen = await read_topics(
        settings,
        [tt.decisions, tt.adjustments],
        until=lambda s: len(s[tt.decisions]) >= len(merged),
        timeout=300.0,
    )
    decisions = {d["source_event_id"]: d for d in seen[tt.decisions]}
    assert len(decisions) == len(merged)
    cash_ts = parse_ts(cash_out["ts"])
    freezes = [
        a
        for a in seen[tt.adjustments]
        if a["action"] == "freeze" and parse_ts(a["event_ts"]) < cash_ts
    ]
    assert freezes, (seen[tt.adjustments], decisions[cash_out["event_id"]])
    decided = decisions[cash_out["event_id"]]
    order = [d["source_event_id"] for d in seen[tt.decisions]]
    ato_device = [e["event_id"] for e in events if e["event_type"] == "device"]
    assert all(order.index(e) < order.index(cash_out["event_id"]) for e in ato_device), (
        [(e, order.index(e)) for e in ato_device],
        order.index(cash_out["event_id"]),
    )
    assert decided["decision"] == "decline"
    assert any(r["code"] == "action:freeze" for r in decided["reasons"]), decided
